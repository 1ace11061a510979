"""Run Peregrine and the servers a user would pick instead, side by side, and report ratios.

Usage (from the repository root)::

    python tools/bench/run.py                      # every server, every scenario, 3 rounds
    python tools/bench/run.py --quick              # smoke test: Peregrine vs stdlib, seconds
    python tools/bench/run.py --duration 3 --rounds 2 --servers peregrine uvicorn nginx \\
        --scenarios wrk-c100 --out bench.md

Strategy: every run starts one server afresh, pinned to one CPU, checks that ``GET /`` returns
200 with the 6150-byte body, warms it up with the scenario's own load, measures for
``--duration`` seconds with the load generator pinned to the other CPU, reads the server's CPU
time and memory from ``/proc``, and stops it. Runs are interleaved: each round runs every
scenario against every server in turn (A B C ... A B C ...), so a ratio between two servers
compares numbers measured minutes apart on the same machine.

The blocking scenarios (``sleep5-c100``, ``slow1pct-c100``) run handlers that sleep, a stand-in
for a database call, on the servers that have such an app (Peregrine, gunicorn's gthread
worker, waitress), all with the same number of handler threads (``--handler-threads``).

The WSGI scenarios (``wsgi-hello-c100``, ``wsgi-sleep5-c100``) run one WSGI app on the WSGI
servers (``peregrine-wsgi``, gunicorn's gthread worker, waitress, granian's WSGI interface),
each one process with N handler threads (``--handler-threads``, default 32). ``stream-1g``
downloads a 1 GiB generated body, one download at a time (curl), from Peregrine's core
(``resp.set_stream``) and from the same WSGI servers; it reports GB/s and each server's peak
RSS, sampled from ``/proc`` during the downloads.

``--baseline REV`` checks an earlier revision out as a temporary git worktree in the run's
workdir and adds the server ``peregrine-baseline``: the ``peregrine`` command, run from that
worktree's packages, interleaved with the others; the report adds a line per scenario with
the ratios of ``peregrine`` to it. The worktree is removed at the end, whatever happens.

Invariants: every request goes to 127.0.0.1; every server process is killed at the end, even
on error or SIGTERM (process groups, ``finally``, ``atexit``), and the baseline worktree is
removed (``finally``, signals ignored meanwhile); every step has a timeout and the whole run
stops starting new runs after ``--time-limit`` seconds.

Setup: the peers are installed from ``requirements.txt`` into a virtual environment
(``tools/bench/.venv`` by default); missing system tools (wrk, h2load, nginx, h2o) are
installed with apt-get when running as root. ``--no-install`` skips both; ``--quick`` never
installs anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import baseline
import loadgen
import proctree
import report
import running
import servers
from apps._blocking import SLEEP_PATH, SLEEP_S, SLOW_S, SMALL_BODY
from apps._body import BODY_BYTES
from apps._stream import PIECE_BYTES, STREAM_BYTES, STREAM_PATH
from apps.wsgi_scenario_app import HELLO_BODY, HELLO_PATH

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent.parent
REQUIREMENTS: Final = HERE / "requirements.txt"
DEFAULT_VENV: Final = HERE / ".venv"

DEFAULT_ROUNDS: Final = 3
DEFAULT_DURATION_S: Final = 8
DEFAULT_WARMUP_S: Final = 2
QUICK_DURATION_S: Final = 2
QUICK_WARMUP_S: Final = 1
QUICK_SERVERS: Final = ("peregrine", "stdlib")
QUICK_SCENARIOS: Final = ("wrk-c100",)
RUN_OVERHEAD_S: Final = 3.0
"""Estimated start, readiness check and stop time of one run, for the time budget."""
INSTALL_TIMEOUT_S: Final = 900.0
WSGI_SERVER: Final = "peregrine-wsgi"
"""Peregrine's WSGI server: required when a WSGI or stream scenario is planned."""

VENV_SERVERS: Final = frozenset(
    {
        "uvicorn",
        "granian-rsgi",
        "granian-asgi",
        "granian-wsgi",
        "aiohttp",
        "gunicorn-sync",
        "gunicorn-gthread",
        "waitress",
    }
)
SYSTEM_PACKAGES: Final = {
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "nginx": "nginx",
    "h2o": "h2o",
    "curl": "curl",
}
APT_LINE: Final = "apt-get install -y wrk nghttp2-client nginx h2o curl"
RSS_SAMPLE_S: Final = 0.02
"""How often the download scenario samples the server's RSS."""


def log(message: str) -> None:
    """Progress goes to stderr; the report goes to stdout."""
    print(message, file=sys.stderr, flush=True)


