"""``Server``: the listening socket, the accept loops, the workers and the shutdown.

``start()`` binds (unless :meth:`Server.bind` already did), starts the workers and
``accept_threads - 1`` extra accept threads, and runs the first accept loop itself. An accept
loop sleeps in ``poll()`` on the listener and a waker, accepts every pending connection, sets
``TCP_NODELAY`` and hands each socket to the next worker, round-robin. At the connection
limit it stops accepting (blocking on a condition, not spinning) until a connection closes.
EMFILE and its friends are logged (rate-limited) and backed off; the loop never dies of them.

Shutdown (``shutdown()`` from any thread, SIGINT/SIGTERM when ``start()`` runs on the main
thread): 1. stop accepting and close the listener, 2. let in-flight requests finish until
``graceful_timeout``, 3. close idle keep-alive connections, 4. join the workers, 5. stop the
protocol plugins (WebSocket threads), 6. call the handler's ``close()``. Every step is logged
once at INFO. A second SIGINT stops at once.
"""

from __future__ import annotations

import errno
import itertools
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
from ._errors import ConfigError, PluginError
from ._handler import WS_HOOKS, check_handler
from ._log import RateLimitedLog
from ._worker import Worker
from .plugins import UPGRADES_GROUP, UpgradeHandler, load

__all__ = ["Server"]

log = logging.getLogger("peregrine_core.server")
_accept_errors = RateLimitedLog(log)

_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RETRY_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.EAGAIN})


class _Slots:
    """Counts open connections; ``acquire`` blocks at the limit until one is released."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition(threading.Lock())
        self._cancelled = False

    def acquire(self) -> bool:
        with self._cond:
            while self.used >= self.limit and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                return False
            self.used += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.used -= 1
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
        self._started = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
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
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass

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
            from ._supervisor import Supervisor

            Supervisor(self, processes).run()
            return
        self.bind()
        self._serve(None)

    def _serve(self, ready_fd: int | None) -> None:
        """Run this process's accept loop and workers until stopped (``start()``'s core)."""
        assert self._listener is not None
        config = self.config
        limit = _connection_limit(config.max_connections)
        slots = _Slots(limit)
        self._slots = slots
        n_workers = resolve_workers(config.workers)
        self._workers = [
            Worker(i, self.handler, config, slots.release, self._get_upgrade) for i in range(n_workers)
        ]
        previous = self._install_signals()
        accept_threads: list[threading.Thread] = []
        try:
            for w in self._workers:
                w.start()
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
            self._accept_loop()
        finally:
            slots.cancel()
            for t in accept_threads:
                t.join()
            self._stop_everything()
            self._restore_signals(previous)
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
            os.close(wake_r)
            os.close(wake_w)

    def _stop_everything(self) -> None:
        listener = self._listener
        if listener is not None:
            listener.close()
            self._listener = None
        log.info("stopped accepting connections")
        deadline = time.monotonic() + self.config.graceful_timeout
        for w in self._workers:
            w.stop(deadline)
        log.info("waiting up to %.1f s for in-flight requests", self.config.graceful_timeout)
        for w in self._workers:
            while not w.join(0.1):
                if self._forced:
                    w.force_stop()
        log.info("workers stopped")
        with self._upgrade_lock:
            upgrades = list(self._upgrades.values())
        for up in upgrades:
            try:
                up.shutdown(0.0 if self._forced else max(1.0, deadline - time.monotonic()))
            except Exception:
                log.exception("protocol plugin failed to shut down")
        if upgrades:
            log.info("protocol upgrades stopped")
        close = getattr(self.handler, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("handler close() failed")
        log.info("shutdown complete")

    def _prepare_child(self, reuse_port: bool) -> None:
        """In a freshly forked server process: own wake-up pipe, own listener if asked."""
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._ready = threading.Event()
        if reuse_port:
            if self._listener is not None:
                self._listener.close()
            self._listener = self._make_listener(listen=True, reuse_port=True)

    # --- accepting ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        lfd = listener.fileno()
        poller = select.poll()
        poller.register(lfd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        workers = self._workers
        n = len(workers)
        rr = itertools.count()
        nodelay = self.config.tcp_nodelay
        slots = self._slots
        assert slots is not None
        backoff = 0.0
        stop = self._stop
        while not stop.is_set():
            if not slots.acquire():
                break
            try:
                events = poller.poll(None if backoff == 0.0 else backoff * 1000)
                if stop.is_set():
                    break
                if not events:
                    continue
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                slots.release()
                continue
            except OSError as exc:
                slots.release()
                if stop.is_set():
                    break
                if exc.errno in _BACKOFF_ERRNOS:
                    backoff = min(max(backoff * 2, 0.01), 1.0)
                    _accept_errors.warning("accept() failed: %s; retrying in %.2f s", exc, backoff)
                elif exc.errno not in _RETRY_ERRNOS:
                    _accept_errors.warning("accept() failed: %s", exc)
                continue
            backoff = 0.0
            try:
                sock.setblocking(False)
                if nodelay and sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                sock.close()
                slots.release()
                continue
            workers[next(rr) % n].adopt(sock, addr)
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


def _connection_limit(wanted: int) -> int:
    """Clamp the connection limit to what the process's file limit allows."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(16, int(soft) - 64)
    if wanted > room:
        log.warning(
            "max_connections=%d exceeds the open-file limit (%d); using %d (raise it with ulimit -n)",
            wanted,
            soft,
            room,
        )
        return room
    return wanted
