"""What the framework tests share: a WSGI server in a subprocess, ``/proc`` readings, Chromium.

A server is ``python -m peregrine_wsgi MODULE:APP --host 127.0.0.1 --port 0 ...`` with the
``tests`` directory first on ``PYTHONPATH`` (the applications live next to this file, in the
``frameworks`` package). Its port is read
from its ``listening on`` log line; its output is collected as it runs; it is stopped by its
own PID (SIGTERM, then SIGKILL if it has not exited in time). Every wait is bounded.

Chromium is driven as ``packages/peregrine-examples/tests`` drive it: the standard library
alone, ``--dump-dom``, a fresh profile, its own process group killed afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest

HERE: Final = Path(__file__).parent
TIMEOUT: Final = 10.0
START_TIMEOUT: Final = 20.0
CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_TIMEOUT: Final = 60.0
# Headless Chromium on a machine with no network: no sandbox (tests may run as root, where
# it refuses to start), no GPU, and none of the background requests that would fail.
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-proxy-server",
    "--enable-logging=stderr",
    "--v=0",
)

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)",
)


def module_name(name: str) -> str:
    """The importable name of a module of this directory (``frameworks.NAME``)."""
    return f"{__name__.rpartition('.')[0]}.{name}"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that imports the applications of this directory."""
    pythonpath = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **(extra or {})}


class ServerProcess:
    """One WSGI server process and its collected log."""

    def __init__(
        self, command: tuple[str, ...], app: str, options: tuple[str, ...], cwd: Path, env: dict[str, str]
    ) -> None:
        argv = [sys.executable, *command, app, "--host", "127.0.0.1", "--port", "0", *options]
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid
        self.port = 0
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"log-of-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def log(self) -> str:
        """Everything the server wrote so far (stderr, with stdout merged in)."""
        with self._cond:
            return "".join(self._lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_log(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first log line matching ``pattern``; fails (with the log) after ``timeout`` s."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines:
                    if m := regex.search(line):
                        return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    state = f"exited with {self.proc.poll()}" if self._eof else f"nothing in {timeout} s"
                    raise AssertionError(f"{self.argv}: {state} before logging {pattern!r}:\n{self.log}")
                self._cond.wait(remaining)

    def wait_ready(self) -> None:
        self.port = int(self.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)", START_TIMEOUT).group(1))

    def rss_bytes(self) -> int:
        """The server process's resident set size now (``VmRSS`` of ``/proc/PID/status``)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
        assert m is not None, status
        return int(m.group(1)) * 1024

    def stop(self) -> int:
        """SIGTERM by PID, then SIGKILL if still running after the timeout; the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
            raise AssertionError(f"the server ignored SIGTERM for {TIMEOUT} s:\n{self.log}") from None
        finally:
            self._reader.join(TIMEOUT)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return code


@contextmanager
def running(
    app: str,
    *options: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    command: tuple[str, ...] = ("-m", "peregrine_wsgi"),
) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` block; stopped (by its PID) at the end, whatever happened.

    ``command`` follows the interpreter: ``python -m peregrine_wsgi`` by default, or
    ``("-m", "peregrine_core", "wsgi")`` for the core's ``peregrine wsgi`` command.
    """
    server = ServerProcess(command, app, options, cwd, env or {})
    try:
        server.wait_ready()
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()
        else:
            server.proc.wait(TIMEOUT)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill Chromium and every helper process it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is already gone
    proc.wait(TIMEOUT)


def dump_dom(url: str, profile: Path, *extra: str) -> str:
    """Load ``url`` in headless Chromium (profile ``profile``); the DOM once loading settled."""
    argv = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, "--dump-dom", url]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HOME": str(profile)},
        start_new_session=True,
    )
    try:
        try:
            dom, log = proc.communicate(timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            dom, log = proc.communicate(timeout=TIMEOUT)
            pytest.fail(
                f"Chromium did not finish within {CHROMIUM_TIMEOUT} s loading {url}; log: {log[-3000:]}"
            )
    finally:
        kill_group(proc)
    assert proc.returncode == 0, f"Chromium exited with {proc.returncode}; log: {log[-3000:]}"
    return dom