# --- command line -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to run, resolved from the command line."""

    quick: bool
    rounds: int
    duration_s: int
    warmup_s: int
    server_names: tuple[str, ...]
    scenario_keys: tuple[str, ...]
    out: Path | None
    install: bool
    venv: Path
    python_loadgen: bool
    time_limit_s: float | None
    keep_workdir: bool
    argv: tuple[str, ...]
    handler_threads: int | None = None
    baseline: str | None = None


def server_order(
    servers_given: Sequence[str] | None, *, quick: bool, baseline_rev: str | None
) -> tuple[str, ...]:
    """The servers to run, in order, without repeats.

    ``peregrine-baseline`` runs only with a baseline revision, and always with one: by default
    and when ``--servers`` leaves it out, right after ``peregrine`` (else last).
    """
    names = list(dict.fromkeys(servers_given or (QUICK_SERVERS if quick else servers.SERVER_NAMES)))
    if baseline_rev is None:
        return tuple(n for n in names if n != servers.BASELINE_NAME)
    if servers.BASELINE_NAME not in names:
        at = names.index("peregrine") + 1 if "peregrine" in names else len(names)
        names.insert(at, servers.BASELINE_NAME)
    return tuple(names)


def parse_args(argv: Sequence[str] | None) -> Plan:
    """Turn the command line into a :class:`Plan` (exits with status 2 on a usage error)."""
    parser = argparse.ArgumentParser(
        prog="python tools/bench/run.py",
        description="Benchmark Peregrine against its peers, interleaved, and print a markdown "
        "report of requests/s, latency, errors, CPU per request, memory and ratios.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: Peregrine and the stdlib server, one round, wrk -c100 "
        f"({QUICK_DURATION_S} s), no installation; exit 0 when both answered",
    )
    parser.add_argument(
        "--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS}; 1 with --quick)"
    )
    parser.add_argument(
        "--duration",
        type=int,
        metavar="S",
        help=f"seconds measured per run (default {DEFAULT_DURATION_S})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        metavar="S",
        help=f"seconds of warm-up per run (default {DEFAULT_WARMUP_S})",
    )
    parser.add_argument(
        "--servers", nargs="+", choices=servers.SERVER_NAMES, metavar="NAME",
        help=f"servers, in this order (default: all): {', '.join(servers.SERVER_NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--scenarios", nargs="+", choices=loadgen.SCENARIO_KEYS, metavar="KEY",
        help=f"scenarios (default: all): {', '.join(loadgen.SCENARIO_KEYS)}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the report here")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="install nothing (no venv, no apt-get); servers that are missing are skipped",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="virtual environment of the peers (default: %(default)s)",
    )
    parser.add_argument(
        "--python-loadgen",
        action="store_true",
        help="use the pure-Python client instead of wrk/h2load (slow: only proves servers answer)",
    )
    parser.add_argument(
        "--time-limit", type=float, metavar="S",
        help="start no new run after this many seconds (default: twice the estimate + 120 s)",
    )  # fmt: skip
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and server logs")
    parser.add_argument(
        "--handler-threads", type=int, metavar="N",
        help="handler threads in the blocking scenarios: gunicorn-gthread's and waitress's "
        f"--threads (default {servers.DEFAULT_HANDLER_THREADS}), and Peregrine's "
        "--handler-threads (by default Peregrine keeps its own default); in the WSGI and "
        "stream scenarios every WSGI server's threads (peregrine-wsgi's --handler-threads, "
        "granian's --blocking-threads), always given",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", metavar="REV",
        help=f"also run {servers.BASELINE_NAME}: the peregrine command on revision REV (a commit, "
        "checked out as a temporary git worktree in the run's workdir), interleaved with the "
        "others; the report gives the ratios peregrine / baseline",
    )  # fmt: skip
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    quick: bool = args.quick
    rounds: int = args.rounds if args.rounds is not None else (1 if quick else DEFAULT_ROUNDS)
    duration: int = (
        args.duration
        if args.duration is not None
        else (QUICK_DURATION_S if quick else DEFAULT_DURATION_S)
    )
    warmup: int = (
        args.warmup if args.warmup is not None else (QUICK_WARMUP_S if quick else DEFAULT_WARMUP_S)
    )
    if rounds < 1 or (rounds < 2 and not quick):
        parser.error(
            "--rounds must be at least 2 (ratios need interleaved repetitions); --quick runs one"
        )
    if duration < 1 or warmup < 0:
        parser.error("--duration must be at least 1 and --warmup at least 0 (whole seconds)")
    if args.handler_threads is not None and not 1 <= args.handler_threads <= 1024:
        parser.error("--handler-threads must be between 1 and 1024")
    if args.baseline is not None and not args.baseline.strip():
        parser.error("--baseline needs a revision (a commit, a tag, a branch)")
    if args.baseline is not None and args.baseline.startswith("-"):
        parser.error(f"--baseline: {args.baseline!r} is not a revision")
    if args.servers and servers.BASELINE_NAME in args.servers and args.baseline is None:
        parser.error(f"{servers.BASELINE_NAME} runs an earlier revision: give --baseline REV")
    names = server_order(args.servers, quick=quick, baseline_rev=args.baseline)
    keys = tuple(args.scenarios or (QUICK_SCENARIOS if quick else loadgen.SCENARIO_KEYS))
    return Plan(
        quick=quick,
        rounds=rounds,
        duration_s=duration,
        warmup_s=warmup,
        server_names=names,
        scenario_keys=tuple(dict.fromkeys(keys)),
        out=args.out,
        install=not (args.no_install or quick),
        venv=args.venv.resolve(),
        python_loadgen=args.python_loadgen,
        time_limit_s=args.time_limit,
        keep_workdir=args.keep_workdir,
        argv=tuple(argv),
        handler_threads=args.handler_threads,
        baseline=args.baseline,
    )


