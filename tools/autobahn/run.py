#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzing client against the echo example; fail on any bad case.

    python3 tools/autobahn/run.py            # every case of groups 1-13 (517 cases, 7-9 min)
    python3 tools/autobahn/run.py --quick    # groups 1-10 whole, a part of 12 and 13 (~1 min)
    python3 tools/autobahn/run.py --cases 5.* 6.4.*   # some groups or cases only

Steps, each bounded in time:

1. Find a Python 2.7 (``--python2``, ``$AUTOBAHN_PYTHON2``, ``python2.7`` on ``PATH``, pyenv's
   ``versions/2.7*``, ``/usr/bin/python2.7``). The suite (PyPI ``autobahntestsuite``) is
   Python 2 code. Without one the script exits with :data:`EXIT_NO_PYTHON2` (the test suite
   skips on it).
2. Make, once, a Python 2.7 virtualenv holding the pins of ``requirements-py27.txt``
   (the suite's own sdist declares no dependencies). ``venv`` cannot make Python 2
   environments, so a small Python 3 venv holds ``virtualenv<20.22``, the last releases
   that can. Both live in ``--cache-dir`` (``tools/autobahn/.cache``) and are reused while
   the requirements are unchanged.
3. Start ``python -m peregrine_examples.echo --host 127.0.0.1 --port 0`` with
   ``--server-python`` (this interpreter by default; it must have the four packages
   installed) and read the port from its ``listening on`` line.
4. Write the fuzzing client's spec (``fuzzingclient.json`` with the server's URL, the
   report directory and the selected cases) and run ``wstest -m fuzzingclient``.
5. Read ``index.json``: every case must be ``OK``, ``NON-STRICT`` or ``INFORMATIONAL`` and
   must not have closed uncleanly; every selected group must have run; the server must not
   have logged an error or a traceback, and must stop within its graceful timeout with exit
   status 0 on SIGTERM. Anything else is printed, with each bad case's description,
   expectation and observed result, and the exit status is 1.

The suite's cases are listed in ``fuzzingclient.json`` (with the exclusions, none today);
``README.md`` says what each group tests and how long it takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import venv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
REQUIREMENTS: Final = HERE / "requirements-py27.txt"
SPEC_TEMPLATE: Final = HERE / "fuzzingclient.json"
DEFAULT_CACHE: Final = HERE / ".cache"

#: Exit statuses.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_SETUP: Final = 2
EXIT_NO_PYTHON2: Final = 4

#: Case outcomes that pass (``behavior`` in index.json).
PASSING: Final = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
#: Closing outcomes that fail (``behaviorClose``): a dropped TCP connection or a wrong close.
FAILING_CLOSE: Final = frozenset({"FAILED", "UNCLEAN"})

#: The suite's groups; Autobahn has no group 8 nor 11.
GROUPS: Final = ("1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13")
#: ``--quick``: every case of 1-10; of 12 and 13 (permessage-deflate, 1000 messages per case,
#: 95 % of the full run's time), in every subgroup the unfragmented payloads of 16 bytes to
#: 8 KiB (x.y.1-x.y.6) and 8 KiB in 256-byte frames (x.y.11), plus the largest case of the
#: first subgroup (128 KiB in 32 KiB frames).
QUICK_CASES: Final = (
    *(f"{g}.*" for g in GROUPS[:9]),
    *(f"12.{s}.{c}" for s in range(1, 6) for c in (1, 2, 3, 4, 5, 6, 11)),
    *(f"13.{s}.{c}" for s in range(1, 8) for c in (1, 2, 3, 4, 5, 6, 11)),
    "12.1.18",
    "13.1.18",
)

VIRTUALENV_REQUIREMENT: Final = "virtualenv<20.22"
SERVER_START_TIMEOUT_S: Final = 30.0
SERVER_STOP_TIMEOUT_S: Final = 45.0  # the echo example's graceful_timeout is 30 s
INSTALL_TIMEOUT_S: Final = 900.0


class SetupError(Exception):
    """Something needed to run the suite is missing or broken (not a test failure)."""


