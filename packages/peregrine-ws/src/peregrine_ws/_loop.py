"""``WebSocketLoop``: one WebSocket loop, its poller, its connections, and the threads that
take turns driving it.

The loop's *driver* (one thread at a time) blocks in ``poll()`` until a transport is ready, a
wake-up arrives (a new connection, frames queued by another thread, a hook call that came
back, shutdown) or the nearest timer is due; it never busy-polls. Each iteration: hold the
connections whose hook call was detached, take the hook calls that came back, handle ready
transports (write, then read and dispatch events to the hooks), adopt new connections,
flush connections with queued frames, fire due timers.

Hooks run inline, on the driver, so a hook that only computes costs no thread switch. A
hook call that blocks for longer than ``handoff_delay`` is detached, as in the HTTP worker
(:mod:`peregrine_core.handoff`): the :class:`~peregrine_core.handoff.Monitor` promotes
another thread to drive the loop, and the blocked thread, once its call returns, posts the
completion to ``_completions`` (plus a wake-up) and unwinds. For a while after a detach
(``OFFLOAD_SECONDS``) calls start on pool threads instead, so that hooks that keep
blocking do not each hold the loop for ``handoff_delay``. At most ``handler_threads`` calls
run off the loop at once; further ones wait in ``_waiting`` (up to ``handler_queue``); with
that full too, reading stops (``_stalled``) until there is room: no message is dropped.

Holding. While one of its hook calls runs off the loop or waits for a handler thread, a
connection is *held* (``conn._held``): it is not read, its decoder is not drained, and no
hook of it is called (a ``handle_ws_disconn`` that falls due meanwhile waits), so the
events that follow the blocked one reach the hooks after it, in order. Its output keeps
flowing: it stays registered for writing while frames are queued, so what the blocked hook
or any other thread sends goes out at once. Its closing and backpressure timers run; its
keepalive pings wait (a pong could not be read). When the call comes back, the connection
is resumed: interest in reading restored, then the rest of its decoder's buffer decoded.

Invariants:

* Only the driver reads or writes a connection's transport, changes its poller interest,
  runs its hooks inline, or closes it; other threads only queue frames (see
  ``_connection``) and post completions. State a detached call interrupts lives in the
  loop's objects (deques consumed as they go, the decoder's buffer), never in the frame of
  the call, so the next driver carries on where the detached one stopped.
* Every transport handed over is closed exactly once, by the driver: at the end of the
  closing handshake, at a timeout, on an error, or when the loop stops.
* A hook's exception is logged and closes that connection with 1011; nothing a peer or a
  hook does ends the loop.
* Each connection has at most one deadline in the ``TimerHeap``: the earliest of its
  keepalive ping, pong deadline, closing timeout and backpressure timeout.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn

from peregrine_core.handoff import HandoffPool, Monitor, Unwind
from peregrine_core.poller import ERROR, READ, WRITE, Waker, make_poller

from ._config import WebSocketConfig
from ._connection import State, WebSocketConnection
from ._decoder import BinaryMessage, Close, Event, Ping, Pong, TextMessage
from ._errors import ProtocolError
from ._frames import CloseCode, Opcode, build_close_payload, frame_header
from ._hooks import Hooks
from ._timers import TimerHeap

if TYPE_CHECKING:
    from peregrine_core import ServerConfig

__all__ = ["OFFLOAD_SECONDS", "WebSocketLoop"]

log = logging.getLogger(__name__)

_PING: Final = struct.Struct("!Q")
#: After a hook call blocked, calls start on pool threads for this long (each call that
#: blocks again extends it); then they run inline again.
OFFLOAD_SECONDS: Final = 1.0
#: At the stop, ``handle_ws_disconn`` calls still to make after the deadline plus this are
#: skipped (the stop must end by its deadline whatever the hooks do).
LATE_NOTIFY_SECONDS: Final = 0.05
# States as module constants: an enum member looked up on its class costs more.
_OPEN: Final = State.OPEN
_CLOSING: Final = State.CLOSING
_LINGER: Final = State.LINGER
_CLOSED: Final = State.CLOSED
#: ``conn._held`` while reading waits for room in the handler queue (no call is pending).
_STALLED: Final = ""

Hook = Callable[..., Any]


class WebSocketLoop:
    """One WebSocket loop. ``adopt``, ``notify`` and ``stop`` are safe from any thread.

    Args:
        name: the name of its first thread (later ones get ``.1``, ``.2``...).
        config: the WebSocket settings.
        hooks: the handler's hooks.
        server_config: the server's settings (``poller``, ``handler_threads``,
            ``handler_queue``, ``handoff_delay``).
        monitor: watches the loop's hook calls (started by the caller).
    """

    def __init__(
        self,
        name: str,
        config: WebSocketConfig,
        hooks: Hooks,
        server_config: ServerConfig,
        monitor: Monitor,
    ) -> None:
        self.name = name
        self._config = config
        self._hooks = hooks
        self._poller = make_poller(server_config.poller)
        self._waker = Waker()
        self._poller.register(self._waker.fileno(), READ)
        self._inbox: deque[tuple[WebSocketConnection, bytes]] = deque()
        self._dirty: deque[WebSocketConnection] = deque()
        self._conns: dict[int, WebSocketConnection] = {}
        self._timers = TimerHeap()
        self._pings = itertools.count(1)
        self._woken = False
        self._stop_deadline: float | None = None
        self._stopping = False
        self._to_stop: deque[WebSocketConnection] = deque()  # still to be sent 1001
        self._ending = False
        self._to_notify: deque[WebSocketConnection] = deque()  # handle_ws_disconn at the end
        self._ident = -1  # the driver thread (-1 while a new one takes over)
        # Hook calls off the loop. Filled by other threads: _handed (by the monitor, under
        # the pool's lock), _completions (by detached and pool threads, likewise). The rest
        # is the driver's.
        self._monitor = monitor
        self._pool = HandoffPool(name, self._drive, self._on_detach)
        monitor.add(self._pool)
        self._handed: deque[tuple[WebSocketConnection, Hook]] = deque()
        self._completions: deque[tuple[WebSocketConnection, bool]] = deque()
        self._waiting: deque[tuple[WebSocketConnection, Hook, tuple[Any, ...]]] = deque()
        self._stalled: deque[WebSocketConnection] = deque()
        self._max_busy = server_config.handler_threads
        self._queue_max = server_config.handler_queue
        self._handoff_delay = server_config.handoff_delay
        self._offload_until = 0.0
        # Whether a hook call must look at the handler threads before it runs here (calls
        # run elsewhere or are queued, or offloading is on): recomputed each pass, and set
        # at once by a detach, an offload or a queued call. The fast path tests only this.
        self._careful = False
        self._ended = threading.Event()

    @property
    def pool(self) -> HandoffPool:
        """The threads driving this loop (for the handoff monitor)."""
        return self._pool

    @property
    def load(self) -> int:
        """Connections owned or waiting to be adopted, plus hook calls running elsewhere."""
        return len(self._conns) + len(self._inbox) + self._pool.busy

    def start(self) -> None:
        self._pool.start()

    def join(self, timeout: float) -> bool:
        """Wait until the loop has ended (a detached hook call may still be running)."""
        return self._ended.wait(timeout)

    def adopt(self, conn: WebSocketConnection, data: bytes) -> None:
        """Hand a connection to this loop; ``data`` is fed before anything read later."""
        self._inbox.append((conn, data))
        self._wake()

    def notify(self, conn: WebSocketConnection) -> None:
        """``conn`` has frames to flush (called with ``conn._lock`` held)."""
        self._dirty.append(conn)
        if threading.get_ident() != self._ident:
            self._wake()

    def stop(self, deadline: float) -> None:
        """Close every connection with 1001, then end the loop by ``deadline``."""
        self._stop_deadline = deadline
        self._wake()

    def _wake(self) -> None:
        # Cleared by the driver right after it drained the waker, before it looks at its
        # queues: a notification is either seen in this round or wakes the next poll().
        if not self._woken:
            self._woken = True
            self._waker.wake()

    # --- the loop ------------------------------------------------------------------------

    def _drive(self) -> None:
        """Run the loop on this thread until it ends, or until this thread's hook call is
        detached (:class:`Unwind` leaves through here to the pool)."""
        self._ident = threading.get_ident()
        try:
            if not self._ending:
                self._loop()
        except Unwind:
            raise
        except BaseException:
            log.exception("WebSocket loop %s failed; closing its connections", self.name)
        self._end_loop()

    def _loop(self) -> None:
        poller = self._poller
        waker = self._waker
        waker_fd = waker.fileno()
        conns = self._conns
        pool = self._pool
        pool.begin_pass()  # a pass: the code up to the next poll (the monitor watches it)
        while True:
            if self._handed:
                self._hold_handed()
            if self._completions:
                self._take_completions()
            self._careful = bool(
                pool.busy or self._waiting or (self._offload_until and time.monotonic() < self._offload_until)
            )
            if self._stop_deadline is not None:
                if self._inbox:
                    self._take_new()  # handed over just before the stop: told 1001 too
                if not self._stopping:
                    self._stopping = True
                    self._to_stop.extend(conns.values())
                if self._to_stop:
                    self._close_to_stop()
                if not conns or time.monotonic() >= self._stop_deadline:
                    return
            timeout = self._timeout()
            pool.end_pass()
            events = poller.poll(timeout)
            pool.begin_pass()
            for fd, flags in events:
                conn = conns.get(fd)
                if conn is None:
                    if fd == waker_fd:
                        waker.drain()
                        self._woken = False
                    continue
                try:
                    if flags & WRITE:
                        self._flush(conn)
                    if flags & (READ | ERROR) and conn._state is not _CLOSED:
                        if conn._held is None:
                            self._read(conn)
                        elif flags & ERROR:
                            self._set_interest(conn, 0)  # broken: looked at again on resume
                except Exception:  # a bug here must cost one connection, not all
                    log.exception("WebSocket from %s failed; dropping it", conn.remote_addr)
                    self._abort(conn)
            self._take_new()
            self._flush_dirty()
            self._run_timers()

    def _timeout(self) -> float | None:
        if self._dirty or self._inbox or self._completions or self._handed:
            return 0.0
        when = self._timers.next_deadline()
        if self._stop_deadline is not None:
            when = self._stop_deadline if when is None else min(when, self._stop_deadline)
        return None if when is None else max(0.0, when - time.monotonic())

    def _take_new(self) -> None:
        now = time.monotonic()
        interval = self._config.ping_interval
        on_conn = self._hooks.on_conn
        while self._inbox:
            conn, data = self._inbox.popleft()
            try:
                self._poller.register(conn._fd, READ)
            except OSError:
                log.exception("cannot watch the WebSocket from %s", conn.remote_addr)
                _discard(conn)
                continue
            conn._events = READ
            self._conns[conn._fd] = conn
            if interval is not None:
                conn._next_ping = now + interval
                self._schedule(conn)
            if data:
                conn._decoder.receive_data(data)  # decoded after handle_ws_conn
            if on_conn is not None:
                self._call(conn, on_conn, conn)
                if conn._held is not None:
                    continue  # the rest when the call comes back (_resume)
            if data:
                self._feed(conn, b"")
            if self._stopping:
                self._close(conn, CloseCode.GOING_AWAY, "server shutting down")

    def _close_to_stop(self) -> None:
        """Send 1001 to every connection the stop found (resumable: consumed as it goes)."""
        to_stop = self._to_stop
        while to_stop:
            conn = to_stop.popleft()
            if conn._state is not _CLOSED:
                self._close(conn, CloseCode.GOING_AWAY, "server shutting down")
                self._flush(conn)

    def _end_loop(self) -> None:
        """On the thread that ends the loop: close every transport, then report the ends.

        Resumable: a ``handle_ws_disconn`` detached here leaves the rest to the next driver.
        """
        self._pool.begin_pass()
        if not self._ending:
            self._ending = True
            # Calls that never started are dropped, and their connections told of the end
            # (a handle_ws_disconn already due is called now).
            on_disconn = self._hooks.on_disconn
            for conn, fn, _ in self._waiting:
                conn._held = None
                if conn._disconn_due or (fn is on_disconn and on_disconn is not None):
                    conn._disconn_due = False
                    self._to_notify.append(conn)
            self._waiting.clear()
            for conn in self._stalled:
                conn._held = None
                if conn._disconn_due:
                    conn._disconn_due = False
                    self._to_notify.append(conn)
            self._stalled.clear()
            held = [c for c in self._conns.values() if c._held]
            if self._conns:
                log.info(
                    "WebSocket loop %s: closing %d connection(s)%s",
                    self.name,
                    len(self._conns),
                    f" ({len(held)} with a hook still running)" if held else "",
                )
            for conn in list(self._conns.values()):
                self._abort(conn)  # _finish queues the notifications in _to_notify
            while self._inbox:
                _discard(self._inbox.popleft()[0])
        notify = self._to_notify
        on_disconn = self._hooks.on_disconn
        late = None if self._stop_deadline is None else self._stop_deadline + LATE_NOTIFY_SECONDS
        while notify and on_disconn is not None:
            if late is not None and time.monotonic() > late:
                log.warning(
                    "WebSocket loop %s: handle_ws_disconn skipped for %d connection(s): the stop's "
                    "deadline has passed",
                    self.name,
                    len(notify),
                )
                break
            self._careful = False  # at the end every call runs here
            if self._pool.busy >= self._max_busy:
                log.warning(
                    "WebSocket loop %s: handle_ws_disconn skipped for %d connection(s): %d hook "
                    "calls still running",
                    self.name,
                    len(notify),
                    self._pool.busy,
                )
                break
            conn = notify.popleft()
            assert conn._final_code is not None
            self._call(conn, on_disconn, conn, conn._final_code, conn._final_reason)
        notify.clear()
        self._pool.finish()  # from now on the results of detached calls are dropped
        self._poller.close()
        self._waker.close()  # safe: a late wake() after this does nothing (see Waker)
        self._ended.set()

    # --- reading -------------------------------------------------------------------------

    def _read(self, conn: WebSocketConnection) -> None:
        try:
            data = conn._transport.recv(self._config.read_buffer_bytes)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("WebSocket from %s: %s", conn.remote_addr, exc)
            self._abort(conn)
            return
        if not data:
            self._abort(conn)  # EOF: the end of LINGER, or an abnormal closure
        elif conn._state is not _LINGER:
            self._feed(conn, data)

    def _feed(self, conn: WebSocketConnection, data: bytes) -> None:
        decoder = conn._decoder
        decoder.receive_data(data)
        while (conn._state is _OPEN or conn._state is _CLOSING) and conn._held is None:
            if conn._queued >= conn._limit and conn._state is _OPEN:
                # Backpressure: the peer is not reading our replies, so stop reading its
                # messages; _flush resumes with what is buffered once the queue drains.
                return
            if self._careful and self._pool.busy >= self._max_busy and len(self._waiting) >= self._queue_max:
                self._stall(conn)  # every handler thread busy, the queue full: read later
                return
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                log.debug("failing the WebSocket from %s: %s", conn.remote_addr, exc)
                self._fail(conn, exc.code, str(exc))
                return
            except Exception:
                log.exception("decoding a frame from %s failed", conn.remote_addr)
                self._fail(conn, CloseCode.INTERNAL_ERROR, "internal error")
                return
            if event is None:
                return
            self._dispatch(conn, event)

    def _dispatch(self, conn: WebSocketConnection, event: Event) -> None:
        if isinstance(event, TextMessage | BinaryMessage):
            if conn._state is _OPEN:  # §7.1.2: data after our close is discarded
                self._deliver(conn, event)
        elif isinstance(event, Ping):
            # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            # response, unless it already received a Close frame."
            with conn._lock:
                if conn._state is _OPEN:
                    conn._push(frame_header(Opcode.PONG, len(event.payload)), event.payload)
        elif isinstance(event, Pong):
            # A pong that does not answer the outstanding keepalive ping (a late one, or
            # an unsolicited heartbeat, §5.5.3) is ignored.
            if conn._ping_payload is not None and event.payload == conn._ping_payload:
                conn._ping_payload = None
                conn._ping_deadline = None
        elif isinstance(event, Close):
            self._on_close_frame(conn, event.code, event.reason)

    def _deliver(self, conn: WebSocketConnection, event: TextMessage | BinaryMessage) -> None:
        hooks = self._hooks
        if hooks.on_message is not None:
            self._call(conn, hooks.on_message, conn, event.data)
        elif hooks.on_frame is not None:
            if isinstance(event, TextMessage):
                self._call(conn, hooks.on_frame, conn, Opcode.TEXT, event.data.encode("utf-8"))
            else:
                self._call(conn, hooks.on_frame, conn, Opcode.BINARY, event.data)

    # --- hook calls ----------------------------------------------------------------------

    def _call(self, conn: WebSocketConnection, fn: Hook, *args: Any) -> None:
        """Call the hook ``fn(*args)`` for ``conn``: here, on the driver, or else off the
        loop with ``conn`` held until the call comes back (see the module's docstring).

        If the monitor detached the call meanwhile, this thread no longer drives the loop:
        the completion goes back through ``_completions`` and the thread unwinds
        (:class:`Unwind`).
        """
        if self._careful and self._started_elsewhere(conn, fn, args):
            return
        calls = self._pool.calls  # this driver's (a detach gives the next driver a new one)
        calls.append((conn, fn))  # HandoffPool.begin(), inlined: a new key per call
        try:
            fn(*args)
        except Exception:
            failed = self._hook_failed(conn, fn)
        else:
            failed = False
        try:
            calls.pop()  # HandoffPool.end(), inlined: the monitor did not take the call
        except IndexError:
            self._give_back(conn, failed)  # raises Unwind
        if failed:
            self._close(conn, CloseCode.INTERNAL_ERROR, "internal error")

    def _started_elsewhere(self, conn: WebSocketConnection, fn: Hook, args: tuple[Any, ...]) -> bool:
        """Queue the call (no handler thread free) or offload it: True; or let it run here."""
        if self._pool.busy >= self._max_busy:
            self._waiting.append((conn, fn, args))
            self._hold(conn, _hook_name(fn))
            return True
        if self._offload_until and time.monotonic() < self._offload_until:
            self._offload(conn, fn, args)
            return True
        return False

    def _give_back(self, conn: WebSocketConnection, failed: bool) -> NoReturn:
        """On a thread whose call was detached: post the completion, leave the loop."""
        item = (conn, failed)
        completions = self._completions
        wake = self._wake

        def give_back() -> None:
            completions.append(item)
            wake()

        self._pool.post(give_back)
        raise Unwind

    def _hook_failed(self, conn: WebSocketConnection, fn: Hook) -> bool:
        """Log a hook's exception (in its ``except``); True: close the connection (1011)."""
        if fn is self._hooks.on_disconn:
            log.exception("WebSocket hook handle_ws_disconn failed for %s", conn.remote_addr)
            return False
        log.exception("WebSocket hook %s failed for %s; closing with 1011", _hook_name(fn), conn.remote_addr)
        return True

    def _offload(self, conn: WebSocketConnection, fn: Hook, args: tuple[Any, ...]) -> None:
        """Start the call on a pool thread: hook calls have been blocking lately."""
        self._careful = True
        self._hold(conn, _hook_name(fn))
        pool = self._pool
        completions = self._completions
        wake = self._wake
        delay = self._handoff_delay

        def task() -> None:
            started = time.perf_counter()
            failed = False
            try:
                fn(*args)
            except Exception:
                failed = self._hook_failed(conn, fn)
            if time.perf_counter() - started > delay:
                self._offload_until = time.monotonic() + OFFLOAD_SECONDS  # still blocking
            item = (conn, failed)

            def give_back() -> None:
                completions.append(item)
                wake()

            pool.post(give_back)

        pool.submit(task)

    def _on_detach(self, key: object) -> None:
        """Monitor thread, under the pool's lock: the driver's call ``key`` was detached."""
        assert isinstance(key, tuple)
        self._handed.append(key)
        self._careful = True
        self._ident = -1  # what the blocked hook sends must wake the next driver
        self._offload_until = time.monotonic() + OFFLOAD_SECONDS

    def _hold(self, conn: WebSocketConnection, why: str) -> None:
        """Stop reading ``conn`` (its output keeps flowing) until :meth:`_resume`."""
        conn._held = why
        if conn._state is not _CLOSED:
            self._set_interest(conn, WRITE if conn._out else 0)

    def _hold_handed(self) -> None:
        handed = self._handed
        while handed:
            conn, fn = handed.popleft()
            if conn._state is not _CLOSED:
                self._hold(conn, _hook_name(fn))

    def _stall(self, conn: WebSocketConnection) -> None:
        self._hold(conn, _STALLED)
        self._stalled.append(conn)

    def _take_completions(self) -> None:
        """Resume the connections whose calls came back, then start queued calls."""
        completions = self._completions
        while completions:
            conn, failed = completions.popleft()
            if failed:
                self._close(conn, CloseCode.INTERNAL_ERROR, "internal error")
            self._resume(conn)
        pool = self._pool
        waiting = self._waiting
        while waiting and pool.busy < self._max_busy:
            conn, fn, args = waiting.popleft()
            conn._held = None
            if conn._state is not _CLOSED or fn is self._hooks.on_disconn:
                self._call(conn, fn, *args)
            # else the connection ended meanwhile: its message goes nowhere
            if conn._held is None:
                self._resume(conn)
        stalled = self._stalled
        while stalled and (pool.busy < self._max_busy or len(waiting) < self._queue_max):
            conn = stalled.popleft()
            if conn._held == _STALLED:
                self._resume(conn)

    def _resume(self, conn: WebSocketConnection) -> None:
        """Serve ``conn`` again: its deferred disconnection, its buffer, its reading."""
        conn._held = None
        if conn._disconn_due:
            conn._disconn_due = False
            assert self._hooks.on_disconn is not None and conn._final_code is not None
            self._call(conn, self._hooks.on_disconn, conn, conn._final_code, conn._final_reason)
            if conn._held is not None:
                return
        if conn._state is _CLOSED:
            return
        self._flush(conn)
        if conn._held is None and (conn._state is _OPEN or conn._state is _CLOSING):
            self._feed(conn, b"")
        if self._stopping:
            self._close(conn, CloseCode.GOING_AWAY, "server shutting down")

    # --- closing -------------------------------------------------------------------------

    def _on_close_frame(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        conn._peer_close = (code, reason)
        with conn._lock:
            if conn._state is _OPEN:
                # §5.5.1: "If an endpoint receives a Close frame and did not previously
                # send a Close frame, the endpoint MUST send a Close frame in response.
                # (When sending a Close frame in response, the endpoint typically echos
                # the status code it received.)"
                echo = b"" if code == CloseCode.NO_STATUS_RECEIVED else build_close_payload(code)
                conn._sent_close = (code, "")
                conn._push(frame_header(Opcode.CLOSE, len(echo)), echo)
            conn._state = _LINGER
        self._linger(conn)
        self._finish(conn, code, reason)

    def _fail(self, conn: WebSocketConnection, code: int, message: str, *, drop: bool = False) -> None:
        """§7.1.7 _Fail the WebSocket Connection_: send a close, read no more frames.

        ``drop`` discards queued frames not yet started (the peer stopped reading).
        """
        reason = message.encode("utf-8")[:123].decode("utf-8", "ignore")
        with conn._lock:
            if conn._state is _OPEN:
                payload = build_close_payload(code, reason)
                conn._begin_close(code, reason, payload, drop=drop)
            conn._state = _LINGER
        self._linger(conn)
        self._finish(conn, code, reason)

    def _close(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        """Start a closing handshake from this side (shutdown, timers, a failed hook)."""
        with conn._lock:
            if conn._state is _OPEN:
                conn._begin_close(code, reason, build_close_payload(code, reason))

    def _linger(self, conn: WebSocketConnection) -> None:
        conn._close_deadline = self._close_deadline()
        self._schedule(conn)
        self._flush(conn)

    def _close_deadline(self) -> float:
        deadline = time.monotonic() + self._config.close_timeout
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
        return deadline

    def _abort(self, conn: WebSocketConnection) -> None:
        """Close the transport now and report the end of the connection."""
        if conn._state is _CLOSED:
            return
        with conn._lock:
            conn._state = _CLOSED
            conn._out.clear()
            conn._queued = 0
        conn._timer_at = None
        if conn._events:
            conn._events = 0
            self._poller.unregister(conn._fd)
        if self._conns.get(conn._fd) is conn:
            del self._conns[conn._fd]
        if conn._held and self._stopping:
            log.warning(
                "WebSocket loop %s: %s for the connection from %s is still running at the stop; "
                "closing that connection anyway",
                self.name,
                conn._held,
                conn.remote_addr,
            )
        _close_transport(conn)
        code, reason = conn._peer_close or conn._sent_close or (CloseCode.ABNORMAL_CLOSURE, "")
        self._finish(conn, code, reason)

    def _finish(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        """The connection has ended (for the hooks): ``handle_ws_disconn``, once."""
        if conn._final_code is not None:
            return
        conn._final_code = code
        conn._final_reason = reason
        on_disconn = self._hooks.on_disconn
        if on_disconn is None:
            return
        if conn._held is not None:
            conn._disconn_due = True  # after the call that holds it (_resume)
        elif self._ending:
            self._to_notify.append(conn)
        else:
            self._call(conn, on_disconn, conn, code, reason)

    # --- writing -------------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        dirty = self._dirty
        while dirty:
            conn = dirty.popleft()
            if conn._state is not _CLOSED:
                self._flush(conn)

    def _flush(self, conn: WebSocketConnection) -> None:
        """Write what the transport takes, then act on what is left and on the state."""
        try:
            pending, over = conn._write()
        except OSError as exc:
            log.debug("WebSocket to %s: %s", conn.remote_addr, exc)
            self._abort(conn)
            return
        state = conn._state
        if state is _CLOSING and conn._close_deadline is None:
            conn._close_deadline = self._close_deadline()
            self._schedule(conn)
        elif state is _OPEN and over:
            self._schedule(conn)
        elif state is _LINGER and not pending:
            if conn._peer_close is not None:
                # Both close frames are exchanged and the peer sends nothing after its
                # own: close now (§7.1.1: the server closes the TCP connection first).
                self._abort(conn)
                return
            if not conn._shut:
                # We failed the connection and the peer may still be sending: half-close
                # and read until its FIN, so that closing does not reset the connection
                # before it has read our close frame.
                conn._shut = True
                try:
                    conn._transport.shutdown_write()
                except OSError:
                    self._abort(conn)
                    return
        if conn._held is None:
            resume = state is _OPEN and not over and not conn._events & READ
            events = (0 if over and state is _OPEN else READ) | (WRITE if pending else 0)
        else:  # held: only its output flows
            resume = False
            events = WRITE if pending else 0
        if events != conn._events:
            self._set_interest(conn, events)
        if resume and conn._decoder.buffered_bytes:
            self._feed(conn, b"")

    def _set_interest(self, conn: WebSocketConnection, events: int) -> None:
        """Watch ``conn`` for ``events`` (0: not at all, so no hang-up is reported either)."""
        old = conn._events
        if events == old:
            return
        conn._events = events
        if not old:
            self._poller.register(conn._fd, events)
        elif not events:
            self._poller.unregister(conn._fd)
        else:
            self._poller.modify(conn._fd, events)

    # --- timers --------------------------------------------------------------------------

    def _deadline(self, conn: WebSocketConnection) -> float | None:
        state = conn._state
        if state is not _OPEN:
            return conn._close_deadline if state is not _CLOSED else None
        found = [t for t in (conn._next_ping, conn._ping_deadline) if t is not None]
        over = conn._over_since
        if over is not None:
            found.append(over + self._config.write_timeout)
        return min(found) if found else None

    def _schedule(self, conn: WebSocketConnection) -> None:
        self._timers.schedule(conn, self._deadline(conn))

    def _run_timers(self) -> None:
        now = time.monotonic()
        for conn in self._timers.pop_due(now):
            self._on_timer(conn, now)
            if conn._state is not _CLOSED:
                self._schedule(conn)

    def _on_timer(self, conn: WebSocketConnection, now: float) -> None:
        state = conn._state
        if state is not _OPEN:
            if conn._close_deadline is not None and now >= conn._close_deadline:
                log.debug("closing handshake with %s timed out", conn.remote_addr)
                self._abort(conn)
            return
        over = conn._over_since
        held = conn._held is not None
        if over is not None and now >= over + self._config.write_timeout:
            log.info(
                "WebSocket to %s: %d bytes queued for over %.1f s; closing with 1008",
                conn.remote_addr,
                conn._queued,
                self._config.write_timeout,
            )
            self._fail(conn, CloseCode.POLICY_VIOLATION, "peer too slow", drop=True)
        elif conn._ping_deadline is not None and now >= conn._ping_deadline:
            if held:  # the pong may be waiting unread behind the held call
                conn._ping_deadline = now + (self._config.ping_timeout or 0.0)
            else:
                log.info("WebSocket to %s: no pong in time; closing with 1011", conn.remote_addr)
                self._close(conn, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif conn._next_ping is not None and now >= conn._next_ping:
            interval = self._config.ping_interval
            assert interval is not None
            conn._next_ping = now + interval
            if conn._ping_deadline is None and not held:
                payload = _PING.pack(next(self._pings))
                timeout = self._config.ping_timeout
                conn._ping_payload = payload
                conn._ping_deadline = None if timeout is None else now + timeout
                with conn._lock:
                    conn._push(frame_header(Opcode.PING, len(payload)), payload)
        if conn._state is not _OPEN:
            self._flush(conn)


def _hook_name(fn: Hook) -> str:
    return str(getattr(fn, "__name__", fn))


def _close_transport(conn: WebSocketConnection) -> None:
    try:
        conn._transport.close()  # gives the connection's slot back to the server
    except OSError as exc:
        log.debug("closing the WebSocket from %s: %s", conn.remote_addr, exc)


def _discard(conn: WebSocketConnection) -> None:
    """Close a connection that never reached its hooks (so none is called)."""
    conn._state = _CLOSED
    conn._final_code = CloseCode.ABNORMAL_CLOSURE
    _close_transport(conn)