# --- setup --------------------------------------------------------------------------------------


def install_system_tools(tools: Sequence[str], notes: list[str]) -> None:
    """apt-get install the Debian packages of the missing ``tools`` (root only)."""
    missing = sorted({SYSTEM_PACKAGES[t] for t in tools if servers.find_binary(t) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        notes.append(
            f"Not installed (not root, or no apt-get): {', '.join(missing)}. Install with `{APT_LINE}`."
        )
        return
    log(f"installing {' '.join(missing)} with apt-get ...")
    environ = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        try:
            done = subprocess.run(
                command,
                env=environ,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"`{shlex.join(command)}` failed: {exc}")
            return
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            notes.append(f"`{shlex.join(command)}` failed (status {done.returncode}): {tail}")
            return


def ensure_venv(venv: Path, notes: list[str], *, install: bool) -> str | None:
    """The peers' interpreter, creating or updating the venv from ``requirements.txt`` if allowed."""
    python = venv / "bin" / "python"
    marker = venv / ".requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    current = marker.exists() and marker.read_text().strip() == digest
    if python.exists() and (current or not install):
        if not current:
            notes.append(f"{venv} was not built from the current requirements.txt.")
        return str(python)
    if not install:
        return None
    log(f"installing the peers into {venv} ...")
    try:
        if not python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S,
            )  # fmt: skip
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
            check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        tail = " ".join(str(exc.stderr or "").strip().splitlines()[-3:])
        notes.append(f"Installing the peers into {venv} failed: {tail}")
        return str(python) if python.exists() else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"Installing the peers into {venv} failed: {exc}")
        return str(python) if python.exists() else None
    marker.write_text(digest + "\n")
    return str(python)


