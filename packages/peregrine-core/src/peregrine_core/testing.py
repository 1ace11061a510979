"""Helpers for testing handlers and plugins against a real server.

:class:`ServerProcess` runs a server command in a subprocess (for signals, descriptor limits,
CPU and memory) and learns its port from its log.

:func:`serve` runs a :class:`~peregrine_core.Server` on ``127.0.0.1``, port 0, in a background
thread, and stops it (gracefully, with a bounded wait) when the block ends::

    with serve(MyHandler) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ._config import ServerConfig
from ._server import Server

__all__ = ["RssSampler", "ServerProcess", "serve"]


@contextmanager
def serve(
    handler: Any,
    *,
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    start_timeout: float = 10.0,
    stop_timeout: float | None = None,
) -> Iterator[Server]:
    """Run a server in a background thread for the duration of the ``with`` block.

    Raises:
        RuntimeError: the server did not start, or did not stop, within its timeout.
    """
    server = Server(handler, host=host, port=0, config=config)
    if stop_timeout is None:
        stop_timeout = server.config.graceful_timeout + 10.0
    server.bind()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="peregrine-test-server", daemon=True)
    thread.start()
    if not server.wait_started(start_timeout):
        server.shutdown()
        raise RuntimeError(f"server did not start within {start_timeout} s: {errors}")
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(stop_timeout)
        if thread.is_alive():
            raise RuntimeError(f"server did not stop within {stop_timeout} s")
        if errors:
            raise RuntimeError("server failed") from errors[0]


# Runs a module as ``__main__`` under a lower RLIMIT_NOFILE: argv is NOFILE, MODULE, arguments.
_LIMITED_BOOT: Final = """
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


class ServerProcess:
    """``python -m MODULE ARGS`` in a subprocess, for tests that need a real process (signals,
    descriptor limits, CPU and memory measured from ``/proc``).

    Its output (stderr and stdout together) is captured line by line; the constructor waits
    until a line matches ``ready`` (by default the core's ``listening on 127.0.0.1:PORT``)
    and takes the port from its first group. :meth:`close` kills what is left by the
    process's own PID. Usable as a context manager.

    Args:
        module: the module to run, e.g. ``"peregrine_core"`` or ``"peregrine_static"``.
        args: its command-line arguments.
        cwd: its working directory.
        python_path: directories put first on its ``PYTHONPATH`` (where a test's handler
            module lives).
        env: variables added to (or replacing) this process's environment for it.
        nofile: run it under this ``RLIMIT_NOFILE`` (soft and hard), for descriptor tests.
        ready: the pattern of the line that says it listens; group 1 is the port.
        ready_count: how many such lines to wait for (one per process).
        start_timeout: seconds to wait for them.

    Raises:
        AssertionError: the process exited, or did not become ready in time (with its
            output so far).
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        cwd: str | os.PathLike[str] | None = None,
        python_path: Sequence[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        nofile: int | None = None,
        ready: str = r"listening on 127\.0\.0\.1:(\d+)",
        ready_count: int = 1,
        start_timeout: float = 15.0,
    ) -> None:
        environ = {**os.environ, **(env or {})}
        paths = [os.fspath(p) for p in python_path]
        if environ.get("PYTHONPATH"):
            paths.append(environ["PYTHONPATH"])
        if paths:
            environ["PYTHONPATH"] = os.pathsep.join(paths)
        if nofile is None:
            argv = [sys.executable, "-m", module, *args]
        else:
            argv = [sys.executable, "-c", _LIMITED_BOOT, str(nofile), module, *args]
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"log-of-{self.pid}", daemon=True)
        self._reader.start()
        try:
            lines = self.wait_for_log(ready, count=ready_count, timeout=start_timeout)
        except BaseException:
            self.close()
            raise
        self.port = int(lines[0].group(1))

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
        """Everything the process wrote so far."""
        with self._cond:
            return "".join(self._lines)

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 5.0) -> list[re.Match[str]]:
        """The first ``count`` output lines matching ``pattern``.

        Raises:
            AssertionError: fewer appeared within ``timeout`` s, or the process exited first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for line in self._lines if (m := regex.search(line))]
                if len(matches) >= count:
                    return matches[:count]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    state = f"exited with {self.proc.poll()}" if self._eof else f"nothing in {timeout} s"
                    raise AssertionError(
                        f"server {state} before logging {pattern!r} x{count}:\n{''.join(self._lines)}"
                    )
                self._cond.wait(remaining)

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def exit_code_within(self, timeout: float) -> int:
        """The exit code.

        Raises:
            AssertionError: the process still runs ``timeout`` s later (with its output).
        """
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server still runs {timeout} s later:\n{self.log}") from None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process (all its threads), in seconds (Linux)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3, "state"
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """The process's resident memory (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS line in /proc/{self.pid}/status")

    def close(self) -> None:
        """Kill the process if it still runs (by its PID) and collect it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10.0)
        self._reader.join(10.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RssSampler:
    """The peak resident memory of a :class:`ServerProcess`, sampled on a thread every
    ``interval`` seconds while the ``with`` block runs (Linux)::

        with RssSampler(server) as rss:
            ...  # a large upload
        assert rss.peak - before < 48 << 20
    """

    def __init__(self, server: ServerProcess, interval: float = 0.01) -> None:
        self._server = server
        self._interval = interval
        self.peak = server.rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-of-{server.pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.peak = max(self.peak, self._server.rss_bytes())
            except OSError:  # the process has exited
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10.0)
