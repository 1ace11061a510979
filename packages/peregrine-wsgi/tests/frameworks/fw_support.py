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
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest

from peregrine_core import testing

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


class ServerProcess(testing.ServerProcess):
    """One WSGI server process, ready, with its collected log."""

    def __init__(
        self, command: tuple[str, ...], app: str, options: tuple[str, ...], cwd: Path, env: dict[str, str]
    ) -> None:
        assert command[0] == "-m", command
        super().__init__(
            command[1],
            [*command[2:], app, "--host", "127.0.0.1", "--port", "0", *options],
            cwd=cwd,
            python_path=[HERE.parent],
            env={"PYTHONUNBUFFERED": "1", **env},
            start_timeout=START_TIMEOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM by PID, then SIGKILL if still running after the timeout; the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.exit_code_within(TIMEOUT)
        finally:
            self.close()


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
