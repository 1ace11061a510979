"""Load generators: wrk, h2load, a small pure-Python client, and a mixed-path Python client.

Strategy: a :class:`Scenario` names a tool, a connection count, a pipelining depth, the path
requested and the app the servers run (the 6150-byte body, or the blocking handlers of
``apps/_blocking.py``).
:func:`run_load` runs the tool pinned to the load generator's CPU (``taskset -c``) and parses
its text output into a :class:`LoadResult`. wrk runs for a whole number of seconds; h2load
runs by request count, sized from the warm-up's rate (its timed mode hangs against servers
that close connections). Every external tool run has a timeout (a multiple of the duration
plus :data:`SLACK_S`), so a hung client cannot stall the harness.

The ``slow1pct-c100`` scenario needs the latency of its fast requests apart from its slow
ones, which wrk cannot give (its one histogram mixes them, and its Lua hooks see neither the
clock nor the connection a response belongs to): :func:`mixed_load`, an asyncio client,
sends every ``slow_every``-th request of each connection to the slow path and keeps one set
of latencies per path. It stops by itself after its duration or its request budget.

The ``stream-1g`` scenario is a download: :func:`stream_load` fetches its 1 GiB body with
curl into ``/dev/null`` (or with :func:`python_download`, reading into one reusable buffer),
one download after another, and counts bytes and seconds.

Invariants:
- Only ``http://127.0.0.1:PORT/...`` is ever requested.
- Latencies are in microseconds; ``None`` means the tool does not report that figure
  (h2load has no percentiles; wrk prints a p99 of 0 when its coordinated-omission
  correction leaves the histogram inconsistent, as with pipelining) or there was no sample.
- With pipelining, wrk measures latency per batch of requests, not per request.
- ``errors`` counts connect/read/write failures, ``timeouts`` requests with no answer within
  :data:`REQUEST_TIMEOUT_S` (wrk's default), ``non_2xx`` answers with another status.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import math
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from apps._blocking import SLEEP_PATH, SLEEP_S
from apps._stream import STREAM_BYTES, STREAM_PATH
from apps.wsgi_scenario_app import HELLO_PATH

SLACK_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 2.0
PIPELINE_DEPTH: Final = 16
PIPELINE_SCRIPT: Final = Path(__file__).resolve().parent / "pipeline.lua"
H2LOAD_PROBE_REQUESTS: Final = 1000
H2LOAD_SLOWDOWN_ALLOWED: Final = 3
"""An h2load run may take this many times its planned duration before it is abandoned."""

MIXED_TIMEOUT_S: Final = 10.0
""":func:`mixed_load`'s per-request timeout: long enough that a fast request stuck behind
slow ones is measured (a timed-out request has no latency, so a short timeout would hide
the worst waits from the percentiles)."""
MIXED_MAX_REQUESTS: Final = 2_000_000
""":func:`mixed_load` sends at most this many requests per run, whatever the duration."""

STREAM_TIMEOUT_S: Final = 120.0
"""The longest one download of :func:`stream_load` may take (1 GiB at 9 MB/s)."""
STREAM_BUFFER_BYTES: Final = 1 << 20
"""The Python download client's reusable receive buffer."""

Tool = Literal["wrk", "h2load", "python", "curl"]
AppKind = Literal["body", "blocking", "wsgi", "stream"]
"""What the servers run: ``body`` answers the 6150-byte body at once (``apps/*_app.py``);
``blocking`` has handlers that sleep (``apps/_blocking.py``), served by fewer servers;
``wsgi`` is the WSGI app of the WSGI scenarios (``apps/wsgi_scenario_app.py``), served by the
WSGI servers; ``stream`` the 1 GiB download (``apps/_stream.py``: Peregrine's core handler,
and the WSGI app for the WSGI servers)."""
APP_KINDS: Final[tuple[AppKind, ...]] = ("body", "blocking", "wsgi", "stream")


