"""``Server``: the listening socket, the accept loops, the workers and the shutdown.

``start()`` binds (unless :meth:`Server.bind` already did), starts the workers and
``accept_threads - 1`` extra accept threads, and runs the first accept loop itself. An accept
loop sleeps in ``poll()`` on the listener and a waker, accepts every pending connection, sets
``TCP_NODELAY`` and hands each socket to the least-loaded worker.

Descriptors are a budget (:class:`_Slots`, in descriptor units): a connection holds two
units (its socket, and a file that one of its responses may be sending), an upgraded one
keeps one until its plugin closes it. At the limit accepting pauses (blocking on a
condition, not spinning) until a unit is released. If the process runs out of descriptors
anyway (EMFILE, ENFILE: a handler's own files), the accept loop stops watching the
listener for a backoff period, asks the workers to close their longest-idle connections,
and logs it (rate-limited); it never dies of it and never spins.

Shutdown, one sequence for every exit path (``shutdown()`` from any thread, SIGINT/SIGTERM
when ``start()`` runs on the main thread, the supervisor gone): 1. accept what the kernel
has already accepted, then close the listener (new connections are refused, not reset),
2. answer every request already received, with ``Connection: close``, 3. close idle
connections once they have been idle for a moment, 4. wait for handlers until
``graceful_timeout``, 5. close what remains (naming the requests still in handlers) and
stop the protocol plugins (WebSocket threads), 6. call the handler's ``close()``. Every step
is logged once at INFO. A second SIGINT skips the waiting: the process exits within a
second whatever handlers do.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import threading
import time
import types
from typing import Any

from ._config import ServerConfig, resolve_processes, resolve_workers
from ._errors import ConfigError, PeregrineError, PluginError
from ._handler import WS_HOOKS, check_handler
from ._log import RateLimitedLog
from ._supervisor import Supervisor
from ._worker import Worker
from .handoff import Monitor
from .plugins import UPGRADES_GROUP, UpgradeHandler, load
from .poller import Waker

__all__ = ["Server"]

log = logging.getLogger("peregrine_core.server")
_accept_errors = RateLimitedLog(log)

_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RETRY_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.EAGAIN})
#: Descriptor units a connection holds: its socket and a file body being sent.
CONNECTION_UNITS = 2
#: Descriptors kept out of the budget: listeners, pollers, wakers, logs, the handler's own.
RESERVED_DESCRIPTORS = 64
#: How long the processes of a supervisor that died get to finish before they exit.
ORPHAN_GRACE_SECONDS = 1.0
#: How much longer than its deadline shutdown waits for a worker's loop to end.
STOP_MARGIN_SECONDS = 0.5


class _Slots:
    """The connection count and the descriptor budget, in one condition.

    ``acquire`` (before an accept) waits until one more connection fits under
    ``max_connections`` and its :data:`CONNECTION_UNITS` descriptors under the budget.
    ``release(descriptors, connections)`` gives back what a connection held: both when it
    closes; one descriptor at an upgrade (no file body will be sent on it) and the rest
    when its plugin closes the transport.
    """

    def __init__(self, connections: int, descriptors: int) -> None:
        self.max_connections = connections
        self.limit = descriptors
        self.connections = 0
        self.used = 0
        self._cond = threading.Condition(threading.Lock())
        self._cancelled = False

    def acquire(self) -> bool:
        with self._cond:
            while (
                self.connections >= self.max_connections or self.used + CONNECTION_UNITS > self.limit
            ) and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                return False
            self.connections += 1
            self.used += CONNECTION_UNITS
            return True

    def take(self) -> None:
        """Count a connection without waiting (connections drained at shutdown)."""
        with self._cond:
            self.connections += 1
            self.used += CONNECTION_UNITS

    def release(self, descriptors: int = CONNECTION_UNITS, connections: int = 1) -> None:
        with self._cond:
            self.used -= descriptors
            self.connections -= connections
            self._cond.notify()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()


class Server:
    """An HTTP/1.x server running ``handler``.

    Args:
        handler: an object with ``handle_request(req, resp)``, or a class of such objects
            (instantiated once, without arguments). One instance serves every worker thread.
        host: the address to listen on (``"0.0.0.0"``, ``"::"``, ``"127.0.0.1"``...).
        port: the TCP port; 0 picks a free one (read it back from :attr:`port`).
        config: the :class:`ServerConfig`.

    Raises:
        TypeError: ``handler`` does not implement the handler protocol (the message names
            what is missing).
        PluginError: the handler defines WebSocket hooks but peregrine-ws is not installed.
    """

    def __init__(
        self,
        handler: Any,
        *,
        host: str = "0.0.0.0",
        port: int = 3000,
        config: ServerConfig | None = None,
    ) -> None:
        if config is None:
            config = ServerConfig()
        if not isinstance(config, ServerConfig):
            raise TypeError(f"config must be a ServerConfig, not {type(config).__name__}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an integer in 0..65535, not {port!r}")
        self.handler = check_handler(handler)
        self.config = config
        self.host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._upgrades: dict[str, UpgradeHandler] = {}
        self._upgrade_lock = threading.Lock()
        hooks = [h for h in WS_HOOKS if callable(getattr(self.handler, h, None))]
        if hooks:
            try:
                self._get_upgrade("websocket")
            except PluginError as exc:
                raise PluginError(
                    f"handler {type(self.handler).__qualname__} defines {', '.join(hooks)} but "
                    f"WebSocket support is not available: {exc}"
                ) from exc
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._forced = False
        self._orphaned = False
        self._started = False
        self._waker = Waker()
        self._workers: list[Worker] = []
        self._slots: _Slots | None = None

    # --- addresses -----------------------------------------------------------------------

    def bind(self) -> None:
        """Create, bind and listen on the socket now (``start()`` does it otherwise)."""
        if self._listener is not None:
            return
        self._listener = self._make_listener(listen=True, reuse_port=False)
        self._address = self._listener.getsockname()[:2]

    def _make_listener(self, *, listen: bool, reuse_port: bool) -> socket.socket:
        port = self._address[1] if self._address is not None else self._port
        infos = socket.getaddrinfo(self.host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY") and self.host in ("::", ""):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            if listen:
                sock.listen(self.config.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; binds first if the server never did."""
        if self._address is None:
            self.bind()
        assert self._address is not None
        return self._address

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``); binds first if needed."""
        return self.address[1]

    # --- lifecycle -------------------------------------------------------------------------

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the server accepts connections; False on timeout."""
        return self._ready.wait(timeout)

    def shutdown(self) -> None:
        """Ask the server to stop gracefully; returns at once. Safe from any thread or signal."""
        self._stop.set()
        slots = self._slots
        if slots is not None:
            slots.cancel()
        self._waker.wake()

    def force_shutdown(self) -> None:
        """Stop now: close every connection without waiting for in-flight requests."""
        self._forced = True
        for worker in self._workers:
            worker.force_stop()
        self.shutdown()

    @property
    def stopped_forcibly(self) -> bool:
        """Whether the last stop skipped the graceful wait (a second SIGINT, or force_shutdown)."""
        return self._forced

    def __enter__(self) -> Server:
        self.bind()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.close()

    def close(self) -> None:
        """Release the listening socket (after ``start()`` returned, or if it never ran)."""
        if self._listener is not None and not self._started:
            self._listener.close()
            self._listener = None

    def start(self) -> None:
        """Serve until :meth:`shutdown` (or SIGINT/SIGTERM); then stop gracefully and return.

        Signal handlers are installed only when called on the main thread, and restored
        before returning.
        """
        if self._started:
            raise RuntimeError("Server.start() may be called only once")
        self._started = True
        processes = resolve_processes(self.config.processes)
        if processes > 1:
            self._supervise(processes)
            return
        self.bind()
        self._serve(None, None)

    def _supervise(self, processes: int) -> None:
        """Bind in this process, then serve from ``processes`` supervised children."""
        if not hasattr(os, "fork"):
            raise PeregrineError("processes > 1 needs os.fork(), which this platform lacks")
        reuse_port = self.config.reuse_port and hasattr(socket, "SO_REUSEPORT")
        if reuse_port:
            # Reserve the port (binding without listening receives no connection); each
            # process then listens on its own SO_REUSEPORT socket.
            if self._listener is not None:  # bound early (to report errors): rebind
                self._listener.close()
                self._listener = None
            reserved = self._make_listener(listen=False, reuse_port=True)
            self._address = reserved.getsockname()[:2]
            self._listener = reserved
        else:
            self.bind()
        host, port = self.address

        def child(ready_fd: int, parent_fd: int) -> None:  # runs in each forked process
            inherited, self._waker = self._waker, Waker()
            inherited.close()
            self._stop = threading.Event()
            self._ready = threading.Event()
            if reuse_port:
                if self._listener is not None:
                    self._listener.close()
                self._listener = self._make_listener(listen=True, reuse_port=True)
            self._serve(ready_fd, parent_fd)

        supervisor = Supervisor(
            processes,
            child,
            graceful_timeout=self.config.graceful_timeout,
            close_listener=self.close_listener,
            description=(
                f"{host}:{port} ({'one SO_REUSEPORT listener each' if reuse_port else 'one shared listener'})"
            ),
        )
        try:
            supervisor.run()
        finally:
            self._forced = supervisor.forced
            self.close_listener()

    def close_listener(self) -> None:
        """Close the listening socket now (this process's copy)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _serve(self, ready_fd: int | None, parent_fd: int | None) -> None:
        """Run this process's accept loop and workers until stopped (``start()``'s core).

        ``parent_fd`` (in a supervised process) turns readable when the supervisor is gone.
        """
        assert self._listener is not None
        config = self.config
        slots = _Slots(config.max_connections, _descriptor_budget(config.max_connections))
        self._slots = slots
        n_workers = resolve_workers(config.workers)
        self._workers = [
            Worker(i, self.handler, config, slots.release, self._get_upgrade) for i in range(n_workers)
        ]
        monitor = Monitor(config.handoff_delay)
        previous = self._install_signals()
        accept_threads: list[threading.Thread] = []
        try:
            monitor.start()
            for w in self._workers:
                w.start(monitor)
            for i in range(1, config.accept_threads):
                t = threading.Thread(target=self._accept_loop, name=f"peregrine-accept-{i}", daemon=True)
                t.start()
                accept_threads.append(t)
            host, port = self.address
            log.info(
                "listening on %s:%d (%d worker(s), %s poller, pid %d)",
                host,
                port,
                n_workers,
                self._workers[0]._poller.name,
                os.getpid(),
            )
            self._ready.set()
            if ready_fd is not None:
                os.write(ready_fd, b"R")
                os.close(ready_fd)
            if parent_fd is not None:
                watch = threading.Thread(
                    target=self._watch_parent, args=(parent_fd,), name="peregrine-parent-watch", daemon=True
                )
                watch.start()
            self._accept_loop()
        finally:
            slots.cancel()
            for t in accept_threads:
                t.join()
            self._drain_and_close_listener()
            self._stop_everything()
            monitor.stop()
            self._restore_signals(previous)
            self._waker.close()

    def _drain_and_close_listener(self) -> None:
        """Stop accepting: take what the kernel already accepted, then close the listener.

        A connection the kernel completed is one the client believes open: it is handed
        to a worker (and its request answered) rather than reset with the listener.
        """
        listener = self._listener
        if listener is None:
            return
        drained = 0
        slots = self._slots
        workers = self._workers
        if not self._forced:
            while drained < self.config.backlog:
                try:
                    sock, addr = listener.accept()
                except OSError:
                    break
                if slots is not None:
                    slots.take()
                if not self._prepare_socket(sock):
                    if slots is not None:
                        slots.release()
                    continue
                min(workers, key=_load).adopt(sock, addr)
                drained += 1
        self.close_listener()
        log.info(
            "stopped accepting connections%s",
            f" ({drained} accepted from the queue)" if drained else "",
        )

    def _stop_everything(self) -> None:
        config = self.config
        grace = config.graceful_timeout
        if self._orphaned:
            grace = min(grace, ORPHAN_GRACE_SECONDS)
        deadline = time.monotonic() + grace
        for w in self._workers:
            if self._forced:
                w.force_stop()
            else:
                w.stop(deadline)
        if not self._forced:
            log.info("waiting up to %.1f s for in-flight requests", grace)
        # A worker's loop ends by its deadline even if a handler is stuck (the stuck call
        # runs on a thread of its own): the margin only covers the last pass.
        for w in self._workers:
            while not w.join(0.05):
                if self._forced:
                    w.force_stop()
                if time.monotonic() > deadline + STOP_MARGIN_SECONDS:
                    log.error("worker %d did not stop by the deadline; leaving it", w.index)
                    break
        stuck = sum(w.pool.busy for w in self._workers)
        log.info(
            "workers stopped%s",
            f" ({stuck} handler call(s) still running, abandoned)" if stuck else "",
        )
        with self._upgrade_lock:
            upgrades = list(self._upgrades.values())
        for up in upgrades:
            try:
                up.shutdown(0.0 if self._forced else max(0.0, deadline - time.monotonic()))
            except Exception:
                log.exception("protocol plugin failed to shut down")
        if upgrades:
            log.info("protocol upgrades stopped")
        self._close_handler(wait=0.3 if stuck or self._forced else None)
        log.info("shutdown complete")

    def _close_handler(self, wait: float | None) -> None:
        """Call the handler's ``close()``; with handlers stuck, wait for it only ``wait`` s."""
        close = getattr(self.handler, "close", None)
        if close is None:
            return

        def run() -> None:
            try:
                close()
            except Exception:
                log.exception("handler close() failed")

        if wait is None:
            run()
            return
        t = threading.Thread(target=run, name="peregrine-close", daemon=True)
        t.start()
        t.join(wait)
        if t.is_alive():
            log.warning("handler close() did not return within %.1f s; exiting without it", wait)

    # --- accepting ---------------------------------------------------------------------------

    def _prepare_socket(self, sock: socket.socket) -> bool:
        try:
            sock.setblocking(False)
            if self.config.tcp_nodelay and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            return False
        return True

    def _watch_parent(self, parent_fd: int) -> None:
        """In a supervised process: stop soon once the supervisor is gone, whatever the
        accept loop is doing (blocked at the connection limit, backing off...)."""
        try:
            select.select([parent_fd], [], [])
        except (OSError, ValueError):  # pragma: no cover - the descriptor went away
            return
        if self._stop.is_set():
            return  # stopping anyway
        self._orphaned = True
        log.warning("the supervisor is gone; stopping within %.1f s", ORPHAN_GRACE_SECONDS)
        self.shutdown()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        lfd = listener.fileno()
        poller = select.poll()
        poller.register(self._waker.fileno(), select.POLLIN)
        workers = self._workers
        one = workers[0] if len(workers) == 1 else None
        slots = self._slots
        assert slots is not None
        # While out of descriptors (backoff > 0) the listener is not watched: it stays
        # readable, so watching it would spin. The loop sleeps for the backoff, then
        # tries one accept.
        backoff = 0.0
        watching = False
        stop = self._stop
        while not stop.is_set():
            if not slots.acquire():
                break
            if not backoff and not watching:
                poller.register(lfd, select.POLLIN)
                watching = True
            try:
                events = poller.poll(backoff * 1000 if backoff else None)
                if stop.is_set():
                    slots.release()
                    break
                if not backoff and not any(fd == lfd for fd, _ in events):
                    slots.release()
                    continue
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                slots.release()
                backoff = 0.0
                continue
            except OSError as exc:
                slots.release()
                if stop.is_set():
                    break
                if exc.errno in _BACKOFF_ERRNOS:
                    backoff = min(max(backoff * 2, 0.05), 1.0)
                    if watching:
                        poller.unregister(lfd)
                        watching = False
                    _accept_errors.warning(
                        "accept() failed: %s; closing idle connections, retrying in %.2f s",
                        exc,
                        backoff,
                    )
                    for w in workers:
                        w.shed_idle()
                elif exc.errno not in _RETRY_ERRNOS:
                    _accept_errors.warning("accept() failed: %s", exc)
                continue
            backoff = 0.0
            if not self._prepare_socket(sock):
                slots.release()
                continue
            (one or min(workers, key=_load)).adopt(sock, addr)
        if watching:
            poller.unregister(lfd)

    # --- plugins -----------------------------------------------------------------------------

    def _get_upgrade(self, name: str) -> UpgradeHandler:
        with self._upgrade_lock:
            up = self._upgrades.get(name)
            if up is None:
                factory = load(UPGRADES_GROUP, name)
                up = factory(self.handler, self.config)  # type: ignore[operator]
                if not isinstance(up, UpgradeHandler):
                    raise PluginError(
                        f"upgrade plugin {name!r} returned {up!r}, which lacks adopt() and shutdown()"
                    )
                self._upgrades[name] = up
            return up

    # --- signals -------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any] | None) -> None:
        if previous is not None:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if self._stop.is_set():
            if signum == signal.SIGINT:
                self.force_shutdown()
            return
        self.shutdown()


def _load(worker: Worker) -> int:
    return worker.load


def _descriptor_budget(max_connections: int) -> int:
    """The descriptor budget in units: ``max_connections`` connections, clamped to what the
    process's open-file limit allows."""
    wanted = max_connections * CONNECTION_UNITS
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(16, int(soft) - RESERVED_DESCRIPTORS)
    if wanted > room:
        # Loud when the limit was asked for, or when the file limit is what really binds.
        explicit = max_connections != ServerConfig.max_connections or room < wanted // 2
        (log.warning if explicit else log.info)(
            "max_connections=%d needs %d file descriptors (a socket and a file each) but the "
            "open-file limit is %d; serving at most %d connections (raise it with ulimit -n)",
            max_connections,
            wanted + RESERVED_DESCRIPTORS,
            soft,
            room // CONNECTION_UNITS,
        )
        return room
    return wanted