@dataclass(frozen=True)
class CaseResult:
    """One case as ``index.json`` reports it, with its details from the case's own report."""

    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration_ms: int
    description: str = ""
    expectation: str = ""
    result: str = ""
    result_close: str = ""

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING and self.behavior_close not in FAILING_CLOSE


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key of a case id such as ``12.1.10``."""
    return tuple(int(part) for part in case_id.split("."))


# --- finding Python 2.7 and building its environment -------------------------------------


def _is_python27(path: str) -> bool:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout == "2.7"


def find_python2(explicit: str | None) -> str | None:
    """The first working Python 2.7 interpreter among the usual places, or ``None``."""
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    if os.environ.get("AUTOBAHN_PYTHON2"):
        candidates.append(os.environ["AUTOBAHN_PYTHON2"])
    for name in ("python2.7", "python2"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv", "/opt/pyenv"]
    for root in dict.fromkeys(r for r in roots if r):
        versions = Path(root) / "versions"
        if versions.is_dir():
            for version in sorted(versions.glob("2.7*"), reverse=True):
                candidates.append(str(version / "bin" / "python"))
    candidates += ["/usr/bin/python2.7", "/usr/local/bin/python2.7"]
    for candidate in dict.fromkeys(candidates):
        if os.access(candidate, os.X_OK) and _is_python27(candidate):
            return candidate
    return None


def _bin(env: Path, name: str) -> Path:
    return env / "bin" / name


def _run_step(argv: Sequence[str | Path], what: str, timeout: float = INSTALL_TIMEOUT_S) -> None:
    print(f"autobahn: {what}", flush=True)
    try:
        done = subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what}: no result within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise SetupError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def ensure_environment(python2: str, cache: Path) -> Path:
    """A Python 2.7 virtualenv with the pinned suite installed; its ``wstest`` path."""
    py27 = cache / "venv-py27"
    wstest = _bin(py27, "wstest")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + python2.encode()).hexdigest()
    stamp = py27 / ".peregrine-installed"
    if wstest.exists() and stamp.exists() and stamp.read_text() == digest:
        return wstest
    helper = cache / "venv-helper"
    if not _bin(helper, "virtualenv").exists():
        print(f"autobahn: creating {helper}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(helper)
        _run_step(
            [_bin(helper, "python"), "-m", "pip", "install", "-q", VIRTUALENV_REQUIREMENT],
            f"installing {VIRTUALENV_REQUIREMENT}",
        )
    if py27.exists():
        shutil.rmtree(py27)
    _run_step([_bin(helper, "virtualenv"), "-q", "-p", python2, py27], f"creating {py27} ({python2})")
    _run_step(
        [
            _bin(py27, "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            REQUIREMENTS,
        ],
        "installing the Python 2.7 pins of requirements-py27.txt",
    )
    if not wstest.exists():
        raise SetupError(f"{wstest} is missing after installing {REQUIREMENTS.name}")
    stamp.write_text(digest)
    return wstest


# --- the server --------------------------------------------------------------------------


def start_server(python: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the echo example on 127.0.0.1 and a free port; the process and the port."""
    argv = [python, "-m", "peregrine_examples.echo", "--host", "127.0.0.1", "--port", "0"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                break
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
    match = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)\n", line)
    if match is None:
        proc.kill()
        proc.wait(10)
        raise SetupError(
            f"the echo example did not start ({' '.join(argv)} printed {line!r}); "
            f"its log:\n{log_path.read_text(errors='replace')[-3000:]}\n"
            "(install the packages into the server's Python, e.g. "
            "pip install -e packages/peregrine-core -e packages/peregrine-ws "
            "-e packages/peregrine-static -e packages/peregrine-examples)"
        )
    return proc, int(match.group(1))


def stop_server(proc: subprocess.Popen[bytes]) -> str | None:
    """SIGTERM, then wait; a problem description, or ``None`` when it stopped cleanly."""
    if proc.poll() is not None:
        return f"the echo example died during the run (exit status {proc.returncode})"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return f"the echo example did not stop within {SERVER_STOP_TIMEOUT_S:.0f} s of SIGTERM"
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    return None if code == 0 else f"the echo example exited with status {code} after SIGTERM"


def server_log_problems(log_path: Path) -> list[str]:
    """Lines of the server's log that show an error: tracebacks, ERROR and CRITICAL records."""
    problems = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "Traceback" in line or " ERROR " in line or " CRITICAL " in line:
            problems.append(line)
    return problems


# --- the suite and its report ------------------------------------------------------------


def write_spec(path: Path, url: str, outdir: Path, cases: Sequence[str]) -> None:
    spec = json.loads(SPEC_TEMPLATE.read_text())
    spec["outdir"] = str(outdir)
    spec["servers"][0]["url"] = url
    spec["cases"] = list(cases)
    path.write_text(json.dumps(spec, indent=3) + "\n")


