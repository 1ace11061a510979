"""Load generators: wrk, h2load, and a small pure-Python client for when wrk is missing.

Strategy: a :class:`Scenario` names a tool, a connection count and a pipelining depth.
:func:`run_load` runs the tool pinned to the load generator's CPU (``taskset -c``) and parses
its text output into a :class:`LoadResult`. wrk runs for a whole number of seconds; h2load
runs by request count, sized from the warm-up's rate (its timed mode hangs against servers
that close connections). Every external tool run has a timeout (a multiple of the duration
plus :data:`SLACK_S`), so a hung client cannot stall the harness.

Invariants:
- Only ``http://127.0.0.1:PORT/`` is ever requested.
- Latencies are in microseconds; ``None`` means the tool does not report that figure
  (h2load has no percentiles; wrk prints a p99 of 0 when its coordinated-omission
  correction leaves the histogram inconsistent, as with pipelining) or there was no sample.
- With pipelining, wrk measures latency per batch of requests, not per request.
- ``errors`` counts connect/read/write failures, ``timeouts`` requests with no answer within
  :data:`REQUEST_TIMEOUT_S` (wrk's default), ``non_2xx`` answers with another status.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

SLACK_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 2.0
PIPELINE_DEPTH: Final = 16
PIPELINE_SCRIPT: Final = Path(__file__).resolve().parent / "pipeline.lua"
H2LOAD_PROBE_REQUESTS: Final = 1000
H2LOAD_SLOWDOWN_ALLOWED: Final = 3
"""An h2load run may take this many times its planned duration before it is abandoned."""

Tool = Literal["wrk", "h2load", "python"]


@dataclass(frozen=True)
class Scenario:
    """One way of loading a server.

    Attributes:
        key: short name used on the command line and in the report (``wrk-c100``).
        title: the report's heading for the scenario.
        tool: the load generator.
        connections: concurrent keep-alive connections.
        pipeline_depth: requests sent back to back on a connection before reading (1: none).
    """

    key: str
    title: str
    tool: Tool
    connections: int
    pipeline_depth: int = 1


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("wrk-c100", "wrk, 100 connections, keep-alive", "wrk", 100),
    Scenario("wrk-c1000", "wrk, 1000 connections, keep-alive", "wrk", 1000),
    Scenario("h2load-c100", "h2load --h1, 100 connections, keep-alive", "h2load", 100),
    Scenario(
        "wrk-pipeline16",
        f"wrk, 100 connections, {PIPELINE_DEPTH} pipelined requests per write",
        "wrk",
        100,
        PIPELINE_DEPTH,
    ),
)
SCENARIO_KEYS: Final = tuple(s.key for s in SCENARIOS)


@dataclass(frozen=True)
class LoadResult:
    """What one load generator run measured."""

    tool: Tool
    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_us: float | None
    latency_stdev_us: float | None
    latency_p99_us: float | None
    errors: int
    timeouts: int
    non_2xx: int


class LoadError(Exception):
    """The load generator failed or printed something this module cannot read."""


def scenario(key: str) -> Scenario:
    """The :class:`Scenario` called ``key``."""
    for s in SCENARIOS:
        if s.key == key:
            return s
    raise KeyError(key)


def tool_available(tool: Tool) -> bool:
    """Whether the load generator can run here."""
    return tool == "python" or shutil.which(tool) is not None


def command(scn: Scenario, url: str, duration_s: int, *, requests: int | None = None) -> list[str]:
    """The command line of the load generator for ``scn`` (without ``taskset``).

    wrk runs for ``duration_s``; h2load sends ``requests`` requests (see :func:`run_load`).
    """
    if scn.tool == "wrk":
        cmd = [
            "wrk", "-t1", f"-c{scn.connections}", f"-d{duration_s}s",
            f"--timeout={int(REQUEST_TIMEOUT_S)}s", "--latency",
        ]  # fmt: skip
        if scn.pipeline_depth > 1:
            cmd += ["-s", str(PIPELINE_SCRIPT), url, "--", str(scn.pipeline_depth)]
        else:
            cmd.append(url)
        return cmd
    if scn.tool == "h2load":
        if scn.pipeline_depth > 1:
            raise ValueError("h2load scenarios do not pipeline")
        if requests is None:
            raise ValueError("h2load runs by request count: give requests")
        return [
            "h2load", "--h1", "-t1", f"-c{scn.connections}", f"-n{requests}",
            f"-N{int(REQUEST_TIMEOUT_S)}", url,
        ]  # fmt: skip
    raise ValueError(f"{scn.tool} is not an external tool")


def run_load(
    scn: Scenario,
    url: str,
    duration_s: int,
    *,
    cpu: int | None,
    tool: Tool | None = None,
    rate_hint: float | None = None,
) -> LoadResult:
    """Load ``url`` as ``scn`` says for about ``duration_s`` seconds and return the measurement.

    h2load runs by request count, not by time: in its timed mode (``-D``) it never exits once
    a server has closed connections (gunicorn's sync worker closes every one). The count is
    ``rate_hint`` (requests/s, e.g. from the warm-up) times ``duration_s``; without a hint a
    probe of :data:`H2LOAD_PROBE_REQUESTS` requests measures the rate first, and with
    ``duration_s == 0`` the probe is all that runs.

    Args:
        scn: the scenario.
        url: ``http://127.0.0.1:PORT/``.
        duration_s: whole seconds of load.
        cpu: the CPU the load generator is pinned to, or ``None``.
        tool: overrides ``scn.tool`` (``"python"`` for the fallback client).
        rate_hint: expected requests/s, used by h2load to size its run.

    Raises:
        LoadError: the tool failed, timed out, or printed no result.
    """
    chosen = tool or scn.tool
    if chosen == "python":
        return python_load(url, scn.connections, duration_s, scn.pipeline_depth)
    if chosen == "wrk":
        return parse_wrk(_run_tool(command(scn, url, duration_s), cpu, duration_s + SLACK_S))
    if rate_hint is None:
        probe_requests = max(H2LOAD_PROBE_REQUESTS, 10 * scn.connections)
        probe_cmd = command(scn, url, 0, requests=probe_requests)
        probe = parse_h2load(_run_tool(probe_cmd, cpu, SLACK_S))
        if duration_s <= 0:
            return probe
        rate_hint = probe.requests_per_s
    requests = max(scn.connections, round(rate_hint * duration_s))
    timeout_s = H2LOAD_SLOWDOWN_ALLOWED * duration_s + SLACK_S
    return parse_h2load(_run_tool(command(scn, url, 0, requests=requests), cpu, timeout_s))


def _run_tool(cmd: list[str], cpu: int | None, timeout_s: float) -> str:
    """Run a load generator pinned to ``cpu``; return its output (stdout then stderr)."""
    taskset = shutil.which("taskset")
    if cpu is not None and taskset is not None:
        cmd = [taskset, "-c", str(cpu), *cmd]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{cmd[0]} did not finish within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise LoadError(f"cannot run {cmd[0]}: {exc}") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise LoadError(f"{cmd[0]} exited with status {done.returncode}:\n{tail}")
    return output


# --- parsing ------------------------------------------------------------------------------------

_TIME_UNITS_US: Final = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_TIME: Final = r"([\d.]+|-?nan|inf)(us|ms|s|m|h)"


def _time_us(number: str, unit: str) -> float | None:
    """Microseconds, or ``None`` for nan and for zero (what wrk prints when it has no sample)."""
    try:
        value = float(number) * _TIME_UNITS_US[unit]
    except (ValueError, KeyError):
        return None
    return value if math.isfinite(value) and value > 0 else None


_WRK_LATENCY: Final = re.compile(rf"^\s*Latency\s+{_TIME}\s+{_TIME}\s+{_TIME}", re.MULTILINE)
_WRK_P99: Final = re.compile(rf"^\s*99(?:\.0+)?%\s+{_TIME}", re.MULTILINE)
_WRK_TOTAL: Final = re.compile(rf"^\s*(\d+) requests in {_TIME}", re.MULTILINE)
_WRK_RATE: Final = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_SOCKET: Final = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_WRK_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text: str) -> LoadResult:
    """Read wrk's ``--latency`` report.

    Raises:
        LoadError: the totals line or the rate line is missing.
    """
    total = _WRK_TOTAL.search(text)
    rate = _WRK_RATE.search(text)
    if total is None or rate is None:
        raise LoadError(f"unreadable wrk output:\n{text.strip()[-600:]}")
    duration_us = _time_us(total.group(2), total.group(3)) or 0.0
    avg = stdev = p99 = None
    latency = _WRK_LATENCY.search(text)
    if latency:
        avg = _time_us(latency.group(1), latency.group(2))
        stdev = _time_us(latency.group(3), latency.group(4))
    percentile = _WRK_P99.search(text)
    if percentile:
        p99 = _time_us(percentile.group(1), percentile.group(2))
    errors = timeouts = 0
    socket_errors = _WRK_SOCKET.search(text)
    if socket_errors:
        connect, read, write, timeout = (int(g) for g in socket_errors.groups())
        errors, timeouts = connect + read + write, timeout
    non_2xx = _WRK_NON_2XX.search(text)
    return LoadResult(
        tool="wrk",
        requests=int(total.group(1)),
        duration_s=duration_us / 1e6,
        requests_per_s=float(rate.group(1)),
        latency_avg_us=avg,
        latency_stdev_us=stdev,
        latency_p99_us=p99,
        errors=errors,
        timeouts=timeouts,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


_H2_FINISHED: Final = re.compile(rf"finished in {_TIME}, ([\d.]+) req/s")
_H2_REQUESTS: Final = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS: Final = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2_REQUEST_TIME: Final = re.compile(rf"time for request:\s+{_TIME}\s+{_TIME}\s+{_TIME}\s+{_TIME}")


def parse_h2load(text: str) -> LoadResult:
    """Read h2load's report (``finished in``, ``requests:``, ``time for request:`` lines).

    Raises:
        LoadError: the ``finished`` or ``requests`` line is missing.
    """
    finished = _H2_FINISHED.search(text)
    requests = _H2_REQUESTS.search(text)
    if finished is None or requests is None:
        raise LoadError(f"unreadable h2load output:\n{text.strip()[-600:]}")
    # h2load: "failed" includes "errored" (network-level failures), which includes "timeout".
    done, errored, timeout = (int(requests.group(i)) for i in (3, 6, 7))
    status = _H2_STATUS.search(text)
    non_2xx = sum(int(g) for g in status.groups()[1:]) if status else 0
    avg = stdev = None
    request_time = _H2_REQUEST_TIME.search(text)
    if request_time and done:
        avg = _time_us(request_time.group(5), request_time.group(6))
        stdev = _time_us(request_time.group(7), request_time.group(8))
    return LoadResult(
        tool="h2load",
        requests=done,
        duration_s=(_time_us(finished.group(1), finished.group(2)) or 0.0) / 1e6,
        requests_per_s=float(finished.group(3)),
        latency_avg_us=avg,
        latency_stdev_us=stdev,
        latency_p99_us=None,
        errors=max(0, errored - timeout),
        timeouts=timeout,
        non_2xx=non_2xx,
    )


# --- the pure-Python fallback ---------------------------------------------------------------------

_URL: Final = re.compile(r"^http://127\.0\.0\.1:(\d+)(/.*)$")


@dataclass
class _Tally:
    latencies_s: list[float]
    errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0


def python_load(url: str, connections: int, duration_s: int, pipeline_depth: int = 1) -> LoadResult:
    """A keep-alive HTTP/1.1 client on asyncio: a smoke test's stand-in for wrk.

    Far slower than wrk (the client, not the server, sets the pace), so its numbers only prove
    that the server answers; the report says which tool produced each row.

    Raises:
        LoadError: ``url`` is not ``http://127.0.0.1:PORT/...``.
    """
    match = _URL.match(url)
    if match is None:
        raise LoadError(f"the Python load generator only requests 127.0.0.1, not {url}")
    port, path = int(match.group(1)), match.group(2)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
    tally = _Tally(latencies_s=[])
    started = time.monotonic()
    asyncio.run(
        _load(port, request * pipeline_depth, pipeline_depth, connections, duration_s, tally)
    )
    elapsed = time.monotonic() - started
    lat = tally.latencies_s
    p99 = sorted(lat)[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)] * 1e6 if lat else None
    return LoadResult(
        tool="python",
        requests=len(lat),
        duration_s=elapsed,
        requests_per_s=len(lat) / elapsed if elapsed > 0 else 0.0,
        latency_avg_us=statistics.fmean(lat) * 1e6 if lat else None,
        latency_stdev_us=statistics.pstdev(lat) * 1e6 if lat else None,
        latency_p99_us=p99,
        errors=tally.errors,
        timeouts=tally.timeouts,
        non_2xx=tally.non_2xx,
    )


async def _load(
    port: int, batch: bytes, depth: int, connections: int, duration_s: int, tally: _Tally
) -> None:
    deadline = time.monotonic() + duration_s
    await asyncio.gather(
        *(_client(port, batch, depth, deadline, tally) for _ in range(connections))
    )


async def _client(port: int, batch: bytes, depth: int, deadline: float, tally: _Tally) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT_S
            )
        except TimeoutError:
            tally.timeouts += 1
            continue
        except OSError:
            tally.errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            await _keep_alive(reader, writer, batch, depth, deadline, tally)
        finally:
            writer.close()


async def _keep_alive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    batch: bytes,
    depth: int,
    deadline: float,
    tally: _Tally,
) -> None:
    """Send batches on one connection until the deadline, an error, or the server closes it."""
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            statuses, keep_alive = await asyncio.wait_for(
                _exchange(reader, writer, batch, depth), REQUEST_TIMEOUT_S
            )
        except TimeoutError:
            tally.timeouts += 1
            return
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
            tally.errors += 1  # IncompleteReadError is an EOFError
            return
        elapsed = time.perf_counter() - started
        tally.latencies_s.extend([elapsed] * len(statuses))
        tally.non_2xx += sum(1 for s in statuses if not 200 <= s < 300)
        if not keep_alive:
            return


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, batch: bytes, depth: int
) -> tuple[list[int], bool]:
    """Send ``batch`` (``depth`` requests), read ``depth`` responses; return statuses, keep-alive."""
    writer.write(batch)
    await writer.drain()
    statuses: list[int] = []
    keep_alive = True
    for _ in range(depth):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, fields = head.decode("latin-1").partition("\r\n")
        statuses.append(int(status_line.split(" ", 2)[1]))
        length = 0
        for line in fields.split("\r\n"):
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep_alive = False
        if length:
            await reader.readexactly(length)
        if not keep_alive:
            break
    return statuses, keep_alive