@dataclass(frozen=True)
class Scenario:
    """One way of loading a server.

    Attributes:
        key: short name used on the command line and in the report (``wrk-c100``).
        title: the report's heading for the scenario.
        tool: the load generator.
        connections: concurrent keep-alive connections.
        pipeline_depth: requests sent back to back on a connection before reading (1: none).
        path: the path requested.
        app: the app the servers run for this scenario.
        slow_every: with the mixed client, every ``slow_every``-th request of a connection
            goes to ``slow_path`` instead of ``path`` (0: never).
        slow_path: see ``slow_every``.
        stream_bytes: for a download scenario (tool ``curl``, or its Python client), the
            size of the body every download must receive (0: not a download).
        thread_sleep_s: when every request's handler sleeps this long on one of N handler
            threads, N / ``thread_sleep_s`` requests/s is the most a server can answer (the
            report prints that ceiling and each server's fraction of it; 0: no ceiling).
    """

    key: str
    title: str
    tool: Tool
    connections: int
    pipeline_depth: int = 1
    path: str = "/"
    app: AppKind = "body"
    slow_every: int = 0
    slow_path: str = "/slow"
    stream_bytes: int = 0
    thread_sleep_s: float = 0.0


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
    Scenario(
        "sleep5-c100",
        "wrk, 100 connections, keep-alive; every handler blocks 5 ms (`GET /sleep5`)",
        "wrk",
        100,
        path="/sleep5",
        app="blocking",
    ),
    Scenario(
        "slow1pct-c100",
        "100 connections, keep-alive; every 100th request of a connection blocks 1 s "
        "(`GET /slow`), the others answer at once (`GET /fast`); Python client, latency per path",
        "python",
        100,
        path="/fast",
        app="blocking",
        slow_every=100,
        slow_path="/slow",
    ),
    Scenario(
        "wsgi-hello-c100",
        "WSGI hello world (a list of one 14-byte body, Content-Length set; `GET /hello`), "
        "wrk, 100 connections, keep-alive",
        "wrk",
        100,
        path=HELLO_PATH,
        app="wsgi",
    ),
    Scenario(
        "wsgi-sleep5-c100",
        "WSGI view that sleeps 5 ms (`GET /sleep5`), wrk, 100 connections, keep-alive",
        "wrk",
        100,
        path=SLEEP_PATH,
        app="wsgi",
        thread_sleep_s=SLEEP_S,
    ),
    Scenario(
        "stream-1g",
        "one client downloads a 1 GiB generated body (256 KiB pieces, Content-Length; "
        "`GET /stream1g`) again and again, `curl -o /dev/null`; GB/s and the server's peak RSS",
        "curl",
        1,
        path=STREAM_PATH,
        app="stream",
        stream_bytes=STREAM_BYTES,
    ),
)
SCENARIO_KEYS: Final = tuple(s.key for s in SCENARIOS)


@dataclass(frozen=True)
class PathStats:
    """The requests of one path in a :func:`mixed_load` run.

    ``requests`` counts the answers received (latencies are of those); ``timeouts`` the
    requests unanswered after :data:`MIXED_TIMEOUT_S`; ``errors`` the connections lost while
    one of its requests was outstanding; ``non_2xx`` answers with another status.
    """

    path: str
    requests: int
    latency_p50_us: float | None
    latency_p99_us: float | None
    latency_max_us: float | None
    errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0


@dataclass(frozen=True)
class LoadResult:
    """What one load generator run measured.

    ``by_path`` is filled by :func:`mixed_load` only: one :class:`PathStats` per path, the
    scenario's main path first.
    """

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
    latency_p50_us: float | None = None
    by_path: tuple[PathStats, ...] = ()
    bytes_received: int = 0
    """Body bytes received (filled by :func:`stream_load`: the downloads' bytes)."""

    @property
    def bytes_per_s(self) -> float | None:
        """Body bytes received per second of download, if counted."""
        if not self.bytes_received or self.duration_s <= 0:
            return None
        return self.bytes_received / self.duration_s

    def path_stats(self, path: str) -> PathStats | None:
        """The figures of ``path``, if this run kept them apart."""
        for stats in self.by_path:
            if stats.path == path:
                return stats
        return None


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
    ``url`` includes the scenario's path.
    """
    if scn.slow_every:
        raise ValueError(f"{scn.key} mixes paths: only the Python client (mixed_load) runs it")
    if scn.tool == "curl":
        return curl_command(url)
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
        url: ``http://127.0.0.1:PORT`` and the scenario's path (``/``, ``/sleep5``, ...).
        duration_s: whole seconds of load.
        cpu: the CPU the load generator is pinned to, or ``None``.
        tool: overrides ``scn.tool`` (``"python"`` for the fallback client).
        rate_hint: expected requests/s, used by h2load to size its run.

    Raises:
        LoadError: the tool failed, timed out, or printed no result.
    """
    chosen = tool or scn.tool
    if scn.stream_bytes:
        if chosen not in ("curl", "python"):
            raise LoadError(f"{scn.key} is a download: curl or the Python client runs it")
        return stream_load(url, duration_s, scn.stream_bytes, cpu=cpu, tool=chosen)
    if scn.slow_every:
        if chosen != "python":
            raise LoadError(f"{scn.key} mixes paths: only the Python client runs it, not {chosen}")
        return mixed_load(
            url, scn.connections, duration_s, slow_path=scn.slow_path, slow_every=scn.slow_every
        )
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
_WRK_P50: Final = re.compile(rf"^\s*50(?:\.0+)?%\s+{_TIME}", re.MULTILINE)
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
    avg = stdev = p50 = p99 = None
    latency = _WRK_LATENCY.search(text)
    if latency:
        avg = _time_us(latency.group(1), latency.group(2))
        stdev = _time_us(latency.group(3), latency.group(4))
    median = _WRK_P50.search(text)
    if median:
        p50 = _time_us(median.group(1), median.group(2))
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
        latency_p50_us=p50,
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
    ordered = sorted(lat)
    p50, p99 = percentile_us(ordered, 0.50), percentile_us(ordered, 0.99)
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
        latency_p50_us=p50,
    )


