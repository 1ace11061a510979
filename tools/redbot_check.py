#!/usr/bin/env python3
"""Lint peregrine-static's answers with REDbot (https://redbot.org), the HTTP checker.

    python3 tools/redbot_check.py [--redbot PATH] [--python PATH] [--strict]

REDbot is a development tool, not a dependency of any package; install it on its own::

    python3 -m venv /tmp/redbot-venv && /tmp/redbot-venv/bin/pip install redbot

The script writes a temporary directory holding a small text file (sent from memory), a
text file with a precompressed ``.gz`` sibling, and a 1 MiB binary file (larger than the
small-file cache limit, so sent with ``os.sendfile``); serves it with
``PYTHON -m peregrine_static DIR --host 127.0.0.1 --port 0 -q``; and runs
``redbot -o har URL`` on each file. For each URL REDbot fetches the file, then probes it
with ``Range``, ``If-None-Match``, ``If-Modified-Since`` and ``Accept-Encoding: gzip``, and
rates what it saw: the validators, the ranges, ``Content-Length``, caching, negotiation.
Every note is printed, worst first. The exit status is 1 when a note is rated BAD (or,
with ``--strict``, WARN), 2 when the check itself could not run.

``PYTHON`` (``--python``, default: this interpreter) must have ``peregrine-static``
installed. Every connection stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Final

START_TIMEOUT_SECONDS: Final = 15.0
REDBOT_TIMEOUT_SECONDS: Final = 120.0
STOP_TIMEOUT_SECONDS: Final = 15.0
BIG_FILE_BYTES: Final = 1024 * 1024
DEFAULT_REDBOT: Final = "/tmp/redbot-venv/bin/redbot"
LEVELS: Final = ("BAD", "WARN", "INFO", "GOOD")


def _write_files(root: Path) -> list[str]:
    """Write the files to check; return their names."""
    (root / "small.txt").write_text("Hello, REDbot! This is a small text file.\n" * 8)
    compressible = "Peregrine serves precompressed siblings.\n" * 200
    (root / "compressed.txt").write_text(compressible)
    (root / "compressed.txt.gz").write_bytes(gzip.compress(compressible.encode(), mtime=0))
    # Not compressible and not a text: bytes that are neither repetitive nor UTF-8.
    (root / "big.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
    return ["small.txt", "compressed.txt", "big.bin"]


def _start_server(python: str, root: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    """Start the static server on a free port of 127.0.0.1; return it and the port."""
    argv = [python, "-m", "peregrine_static", str(root), "--host", "127.0.0.1", "--port", "0", "-q"]
    with log.open("w") as log_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True)
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=START_TIMEOUT_SECONDS)
    except queue.Empty:
        line = ""
    match = re.search(r" on http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        _stop_server(proc)
        raise SystemExit(f"the server did not start: {line!r}\n{log.read_text()}")
    return proc, int(match.group(1))


def _stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _run_redbot(redbot: str, url: str) -> dict[str, Any]:
    """Run REDbot on ``url``; return its HAR entry (exchange and notes)."""
    command = [redbot, "-o", "har", url]
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=REDBOT_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"redbot failed ({done.returncode}): {done.stderr.strip()}")
    entries = json.loads(done.stdout)["log"]["entries"]
    if len(entries) != 1:
        raise SystemExit(f"redbot returned {len(entries)} exchanges for {url}, expected 1")
    entry: dict[str, Any] = entries[0]
    return entry


def _report(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Print one exchange and its notes, worst first; return the notes."""
    response = entry["response"]
    print(f"  {response.get('httpVersion', 'HTTP/1.1')} {response['status']} {response['statusText']}")
    for header in response["headers"]:
        print(f"  {header['name']}:{header['value']}")
    notes: list[dict[str, Any]] = sorted(
        entry.get("_red_messages", []),
        key=lambda note: LEVELS.index(note["level"]) if note["level"] in LEVELS else 0,
    )
    for note in notes:
        print(f"  [{note['level']:<4}] {note['category']:<12} {note['note_id']}: {note['summary']}")
    print(flush=True)
    return notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Lint peregrine-static's answers with REDbot.")
    parser.add_argument(
        "--redbot", default=None, help=f"the redbot command (default: {DEFAULT_REDBOT}, then PATH)"
    )
    parser.add_argument("--python", default=sys.executable, help="Python with peregrine-static installed")
    parser.add_argument("--strict", action="store_true", help="fail on WARN notes too")
    args = parser.parse_args(argv)

    redbot = args.redbot or (DEFAULT_REDBOT if os.access(DEFAULT_REDBOT, os.X_OK) else shutil.which("redbot"))
    if redbot is None:
        print("redbot not found: python3 -m venv /tmp/redbot-venv && /tmp/redbot-venv/bin/pip install redbot")
        return 2

    failing = {"BAD", "WARN"} if args.strict else {"BAD"}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="redbot-check-") as tmp:
        root = Path(tmp) / "site"
        root.mkdir()
        names = _write_files(root)
        proc, port = _start_server(args.python, root, Path(tmp) / "server.log")
        try:
            for name in names:
                url = f"http://127.0.0.1:{port}/{name}"
                for note in _report(_run_redbot(redbot, url)):
                    if note["level"] in failing:
                        failures.append(f"{url}: [{note['level']}] {note['summary']}")
        finally:
            _stop_server(proc)

    if failures:
        print("Findings that fail the check:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("No finding fails the check.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