def raise_open_files_limit() -> None:
    """wrk -c1000 and the servers need more than 1024 descriptors: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def choose_server_cpu(notes: list[str]) -> int | None:
    """The CPU the servers are pinned to (the second usable one), or ``None`` for no pinning.

    The load generator gets the lowest other usable CPU.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        notes.append(
            "Fewer than two usable CPUs or no `taskset`: nothing is pinned; numbers mean less."
        )
        return None
    return cpus[1]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _tool_version(command: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else None


# --- one run ------------------------------------------------------------------------------------


def run_one(
    spec: servers.ServerSpec,
    scn: loadgen.Scenario,
    env: servers.BenchEnv,
    round_index: int,
    plan: Plan,
    load_cpu: int | None,
    tool: loadgen.Tool,
) -> report.RunRecord:
    """Start ``spec``, warm it up, measure it under ``scn``, stop it; never raises for a failure."""
    try:
        server = running.start(spec, env, app=scn.app)
    except servers.StartError as exc:
        return report.RunRecord(
            round_index, scn.key, spec.name, None, error=f"did not start: {exc}"
        )
    url = server.url_of(scn.path)
    try:
        rate_hint = None
        if plan.warmup_s or tool == "h2load":  # h2load sizes its run from the warm-up's rate
            # A failing warm-up is not reported: the measured run shows the problem if it lasts.
            with contextlib.suppress(loadgen.LoadError):
                warm = loadgen.run_load(scn, url, plan.warmup_s, cpu=load_cpu, tool=tool)
                rate_hint = warm.requests_per_s
        rss_before = proctree.rss_bytes(server.pid) if scn.stream_bytes else None
        sampler = proctree.RssSampler(server.pid, interval_s=RSS_SAMPLE_S)
        cpu_before = proctree.cpu_times(server.pid)
        with sampler if scn.stream_bytes else contextlib.nullcontext(sampler):
            result = loadgen.run_load(
                scn, url, plan.duration_s, cpu=load_cpu, tool=tool, rate_hint=rate_hint
            )
        cpu_after = proctree.cpu_times(server.pid)
        rss = proctree.rss_bytes(server.pid)
        error = None
        if not server.alive():
            error = (
                f"exited during the run (status {server.process.returncode}):\n{server.log_tail()}"
            )
        return report.RunRecord(
            round_index,
            scn.key,
            spec.name,
            result,
            cpu_after.total - cpu_before.total,
            rss,
            error,
            sys_s=cpu_after.system - cpu_before.system,
            rss_before_bytes=rss_before,
            rss_peak_bytes=sampler.peak_bytes if scn.stream_bytes else None,
        )
    except loadgen.LoadError as exc:
        return report.RunRecord(
            round_index, scn.key, spec.name, None, error=f"load generator: {exc}"
        )
    finally:
        server.stop()


def _progress(index: int, total: int, record: report.RunRecord) -> str:
    prefix = (
        f"[{index:>3}/{total}] round {record.round_index} {record.scenario:<15} {record.server:<17}"
    )
    if record.result is None:
        first = (record.error or "failed").splitlines()[0]
        return f"{prefix} FAILED: {first}"
    r = record.result
    if loadgen.scenario(record.scenario).stream_bytes:
        return (
            f"{prefix} {report.fmt_gb_per_s(r.bytes_per_s):>6} GB/s  {r.requests} download(s)  "
            f"CPU {report._fmt_s(record.cpu_s_per_gb)} s/GB  RSS before "
            f"{report.fmt_mib(report._float(record.rss_before_bytes))} MiB, peak "
            f"{report.fmt_mib(report._float(record.rss_peak_bytes))} MiB  "
            f"errors {r.errors} timeouts {r.timeouts} non-2xx {r.non_2xx}"
        )
    paths = "".join(
        f"  {p.path} p50 {report.fmt_us(p.latency_p50_us)} p99 {report.fmt_us(p.latency_p99_us)}"
        f" max {report.fmt_us(p.latency_max_us)} ({p.requests})"
        for p in r.by_path
    )
    return (
        f"{prefix} {report.fmt_rate(r.requests_per_s):>9} req/s  "
        f"stdev {report.fmt_us(r.latency_stdev_us):>9}  p99 {report.fmt_us(r.latency_p99_us):>9}  "
        f"CPU {report.fmt_cpu(record.cpu_us_per_request):>6} µs/req "
        f"(sys {report.fmt_cpu(record.sys_us_per_request)})  "
        f"errors {r.errors} timeouts {r.timeouts} non-2xx {r.non_2xx}{paths}"
    )


# --- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when every server that was run answered in every run."""
    plan = parse_args(argv)
    started = datetime.datetime.now().astimezone()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    raise_open_files_limit()
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="peregrine-bench-"))
    try:
        return _main(plan, started, workdir, notes)
    finally:
        running.stop_all()
        if plan.baseline is not None:
            _remove_worktree(baseline.worktree_path(workdir))
        if plan.keep_workdir:
            log(f"configs and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _remove_worktree(path: Path) -> None:
    """Remove the baseline worktree, with SIGINT, SIGTERM and SIGHUP ignored meanwhile (git,
    started then, inherits that), so a second Ctrl-C cannot leave it half removed."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in handled}
    try:
        if path.exists() or baseline.registered(REPO, path):
            problem = baseline.remove(REPO, path)
            log(f"baseline worktree {path}: " + (problem or "removed"))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main(plan: Plan, started: datetime.datetime, workdir: Path, notes: list[str]) -> int:
    plan = _servers_for_scenarios(plan, notes)
    env, machine = _set_up(plan, workdir, notes)
    specs, skipped = _available_servers(plan, env, notes)
    app_skips = _app_skips(env, specs)
    tool_of = _choose_tools(plan, notes)
    scenarios = [loadgen.scenario(k) for k in plan.scenario_keys if k in tool_of]
    load_cpu = None
    if env.server_cpu is not None:
        load_cpu = min(os.sched_getaffinity(0) - {env.server_cpu})
        os.sched_setaffinity(0, {load_cpu})  # the Python load generator runs in this process

    notes += _app_notes(plan, env, scenarios, specs, app_skips)
    runs = [
        (r, scn, spec)
        for r in range(1, plan.rounds + 1)
        for scn in scenarios
        for spec in specs
        if spec.serves(scn.app) and (spec.name, scn.app) not in app_skips
    ]
    estimate = sum(
        plan.duration_s + plan.warmup_s + RUN_OVERHEAD_S + _drain_s(scn) for _, scn, _ in runs
    )
    time_limit = plan.time_limit_s if plan.time_limit_s is not None else 2 * estimate + 120
    log(f"{len(runs)} runs, about {estimate / 60:.1f} min (no new run after {time_limit:.0f} s)")
    deadline = time.monotonic() + time_limit
    records: list[report.RunRecord] = []
    revision = _revision_lines(plan, env)  # the commit at the start
    source = servers.checkout_src(REPO)
    digests: list[str] = []  # of Peregrine's source before each run: was it edited meanwhile?
    interrupted = False
    try:
        for index, (round_index, scn, spec) in enumerate(runs, 1):
            if time.monotonic() > deadline:
                notes.append(
                    f"Time limit ({time_limit:.0f} s) reached: "
                    f"{len(runs) - index + 1} runs not made."
                )
                break
            digests.append(baseline.source_digest(source))
            record = run_one(spec, scn, env, round_index, plan, load_cpu, tool_of[scn.key])
            records.append(record)
            log(_progress(index, len(runs), record))
    except (KeyboardInterrupt, SystemExit):  # SIGINT; SIGTERM and SIGHUP raise SystemExit
        interrupted = True
        running.stop_all()
        notes.append(
            f"Interrupted: {len(records)} of {len(runs)} runs made; the report is partial."
        )
        log("interrupted: writing the partial report")

    notes += _source_notes(digests)
    notes += [
        f"Round {r.round_index}, {r.scenario}, `{r.server}`: " + r.error.replace("\n", " ⏎ ")
        for r in records
        if r.error
    ]
    found_versions = servers.versions(env)
    data = report.ReportInput(
        command_line=shlex.join(["python", "tools/bench/run.py", *plan.argv]),
        started=started.strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine,
        method=_method(
            plan,
            env,
            load_cpu,
            specs,
            scenarios,
            uses_python_client=any(
                tool == "python" and loadgen.scenario(key).tool != "python"
                for key, tool in tool_of.items()
            ),
        ),
        servers=[(s.name, _title(s, env), found_versions.get(s.name, "?")) for s in specs],
        scenarios=scenarios,
        ours=[s.name for s in servers.SERVERS if s.ours],
        records=records,
        notes=notes,
        revision=revision,
        ab_pairs=(
            [("peregrine", servers.BASELINE_NAME)]
            if {"peregrine", servers.BASELINE_NAME} <= {s.name for s in specs}
            else []
        ),
        threads=env.peer_threads if any(s.thread_sleep_s for s in scenarios) else None,
    )
    text = report.render(data)
    sys.stdout.write(text)
    sys.stdout.flush()
    if plan.out is not None:
        plan.out.parent.mkdir(parents=True, exist_ok=True)
        plan.out.write_text(text, encoding="utf-8")
        log(f"report written to {plan.out}")

    if interrupted:
        return 130
    failed = [r for r in records if r.error is not None or r.result is None]
    required = {"peregrine", servers.BASELINE_NAME}
    if any(s.app in ("wsgi", "stream") for s in scenarios):
        required.add(WSGI_SERVER)
    missing_required = [n for n in skipped if plan.quick or n in required]
    if failed or missing_required or not records or len(records) < len(runs):
        log(
            f"exit 1: {len(failed)} failed run(s), {len(missing_required)} required server(s) "
            f"unavailable, {len(records)}/{len(runs)} runs made"
        )
        return 1
    return 0


def servers_for(server_names: Sequence[str], scenario_keys: Sequence[str]) -> tuple[str, ...]:
    """The servers of ``server_names`` that serve the app of at least one of the scenarios."""
    apps = {loadgen.scenario(k).app for k in scenario_keys}
    return tuple(n for n in server_names if any(servers.spec(n).serves(a) for a in apps))


def _servers_for_scenarios(plan: Plan, notes: list[str]) -> Plan:
    """The plan without the servers that run none of its scenarios (nothing is installed or
    checked for them), with a note naming them."""
    kept = servers_for(plan.server_names, plan.scenario_keys)
    dropped = [n for n in plan.server_names if n not in kept]
    if not dropped:
        return plan
    notes.append(
        f"Not run at all (no app for {', '.join(plan.scenario_keys)}): "
        + ", ".join(f"`{n}`" for n in dropped)
        + "."
    )
    return dataclasses.replace(plan, server_names=kept)


def _set_up(
    plan: Plan, workdir: Path, notes: list[str]
) -> tuple[servers.BenchEnv, list[tuple[str, str]]]:
    """Install what is missing (if allowed), pick the interpreter and the CPUs, write the file."""
    if plan.install:
        needed = [n for n in plan.server_names if n in ("nginx", "h2o")]
        if not plan.python_loadgen:
            needed += [loadgen.scenario(k).tool for k in plan.scenario_keys]
        install_system_tools(sorted({t for t in needed if t in SYSTEM_PACKAGES}), notes)
    venv_python = None
    if VENV_SERVERS.intersection(plan.server_names):
        venv_python = ensure_venv(plan.venv, notes, install=plan.install)
    # Every Python server runs on the venv's interpreter (the same CPython build for all);
    # --quick keeps to the interpreter running the harness.
    python = venv_python if venv_python is not None and not plan.quick else sys.executable
    server_cpu = choose_server_cpu(notes)
    checked_out = None
    if plan.baseline is not None:
        log(f"checking {plan.baseline} out into {baseline.worktree_path(workdir)} ...")
        try:
            checked_out = baseline.create(REPO, plan.baseline, workdir)
        except baseline.BaselineError as exc:
            notes.append(f"No baseline: {exc}.")
            log(f"no baseline: {exc}")
    machine = report.machine_info(servers.interpreter_version(python))  # before any pinning
    env = servers.BenchEnv(
        repo=REPO,
        workdir=workdir,
        static_dir=servers.prepare_static(workdir),
        python=python,
        venv_python=venv_python,
        server_cpu=server_cpu,
        handler_threads=plan.handler_threads,
        baseline=checked_out,
    )
    return env, machine


def _available_servers(
    plan: Plan, env: servers.BenchEnv, notes: list[str]
) -> tuple[list[servers.ServerSpec], list[str]]:
    """The servers that can run here, and the names of those skipped (with a note each)."""
    specs: list[servers.ServerSpec] = []
    skipped: list[str] = []
    for name in plan.server_names:
        spec = servers.spec(name)
        reason = spec.check(env)
        if reason is None:
            specs.append(spec)
        else:
            skipped.append(name)
            notes.append(f"Skipped `{name}`: {reason}.")
            log(f"skipping {name}: {reason}")
    return specs, skipped


def _app_skips(
    env: servers.BenchEnv, specs: Sequence[servers.ServerSpec]
) -> dict[tuple[str, loadgen.AppKind], str]:
    """(server, app) -> why that server sits out that app's scenarios (a baseline revision
    without an option the command needs)."""
    skips: dict[tuple[str, loadgen.AppKind], str] = {}
    for spec in specs:
        for app in loadgen.APP_KINDS:
            reason = spec.skip_reason(env, app)
            if reason is not None:
                skips[(spec.name, app)] = reason
    return skips


def _source_notes(digests: Sequence[str]) -> list[str]:
    """A warning when this checkout's Peregrine source changed between runs (a shared
    checkout): which runs saw which version, and the commit at the end."""
    spans = baseline.changed_spans(digests)
    if len(spans) < 2:
        return []
    head = baseline.commit_of(REPO)
    at_end = f"`{head[0]}`" if head is not None else "unknown"
    stretches = "; ".join(
        f"runs {first}–{last}: version {n}" if first != last else f"run {first}: version {n}"
        for n, (first, last) in enumerate(spans, 1)
    )
    log(f"warning: Peregrine's source changed during the run ({stretches})")
    dirs = ", ".join(f"`{p.relative_to(REPO)}`" for p in servers.checkout_src(REPO))
    note = (
        f"**Peregrine's source in this checkout ({dirs}) changed during the run**, so its "
        f"runs measured more than one version ({stretches}, in the order of the progress "
        f"log); the header's commit is the one at the start, HEAD at the end was {at_end}."
    )
    return [note]


def _revision_lines(plan: Plan, env: servers.BenchEnv) -> list[str]:
    """The report's lines naming the commit measured and the baseline revision."""
    lines = []
    head = baseline.commit_of(REPO, ignore="tools/bench/results/")
    if head is None:
        lines.append("Commit: unknown (no git).")
    else:
        short, subject, changed = head
        line = f"Commit: `{short}` ({subject})"
        if changed:
            line += "; files differ from it (uncommitted) in " + ", ".join(
                f"`{c}`" for c in changed
            )
        lines.append(line + ".")
    if env.baseline is not None:
        b = env.baseline
        lines.append(
            f"Baseline (`{servers.BASELINE_NAME}`, `--baseline {plan.baseline}`): "
            f"`{b.short}` ({b.subject}), a temporary git worktree, removed after the run."
        )
    elif plan.baseline is not None:
        lines.append(f"Baseline: `{plan.baseline}` could not be checked out (see the notes).")
    return lines


