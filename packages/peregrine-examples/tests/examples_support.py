"""What the examples' tests share: launching an example as a process, and headless Chromium."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
from pathlib import Path
from typing import Any, Final

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "KILL_TIMEOUT",
    "TIMEOUT",
    "console_script",
    "free_port",
    "kill_group",
    "start",
    "stop",
]

TIMEOUT: Final = 10.0
KILL_TIMEOUT: Final = 10.0
CHROMIUM: Final = "/usr/bin/chromium"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def console_script(name: str) -> str:
    """The path of an installed console script (the venv's scripts directory first)."""
    path = shutil.which(name, path=sysconfig.get_path("scripts") + os.pathsep + os.environ["PATH"])
    assert path is not None, f"console script {name} is not installed"
    return path


def start(argv: list[str], cwd: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start an example; return it with its first line of output (read with a timeout)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return proc, lines.get(timeout=TIMEOUT).strip()
    except queue.Empty:
        stop(proc)
        pytest.fail(f"{argv} printed nothing within {TIMEOUT} s")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, then wait (closing the pipes); return the exit code and what went to stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err or ""


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill Chromium and every helper process it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is already gone
    proc.wait(KILL_TIMEOUT)