def percentile_us(ordered_s: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of latencies sorted ascending, in seconds, as microseconds.

    ``None`` without samples. The nearest rank is an observed value: the p99 of 100 samples
    is the 99th smallest, of 1000 the 990th.
    """
    if not ordered_s:
        return None
    rank = min(len(ordered_s), max(1, math.ceil(fraction * len(ordered_s))))
    return ordered_s[rank - 1] * 1e6


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


# --- the mixed-path client ----------------------------------------------------------------------


def is_slow(connection_index: int, request_index: int, every: int) -> bool:
    """Whether request ``request_index`` (0-based) of connection ``connection_index`` is slow.

    Every connection sends exactly one slow request in each run of ``every`` consecutive
    requests. The connections are staggered (connection ``k``'s first slow request is its
    request ``every - 1 - k % every``), so the slow requests are spread over the run rather
    than sent together.
    """
    return every > 0 and (request_index + connection_index) % every == every - 1


@dataclass
class _PathTally:
    latencies_s: list[float] = field(default_factory=list)
    in_window: int = 0
    """Answers received before the deadline (the requests/s figure counts those only)."""
    errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0

    def stats(self, path: str) -> PathStats:
        return path_stats(
            path, self.latencies_s, errors=self.errors, timeouts=self.timeouts, non_2xx=self.non_2xx
        )


def path_stats(
    path: str, latencies_s: Sequence[float], *, errors: int = 0, timeouts: int = 0, non_2xx: int = 0
) -> PathStats:
    """p50, p99 and max (nearest rank, microseconds) of one path's latencies in seconds."""
    ordered = sorted(latencies_s)
    return PathStats(
        path=path,
        requests=len(ordered),
        latency_p50_us=percentile_us(ordered, 0.50),
        latency_p99_us=percentile_us(ordered, 0.99),
        latency_max_us=ordered[-1] * 1e6 if ordered else None,
        errors=errors,
        timeouts=timeouts,
        non_2xx=non_2xx,
    )


@dataclass
class _Mix:
    """What the connections of one :func:`mixed_load` run share."""

    port: int
    fast_path: str
    slow_path: str
    slow_every: int
    requests: dict[str, bytes]
    tallies: dict[str, _PathTally]
    deadline: float
    """``time.monotonic()`` after which no request is sent (outstanding ones are awaited)."""
    budget: int
    """Requests that may still be sent."""
    timeout_s: float
    connect_errors: int = 0
    connect_timeouts: int = 0


def mixed_load(
    url: str,
    connections: int,
    duration_s: int,
    *,
    slow_path: str,
    slow_every: int,
    max_requests: int = MIXED_MAX_REQUESTS,
    timeout_s: float = MIXED_TIMEOUT_S,
) -> LoadResult:
    """Keep-alive HTTP/1.1 connections sending ``url``'s path, and every ``slow_every``-th
    request of each connection (see :func:`is_slow`) to ``slow_path``; latencies per path.

    Each connection sends one request, reads the answer, and sends the next, for
    ``duration_s`` seconds or until ``max_requests`` have been sent in all. Requests
    outstanding at the deadline are awaited (each for at most ``timeout_s``), so a slow
    request's latency is measured whole; ``requests_per_s`` counts only the answers received
    before the deadline. A connection that errs, times out or is closed by the server is
    replaced until the deadline. The whole run is bounded by ``duration_s + timeout_s +``
    :data:`SLACK_S`.

    The overall latency figures mix both paths; ``by_path`` has the main path first, then
    ``slow_path``.

    Raises:
        LoadError: ``url`` is not ``http://127.0.0.1:PORT/...``.
        ValueError: ``slow_every`` is below 1, or ``slow_path`` is not another absolute path.
    """
    match = _URL.match(url)
    if match is None:
        raise LoadError(f"the Python load generator only requests 127.0.0.1, not {url}")
    port, fast_path = int(match.group(1)), match.group(2)
    if slow_every < 1 or not slow_path.startswith("/") or slow_path == fast_path:
        raise ValueError(f"bad mix: every {slow_every} to {slow_path!r} among {fast_path!r}")
    started = time.monotonic()
    mix = _Mix(
        port=port,
        fast_path=fast_path,
        slow_path=slow_path,
        slow_every=slow_every,
        requests={
            p: f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
            for p in (fast_path, slow_path)
        },
        tallies={fast_path: _PathTally(), slow_path: _PathTally()},
        deadline=started + duration_s,
        budget=max_requests,
        timeout_s=timeout_s,
    )
    asyncio.run(_mixed(mix, connections, duration_s + timeout_s + SLACK_S))
    ended = time.monotonic()
    tallies = [mix.tallies[fast_path], mix.tallies[slow_path]]
    ordered = sorted(x for t in tallies for x in t.latencies_s)
    window = min(ended, mix.deadline) - started
    in_window = sum(t.in_window for t in tallies)
    return LoadResult(
        tool="python",
        requests=len(ordered),
        duration_s=window,
        requests_per_s=in_window / window if window > 0 else 0.0,
        latency_avg_us=statistics.fmean(ordered) * 1e6 if ordered else None,
        latency_stdev_us=statistics.pstdev(ordered) * 1e6 if ordered else None,
        latency_p99_us=percentile_us(ordered, 0.99),
        errors=mix.connect_errors + sum(t.errors for t in tallies),
        timeouts=mix.connect_timeouts + sum(t.timeouts for t in tallies),
        non_2xx=sum(t.non_2xx for t in tallies),
        latency_p50_us=percentile_us(ordered, 0.50),
        by_path=(tallies[0].stats(fast_path), tallies[1].stats(slow_path)),
    )


async def _mixed(mix: _Mix, connections: int, hard_limit_s: float) -> None:
    clients = asyncio.gather(*(_mixed_client(mix, k) for k in range(connections)))
    with contextlib.suppress(TimeoutError):  # only if a timeout failed to fire: never hang
        await asyncio.wait_for(clients, hard_limit_s)


def _more(mix: _Mix) -> bool:
    return mix.budget > 0 and time.monotonic() < mix.deadline


async def _mixed_client(mix: _Mix, index: int) -> None:
    sent = 0  # this connection's requests, across reconnections: the slow schedule goes on
    while _more(mix):
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                reader, writer = await asyncio.open_connection("127.0.0.1", mix.port)
        except TimeoutError:
            mix.connect_timeouts += 1
            continue
        except OSError:
            mix.connect_errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while _more(mix):
                slow = is_slow(index, sent, mix.slow_every)
                path = mix.slow_path if slow else mix.fast_path
                tally = mix.tallies[path]
                sent += 1
                mix.budget -= 1
                begun = time.perf_counter()
                try:
                    async with asyncio.timeout(mix.timeout_s):
                        statuses, keep_alive = await _exchange(
                            reader, writer, mix.requests[path], 1
                        )
                except TimeoutError:
                    tally.timeouts += 1
                    break
                except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
                    tally.errors += 1  # IncompleteReadError is an EOFError
                    break
                tally.latencies_s.append(time.perf_counter() - begun)
                if time.monotonic() <= mix.deadline:
                    tally.in_window += 1
                if not 200 <= statuses[0] < 300:
                    tally.non_2xx += 1
                if not keep_alive:
                    break
        finally:
            writer.close()


# --- the download client (stream-1g) -----------------------------------------------------------

CURL_FORMAT: Final = "%{http_code} %{size_download} %{time_total}\\n"
"""What curl prints after each download (``-w``): status, body bytes, seconds."""


@dataclass(frozen=True)
class Download:
    """One download: the status (0 when none came), body bytes received, seconds taken, and
    how it ended (``"ok"``, ``"error"``: the connection failed or the body was cut short,
    ``"timeout"``)."""

    status: int
    size_bytes: int
    seconds: float
    outcome: Literal["ok", "error", "timeout"] = "ok"


def curl_command(url: str) -> list[str]:
    """One download of ``url`` by curl into ``/dev/null``, its figures printed on stdout."""
    return [
        "curl", "--silent", "--show-error", "--output", "/dev/null",
        "--max-time", f"{STREAM_TIMEOUT_S:.0f}", "--write-out", CURL_FORMAT, url,
    ]  # fmt: skip


_CURL_OUT: Final = re.compile(r"^(\d{3}) (\d+) ([\d.]+)$", re.MULTILINE)
_CURL_TIMEOUT: Final = 28
"""curl's exit status for ``--max-time`` reached."""


def parse_curl(text: str, returncode: int) -> Download:
    """Read the ``-w`` line of one curl download (see :data:`CURL_FORMAT`) and its status.

    Raises:
        LoadError: no such line (curl could not run, or printed something else).
    """
    match = _CURL_OUT.search(text)
    if match is None:
        raise LoadError(f"unreadable curl output (status {returncode}):\n{text.strip()[-600:]}")
    outcome: Literal["ok", "error", "timeout"] = "ok"
    if returncode == _CURL_TIMEOUT:
        outcome = "timeout"
    elif returncode != 0:
        outcome = "error"
    return Download(int(match.group(1)), int(match.group(2)), float(match.group(3)), outcome)


def _curl_download(url: str, cpu: int | None) -> Download:
    cmd = curl_command(url)
    taskset = shutil.which("taskset")
    if cpu is not None and taskset is not None:
        cmd = [taskset, "-c", str(cpu), *cmd]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=STREAM_TIMEOUT_S + SLACK_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"curl did not finish within {STREAM_TIMEOUT_S + SLACK_S:.0f} s") from exc
    except OSError as exc:
        raise LoadError(f"cannot run curl: {exc}") from exc
    return parse_curl(done.stdout + done.stderr, done.returncode)


