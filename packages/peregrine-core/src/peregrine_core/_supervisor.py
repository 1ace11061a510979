"""Several server processes under one supervisor (``processes > 1``).

Under the GIL one process uses one core; processes are how Peregrine uses more. The server
binds first, then gives the supervisor a *target*: the function each forked process runs
(it serves on the inherited listening socket, or, with ``reuse_port``, on its own
``SO_REUSEPORT`` listener on the port the parent reserved). The supervisor knows nothing of
servers: it forks, watches, replaces and stops processes.

The parent never serves and never starts a thread (forking a threaded process is unsafe).
It sleeps in ``select()`` on a self-pipe fed by its signal handlers and on each child's
ready pipe:

* a process that exits after it reported ready is replaced at once (a crash loop is slowed
  to one restart per second);
* a process that exits before it reported ready is a start-up failure: the others are
  stopped and ``start()`` raises :class:`~peregrine_core.PeregrineError` (the command exits
  non-zero) instead of restarting in a loop;
* SIGTERM or SIGINT stops every process gracefully: the parent closes its copy of the
  listener at once (so that, once the processes have closed theirs, new connections are
  refused rather than accepted and reset) and forwards SIGTERM; a second SIGINT is
  forwarded as SIGINT, which makes each process stop at once; processes still alive
  ``graceful_timeout`` + 5 s later are killed;
* if the parent dies (even by SIGKILL), every process notices within a poll: each holds the
  read end of a pipe whose only write end the parent holds, and that end turns readable
  (end of file) when the parent is gone; the process then stops within a second.

Each process has its own copy of the handler: state in it is per process.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import time
import types
from collections.abc import Callable
from typing import Final

from ._errors import PeregrineError

__all__ = ["Supervisor"]

log = logging.getLogger("peregrine_core.server")

KILL_MARGIN_SECONDS: Final = 5.0
RESTART_WINDOW_SECONDS: Final = 10.0
RESTART_BURST: Final = 5
_EXIT_START_FAILED: Final = 3


class _Child:
    __slots__ = ("index", "pid", "ready", "ready_fd", "started")

    def __init__(self, index: int, pid: int, ready_fd: int) -> None:
        self.index = index
        self.pid = pid
        self.ready_fd = ready_fd
        self.ready = False
        self.started = time.monotonic()


class Supervisor:
    """Forks, watches and replaces ``processes`` server processes.

    Args:
        processes: how many to run.
        target: what each process runs, given the write end of its ready pipe (write one
            byte once serving) and the read end of the parent-death pipe (readable once the
            parent is gone). It returns when the process should exit.
        graceful_timeout: the processes' own stop deadline; they are killed 5 s after it.
        close_listener: closes the parent's copy of the listening socket.
        description: what is served, for the start-up log line.
    """

    def __init__(
        self,
        processes: int,
        target: Callable[[int, int], None],
        *,
        graceful_timeout: float,
        close_listener: Callable[[], None],
        description: str,
    ) -> None:
        self._target = target
        self._count = processes
        self._graceful_timeout = graceful_timeout
        self._close_listener = close_listener
        self._description = description
        self._children: dict[int, _Child] = {}
        self._signals: list[int] = []
        self._stopping = False
        self._kill_at = 0.0
        self._failure: str | None = None
        self._restarts: list[float] = []
        self.forced = False
        self._sig_r, self._sig_w = os.pipe()
        os.set_blocking(self._sig_r, False)
        os.set_blocking(self._sig_w, False)
        self._death_r, self._death_w = os.pipe()

    # --- parent ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until every process has stopped; raise if one failed to start."""
        log.info("supervisor pid %d: %d processes on %s", os.getpid(), self._count, self._description)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        }
        try:
            for i in range(self._count):
                self._spawn(i)
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._sig_r, self._sig_w, self._death_r, self._death_w):
                os.close(fd)
            self._close_listener()
        if self._failure is not None:
            raise PeregrineError(self._failure)
        log.info("all server processes stopped")

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        self._signals.append(signum)
        try:
            os.write(self._sig_w, b"s")
        except OSError:
            pass

    def _loop(self) -> None:
        while self._children:
            fds = [self._sig_r] + [c.ready_fd for c in self._children.values() if c.ready_fd >= 0]
            timeout = 1.0
            if self._stopping:
                timeout = max(0.0, min(timeout, self._kill_at - time.monotonic()))
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                readable = []
            if self._sig_r in readable:
                try:
                    while os.read(self._sig_r, 512):
                        pass
                except BlockingIOError:
                    pass
            for child in list(self._children.values()):
                if child.ready_fd in readable:
                    self._read_ready(child)
            while self._signals:
                self._handle_signal(self._signals.pop(0))
            self._reap()
            if self._stopping and time.monotonic() >= self._kill_at:
                for child in self._children.values():
                    log.warning(
                        "process %d (pid %d) still running at the deadline; killing it",
                        child.index,
                        child.pid,
                    )
                    _kill(child.pid, signal.SIGKILL)
                self._kill_at = time.monotonic() + 60.0

    def _read_ready(self, child: _Child) -> None:
        try:
            data = os.read(child.ready_fd, 1)
        except OSError:
            data = b""
        os.close(child.ready_fd)
        child.ready_fd = -1
        if data:
            child.ready = True
            log.info("process %d (pid %d) is ready", child.index, child.pid)

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaped below
        if not self._stopping:
            log.info("received %s: stopping %d processes", signal.Signals(signum).name, len(self._children))
            self._stop_all(signal.SIGTERM)
        elif signum == signal.SIGINT:
            log.info("second SIGINT: stopping every process at once")
            self.forced = True
            self._stop_all(signal.SIGINT)

    def _stop_all(self, sig: int) -> None:
        if not self._stopping:
            self._stopping = True
            self._close_listener()  # the processes close theirs as they stop
            self._kill_at = time.monotonic() + self._graceful_timeout + KILL_MARGIN_SECONDS
        for child in self._children.values():
            _kill(child.pid, sig)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                continue
            if child.ready_fd >= 0:
                # A ready byte may be waiting: a process that got ready and then died is
                # not a start-up failure.
                self._read_ready(child)
            how = _describe(status)
            if self._stopping:
                log.info("process %d (pid %d) %s", child.index, child.pid, how)
                continue
            if not child.ready:
                self._failure = f"server process {child.index} (pid {pid}) {how} before it was ready"
                log.error("%s; stopping the others", self._failure)
                self._stop_all(signal.SIGTERM)
                continue
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_SECONDS]
            if len(self._restarts) >= RESTART_BURST:
                log.error("processes keep dying; waiting 1 s before the next restart")
                time.sleep(1.0)
            self._restarts.append(time.monotonic())
            log.warning("process %d (pid %d) %s; starting a new one", child.index, pid, how)
            self._spawn(child.index)

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by the process tests
            os.close(ready_r)
            self._child_main(ready_w)
        os.close(ready_w)
        self._children[pid] = _Child(index, pid, ready_r)

    # --- child -------------------------------------------------------------------------------

    def _child_main(self, ready_w: int) -> None:  # pragma: no cover - runs in the child
        code = 0
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.close(self._sig_r)
            os.close(self._sig_w)
            os.close(self._death_w)  # the parent's alone: its death is the pipe's end
            for other in self._children.values():
                if other.ready_fd >= 0:
                    os.close(other.ready_fd)
            self._target(ready_w, self._death_r)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("server process failed")
            code = _EXIT_START_FAILED
        finally:
            logging.shutdown()
            os._exit(code)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