def _choose_tools(plan: Plan, notes: list[str]) -> dict[str, loadgen.Tool]:
    """The load generator of each scenario that can run (the Python client as a fallback)."""
    tool_of: dict[str, loadgen.Tool] = {}
    for key in plan.scenario_keys:
        tool = loadgen.scenario(key).tool
        if tool == "python":
            tool_of[key] = "python"  # the scenario's own client (mixed_load)
        elif plan.python_loadgen:
            tool_of[key] = "python"
            notes.append(f"--python-loadgen: {key} used the pure-Python load generator (slow).")
        elif loadgen.tool_available(tool):
            tool_of[key] = tool
        elif plan.quick:
            tool_of[key] = "python"
            notes.append(f"`{tool}` is missing: {key} used the pure-Python load generator (slow).")
        else:
            notes.append(f"Skipped scenario {key}: `{tool}` is not installed (`{APT_LINE}`).")
    return tool_of


def _drain_s(scn: loadgen.Scenario) -> float:
    """Time a run of ``scn`` may add to its warm-up and measurement: the mixed client awaits
    the slow requests outstanding at each deadline (about 1 s, twice)."""
    return 2 * SLOW_S if scn.slow_every else 0.0


def _title(spec: servers.ServerSpec, env: servers.BenchEnv) -> str:
    """The report's "what runs" cell, with the thread count of the threaded peers."""
    title = re.sub(
        r"\bN (handler |blocking )?threads", rf"{env.peer_threads} \1threads", spec.title
    )
    if spec.name == servers.BASELINE_NAME and env.baseline is not None:
        title = title.replace("REV", f"`{env.baseline.short}`")
    return title