def python_download(
    url: str, *, buffer_bytes: int = STREAM_BUFFER_BYTES, timeout_s: float = STREAM_TIMEOUT_S
) -> Download:
    """One download of ``url`` by ``http.client``, the body read into one reusable buffer
    (``readinto``: no allocation per read; ``Content-Length`` or chunked).

    Raises:
        LoadError: ``url`` is not ``http://127.0.0.1:PORT/...``.
    """
    match = _URL.match(url)
    if match is None:
        raise LoadError(f"the Python load generator only requests 127.0.0.1, not {url}")
    port, path = int(match.group(1)), match.group(2)
    buffer = memoryview(bytearray(buffer_bytes))
    status = size = 0
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        status = response.status
        while True:
            if time.monotonic() > deadline:
                return Download(status, size, time.perf_counter() - started, "timeout")
            count = response.readinto(buffer)
            if not count:
                break
            size += count
        if response.length:  # http.client ends a short Content-Length body silently
            return Download(status, size, time.perf_counter() - started, "error")
    except TimeoutError:
        return Download(status, size, time.perf_counter() - started, "timeout")
    except (OSError, http.client.HTTPException):
        return Download(status, size, time.perf_counter() - started, "error")
    finally:
        connection.close()
    return Download(status, size, time.perf_counter() - started)