def run_suite(wstest: Path, spec: Path, log_path: Path, timeout: float) -> None:
    argv = [str(wstest), "-m", "fuzzingclient", "-s", str(spec)]
    print(f"autobahn: {' '.join(argv)} (log: {log_path}, at most {timeout:.0f} s)", flush=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=spec.parent, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise SetupError(f"wstest did not finish within {timeout:.0f} s; see {log_path}") from None
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SetupError(f"wstest exited with status {code}:\n{tail}")


def read_results(outdir: Path) -> list[CaseResult]:
    """Every case of the report in ``outdir`` (one agent), with the bad ones' details."""
    index_path = outdir / "index.json"
    if not index_path.exists():
        raise SetupError(f"{index_path} was not written; see the wstest log")
    index: dict[str, dict[str, dict[str, Any]]] = json.loads(index_path.read_text())
    if len(index) != 1:
        raise SetupError(f"expected one agent in {index_path}, found {sorted(index)}")
    (cases,) = index.values()
    results = []
    for case_id, entry in sorted(cases.items(), key=lambda item: case_key(item[0])):
        result = CaseResult(
            case_id=case_id,
            behavior=str(entry.get("behavior")),
            behavior_close=str(entry.get("behaviorClose")),
            remote_close_code=entry.get("remoteCloseCode"),
            duration_ms=int(entry.get("duration") or 0),
        )
        report = outdir / str(entry.get("reportfile", ""))
        if not result.passed and report.is_file():
            details: dict[str, Any] = json.loads(report.read_text())
            result = dataclasses.replace(
                result,
                description=str(details.get("description", "")),
                expectation=str(details.get("expectation", "")),
                result=str(details.get("result", "")),
                result_close=str(details.get("resultClose", "")),
            )
        results.append(result)
    return results


def _plain(html: str) -> str:
    """Case descriptions hold a little HTML; make them readable on a terminal."""
    text = re.sub(r"<br\s*/?>", " ", html)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\s+", " ", text).strip()


def summarize(results: Sequence[CaseResult], patterns: Sequence[str]) -> list[str]:
    """Print the summary; the problems found (empty when every case passed)."""
    problems: list[str] = []
    by_group: dict[str, Counter[str]] = {}
    for r in results:
        by_group.setdefault(r.case_id.split(".")[0], Counter())[r.behavior] += 1
    statuses = Counter(r.behavior for r in results)
    closes = Counter(r.behavior_close for r in results)
    total_s = sum(r.duration_ms for r in results) / 1000
    print(f"autobahn: {len(results)} cases in {total_s:.1f} s of case time")
    print("autobahn: outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print("autobahn: closing:  " + ", ".join(f"{k} {v}" for k, v in sorted(closes.items())))
    for group in sorted(by_group, key=int):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(by_group[group].items()))
        print(f"autobahn:   group {group:>2}: {counts}")
    slowest = sorted(results, key=lambda r: r.duration_ms, reverse=True)[:5]
    print("autobahn: slowest: " + ", ".join(f"{r.case_id} {r.duration_ms / 1000:.1f} s" for r in slowest))
    for pattern in patterns:
        regex = re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")
        if not any(regex.match(r.case_id) for r in results):
            problems.append(f"no case matching {pattern!r} ran")
    for r in results:
        if not r.passed:
            problems.append(
                f"case {r.case_id}: {r.behavior} (closing {r.behavior_close}, "
                f"close code {r.remote_close_code})\n"
                f"    description: {_plain(r.description)}\n"
                f"    expectation: {_plain(r.expectation)}\n"
                f"    result:      {_plain(r.result)}\n"
                f"    closing:     {_plain(r.result_close)}"
            )
    return problems


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "--quick", action="store_true", help="groups 1-10 and a part of 12 and 13 (see README.md)"
    )
    selection.add_argument("--cases", nargs="+", metavar="PATTERN", help="case patterns such as 5.* or 6.4.3")
    parser.add_argument("--python2", help="the Python 2.7 interpreter to build the suite's environment with")
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="the interpreter that runs the echo example (default: this one)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="virtualenvs (default: %(default)s)"
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        help="where the spec, the logs and the report go (default: CACHE_DIR/reports)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds wstest may run (default: %(default)s)"
    )
    ns = parser.parse_args(argv)

    patterns: list[str] = ns.cases or (
        list(QUICK_CASES) if ns.quick else json.loads(SPEC_TEMPLATE.read_text())["cases"]
    )
    started = time.monotonic()
    python2 = find_python2(ns.python2)
    if python2 is None:
        print("autobahn: no Python 2.7 found (give --python2 or set AUTOBAHN_PYTHON2)", file=sys.stderr)
        return EXIT_NO_PYTHON2
    cache: Path = ns.cache_dir.resolve()
    outdir: Path = (ns.outdir or cache / "reports").resolve()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        wstest = ensure_environment(python2, cache)
        if outdir.exists():
            shutil.rmtree(outdir)
        outdir.mkdir(parents=True)
        server_log = outdir / "server.log"
        server, port = start_server(ns.server_python, server_log)
        try:
            spec = outdir / "spec.json"
            write_spec(spec, f"ws://127.0.0.1:{port}", outdir / "servers", patterns)
            run_suite(wstest, spec, outdir / "wstest.log", ns.timeout)
        finally:
            stop_problem = stop_server(server)
        results = read_results(outdir / "servers")
    except SetupError as exc:
        print(f"autobahn: {exc}", file=sys.stderr)
        return EXIT_SETUP

    problems = summarize(results, patterns)
    if stop_problem is not None:
        problems.append(stop_problem)
    problems += [f"server log: {line}" for line in server_log_problems(server_log)[:20]]
    elapsed = time.monotonic() - started
    print(f"autobahn: report in {outdir / 'servers' / 'index.html'}; {elapsed:.0f} s in all")
    if problems:
        print(f"autobahn: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    print("autobahn: every case passed")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