def _app_notes(
    plan: Plan,
    env: servers.BenchEnv,
    scenarios: Sequence[loadgen.Scenario],
    specs: Sequence[servers.ServerSpec],
    app_skips: Mapping[tuple[str, loadgen.AppKind], str] | None = None,
) -> list[str]:
    """Which servers sit out which scenarios, and how Peregrine's handler threads were set."""
    notes: list[str] = []
    sitting_out: tuple[tuple[loadgen.AppKind, str], ...] = (
        ("blocking", "the blocking scenarios (no blocking app)"),
        ("body", "the body scenarios (they run the blocking, WSGI or stream scenarios only)"),
        ("wsgi", "the WSGI scenarios (not WSGI servers)"),
        ("stream", "the stream scenario (no streaming app)"),
    )
    for app, what in sitting_out:
        keys = [s.key for s in scenarios if s.app == app]
        idle = [s.name for s in specs if not s.serves(app)]
        if keys and idle:
            notes.append(
                f"Not run in {what}: {', '.join(f'`{n}`' for n in idle)} ({', '.join(keys)})."
            )
    for (name, app), reason in (app_skips or {}).items():
        keys = [s.key for s in scenarios if s.app == app]
        if keys:
            notes.append(f"Not run in {', '.join(keys)}: `{name}`, because {reason}.")
    blocking = any(s.app == "blocking" for s in scenarios)
    if blocking and any(s.name == "peregrine" for s in specs):
        default = servers.peregrine_handler_threads(env)
        if default is None:
            notes.append(
                "This Peregrine has no `--handler-threads` (no `ServerConfig.handler_threads`): "
                "it ran the blocking scenarios with its defaults, handlers on its worker thread"
                + (
                    f"; `--handler-threads {plan.handler_threads}` was not passed to it."
                    if plan.handler_threads is not None
                    else "."
                )
            )
        elif plan.handler_threads is None:
            notes.append(
                f"Peregrine ran the blocking scenarios with its default handler threads "
                f"({default}); the peers with {env.peer_threads}."
            )
        else:
            notes.append(
                f"Peregrine ran the blocking scenarios with `--handler-threads "
                f"{plan.handler_threads}`, as the peers."
            )
    if any(s.app in ("wsgi", "stream") for s in scenarios):
        wsgi_servers = [s.name for s in specs if s.serves("wsgi")]
        if wsgi_servers:
            notes.append(
                f"The WSGI servers ({', '.join(f'`{n}`' for n in wsgi_servers)}) ran the WSGI "
                f"and stream scenarios with {env.peer_threads} handler threads each, always given."
            )
    name = servers.BASELINE_NAME
    if (
        blocking
        and env.baseline is not None
        and any(s.name == name for s in specs)
        and (name, "blocking") not in (app_skips or {})
    ):
        default = servers.peregrine_handler_threads(env, baseline=True)
        threads = (
            f"`--handler-threads {plan.handler_threads}`"
            if plan.handler_threads is not None
            else f"its default handler threads ({default})"
        )
        notes.append(f"`{name}` ({env.baseline.short}) ran the blocking scenarios with {threads}.")
    return notes