def stream_load(
    url: str, duration_s: int, expected_bytes: int, *, cpu: int | None, tool: Tool = "curl"
) -> LoadResult:
    """Download ``url`` again and again, one download at a time, until ``duration_s`` have
    passed (at least one download; none with ``duration_s == 0``); each must receive
    ``expected_bytes`` with status 200.

    ``requests`` counts the downloads, ``duration_s`` is the time spent downloading (the sum
    of each download's time, so the client's own start-up is left out), ``bytes_received``
    the body bytes of them all; the latency figures are per download. A download that fails,
    times out or falls short counts as an error (or timeout) and ends the run; a status
    other than 200 counts in ``non_2xx``.

    Raises:
        LoadError: the tool could not run or printed no result.
    """
    downloads: list[Download] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        one = _curl_download(url, cpu) if tool == "curl" else python_download(url)
        downloads.append(one)
        if one.outcome != "ok" or one.status != 200 or one.size_bytes != expected_bytes:
            break
    seconds = sum(d.seconds for d in downloads)
    times = sorted(d.seconds for d in downloads)
    errors = sum(
        1
        for d in downloads
        if d.outcome == "error"
        or (d.outcome == "ok" and d.status == 200 and d.size_bytes != expected_bytes)
    )
    return LoadResult(
        tool="curl" if tool == "curl" else "python",
        requests=len(downloads),
        duration_s=seconds,
        requests_per_s=len(downloads) / seconds if seconds > 0 else 0.0,
        latency_avg_us=statistics.fmean(times) * 1e6 if times else None,
        latency_stdev_us=statistics.pstdev(times) * 1e6 if times else None,
        latency_p99_us=percentile_us(times, 0.99),
        errors=errors,
        timeouts=sum(1 for d in downloads if d.outcome == "timeout"),
        non_2xx=sum(1 for d in downloads if d.status not in (0, 200)),
        latency_p50_us=percentile_us(times, 0.50),
        bytes_received=sum(d.size_bytes for d in downloads),
    )