def _method(
    plan: Plan,
    env: servers.BenchEnv,
    load_cpu: int | None,
    specs: Sequence[servers.ServerSpec],
    scenarios: Sequence[loadgen.Scenario],
    *,
    uses_python_client: bool,
) -> list[str]:
    """The report's description of how the numbers were obtained."""
    tools = [_tool_version(["wrk", "--version"]), _tool_version(["h2load", "--version"])]
    used_tools = ", ".join(v for v in tools if v) or "none found"
    if uses_python_client:
        used_tools += "; the pure-Python client where noted"
    if any(s.slow_every for s in scenarios):
        used_tools += "; the mixed-path asyncio client (slow1pct-c100)"
    if any(s.stream_bytes for s in scenarios):
        curl = _tool_version(["curl", "--version"])
        used_tools += f"; {' '.join(curl.split()[:2]) if curl else 'curl'} (stream-1g)"
    affinity = "none"
    if env.server_cpu is not None:
        affinity = (
            f"servers `taskset -c {env.server_cpu}`, "
            f"load generator `taskset -c {load_cpu}` (one thread)"
        )
    blocking: list[str] = []
    if any(s.app == "blocking" for s in scenarios):
        blocking.append(
            f"Blocking scenarios ({', '.join(s.key for s in scenarios if s.app == 'blocking')}): "
            f"the handler sleeps (`time.sleep`) as the path says, then answers a "
            f"{len(SMALL_BODY)}-byte body: `/sleep5` {SLEEP_S * 1e3:.0f} ms, `/slow` "
            f"{SLOW_S:.0f} s, `/fast` not at all. gunicorn-gthread and waitress run "
            f"{env.peer_threads} handler threads; Peregrine's are in the notes."
        )
    wsgi_keys = [s.key for s in scenarios if s.app == "wsgi"]
    if wsgi_keys:
        blocking.append(
            f"WSGI scenarios ({', '.join(wsgi_keys)}): every WSGI server runs the same app, "
            f"`apps/wsgi_scenario_app.py`, in one process with {env.peer_threads} handler "
            "threads (peregrine-wsgi `--workers 1 --handler-threads N`, gunicorn `-k gthread "
            "-w 1 --threads N`, waitress `--threads N`, granian `--interface wsgi --workers 1 "
            "--runtime-threads 1 --blocking-threads N`). wsgi-hello-c100 measures what each "
            f"server costs per request when the app does nothing: `GET {HELLO_PATH}` answers "
            f"a list of one {len(HELLO_BODY)}-byte bytes object with Content-Length set. "
            f"wsgi-sleep5-c100 measures how well the threads are used when every view blocks: "
            f"`GET {SLEEP_PATH}` sleeps {SLEEP_S * 1e3:.0f} ms (`time.sleep`) and answers "
            f"{len(SMALL_BODY)} bytes, so at most threads / {SLEEP_S * 1e3:.0f} ms "
            f"= {env.peer_threads / SLEEP_S:,.0f} req/s can be answered; the scenario's "
            "section gives each server's fraction of that ceiling."
        )
    if any(s.stream_bytes for s in scenarios):
        blocking.append(
            f"stream-1g measures a large generated download: `GET {STREAM_PATH}` answers "
            f"{STREAM_BYTES:,} bytes (1 GiB) produced by a generator of {PIECE_BYTES // 1024} "
            "KiB pieces (one prepared piece yielded again and again), with Content-Length: "
            "Peregrine's core handler through `resp.set_stream(pieces, length=...)`, the WSGI "
            "servers the same generator returned by the WSGI app. One client (`curl -o "
            "/dev/null`, pinned like the load generators) downloads it again and again until "
            "the measured time is over (at least once; the warm-up downloads it too): GB/s "
            "is bytes over the summed download times. The server's RSS is read just before "
            f"and sampled every {RSS_SAMPLE_S * 1e3:.0f} ms during the downloads "
            "(`VmRSS` of the process tree): a flat RSS means the body was streamed, not held."
        )
    if any(s.slow_every for s in scenarios):
        blocking.append(
            "slow1pct-c100 uses a Python asyncio client (`loadgen.mixed_load`) that sends every "
            "100th request of each connection (staggered) to `/slow` and keeps the latencies of "
            "each path apart (nearest-rank p50/p99, max); its request timeout is "
            f"{loadgen.MIXED_TIMEOUT_S:.0f} s, requests outstanding at the deadline are awaited, "
            "and req/s counts the answers received before it."
        )
    return [
        (
            f"Request: `GET /` on 127.0.0.1, answered 200 with a {BODY_BYTES}-byte `text/html` "
            "body, keep-alive (HTTP/1.1). Static servers serve the same bytes from a file."
        ),
        *blocking,
        f"Pinning: {affinity}.",
        (
            f"Interleaved: {plan.rounds} round(s); each round runs every scenario against every "
            f"server that runs it, in this order: {', '.join(s.name for s in specs)}."
        ),
        (
            f"Each run starts the server afresh, checks that `GET /` returns 200 with "
            f"{BODY_BYTES} bytes, warms up for {plan.warmup_s} s with the scenario's own load, "
            f"measures for {plan.duration_s} s, then stops the server."
        ),
        (
            "CPU µs/req: utime + stime (and reaped children) of the server's whole process tree "
            "from `/proc/PID/stat`, before and after the measured run, divided by the requests "
            "answered. RSS: sum of `VmRSS` over the process tree after the run."
        ),
        (
            f"Every server: listen backlog {servers.BACKLOG_CONNECTIONS} where it has the "
            f"option, no access log; nginx, h2o and waitress allow {servers.MAX_CONNECTIONS} "
            "connections. "
            f"Load generator request timeout {loadgen.REQUEST_TIMEOUT_S:.0f} s."
        ),
        f"Load generators: {used_tools}.",
        (
            "The machine may be shared: only ratios measured in the same round mean much; "
            "absolute numbers are indications."
        ),
    ]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
