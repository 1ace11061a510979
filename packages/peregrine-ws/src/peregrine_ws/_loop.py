"""``WebSocketLoop``: one WebSocket thread, its poller and the connections it owns.

The thread blocks in ``poll()`` until a socket is ready, a wake-up arrives (a new
connection, frames queued by another thread, shutdown) or the nearest timer is due; it
never busy-polls. Each iteration: handle ready sockets (write, then read and dispatch
events to the hooks), adopt new connections, flush connections with queued frames, fire
due timers.

Invariants:

* Only this thread reads or writes a connection's socket, changes its poller interest,
  runs its hooks, or closes it; other threads only queue frames (see ``_connection``).
* Every socket handed over is closed by this thread: at the end of the closing handshake,
  at a timeout, on an error, or when the thread stops.
* A hook's exception is logged and closes that connection with 1011; nothing a peer or a
  hook does ends the thread.
* Each connection has at most one deadline in the ``TimerHeap``: the earliest of its
  keepalive ping, pong deadline, closing timeout and backpressure timeout.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from peregrine_core.poller import ERROR, READ, WRITE, Waker, make_poller

from ._config import WebSocketConfig
from ._connection import State, WebSocketConnection
from ._decoder import BinaryMessage, Close, Event, Ping, Pong, TextMessage
from ._errors import ProtocolError
from ._frames import CloseCode, Opcode, build_close_payload, frame_header
from ._hooks import Hooks
from ._timers import TimerHeap

__all__ = ["WebSocketLoop"]

log = logging.getLogger(__name__)

_PING: Final = struct.Struct("!Q")


class WebSocketLoop:
    """One WebSocket thread. ``adopt``, ``notify`` and ``stop`` are safe from any thread."""

    def __init__(self, name: str, config: WebSocketConfig, hooks: Hooks, poller: str) -> None:
        self._config = config
        self._hooks = hooks
        self._poller = make_poller(poller)
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
        self._ident = -1
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def load(self) -> int:
        """Connections owned or waiting to be adopted (for choosing a thread)."""
        return len(self._conns) + len(self._inbox)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def adopt(self, conn: WebSocketConnection, data: bytes) -> None:
        """Hand a connection to this thread; ``data`` is fed before anything read later."""
        self._inbox.append((conn, data))
        self._wake()

    def notify(self, conn: WebSocketConnection) -> None:
        """``conn`` has frames to flush (called with ``conn._lock`` held)."""
        self._dirty.append(conn)
        if threading.get_ident() != self._ident:
            self._wake()

    def stop(self, deadline: float) -> None:
        """Close every connection with 1001, then end the thread by ``deadline``."""
        self._stop_deadline = deadline
        self._wake()

    def _wake(self) -> None:
        # Cleared by the loop after poll() returns and before it looks at its queues, so a
        # notification is either seen in this round or wakes the next poll().
        if not self._woken:
            self._woken = True
            self._waker.wake()

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        self._ident = threading.get_ident()
        waker_fd = self._waker.fileno()
        try:
            while True:
                events = self._poller.poll(self._timeout())
                self._woken = False
                for fd, flags in events:
                    if fd == waker_fd:
                        self._waker.drain()
                        continue
                    conn = self._conns.get(fd)
                    if conn is None:
                        continue
                    try:
                        if flags & WRITE:
                            self._flush(conn)
                        if flags & (READ | ERROR) and conn._state is not State.CLOSED:
                            self._read(conn)
                    except Exception:  # a bug here must cost one connection, not all
                        log.exception("WebSocket from %s failed; dropping it", conn.remote_addr)
                        self._abort(conn)
                self._take_new()
                self._flush_dirty()
                self._run_timers()
                if self._stop_deadline is not None:
                    if not self._stopping:
                        self._begin_stop()
                    if not self._conns or time.monotonic() >= self._stop_deadline:
                        break
        except Exception:
            log.exception("WebSocket thread %s failed; closing its connections", self._thread.name)
        finally:
            for conn in list(self._conns.values()):
                self._abort(conn)
            while self._inbox:
                _discard(self._inbox.popleft()[0])
            self._poller.close()
            self._waker.close()

    def _timeout(self) -> float | None:
        if self._dirty or self._inbox:
            return 0.0
        when = self._timers.next_deadline()
        if self._stop_deadline is not None:
            when = self._stop_deadline if when is None else min(when, self._stop_deadline)
        return None if when is None else max(0.0, when - time.monotonic())

    def _take_new(self) -> None:
        now = time.monotonic()
        interval = self._config.ping_interval
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
            if self._hooks.on_conn is not None:
                self._call(conn, self._hooks.on_conn, conn)
            if data:
                self._feed(conn, data)
            if self._stopping:
                self._close(conn, CloseCode.GOING_AWAY, "server shutting down")

    def _begin_stop(self) -> None:
        self._stopping = True
        for conn in list(self._conns.values()):
            self._close(conn, CloseCode.GOING_AWAY, "server shutting down")
            if conn._state is not State.CLOSED:
                self._flush(conn)

    # --- reading -------------------------------------------------------------------------

    def _read(self, conn: WebSocketConnection) -> None:
        try:
            data = conn._sock.recv(self._config.read_buffer_bytes)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("WebSocket from %s: %s", conn.remote_addr, exc)
            self._abort(conn)
            return
        if not data:
            self._abort(conn)  # EOF: the end of LINGER, or an abnormal closure
        elif conn._state is not State.LINGER:
            self._feed(conn, data)

    def _feed(self, conn: WebSocketConnection, data: bytes) -> None:
        decoder = conn._decoder
        decoder.receive_data(data)
        while conn._state is State.OPEN or conn._state is State.CLOSING:
            if conn._queued >= conn._limit and conn._state is State.OPEN:
                # Backpressure: the peer is not reading our replies, so stop reading its
                # messages; _flush resumes with what is buffered once the queue drains.
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
            if conn._state is State.OPEN:  # §7.1.2: data after our close is discarded
                self._deliver(conn, event)
        elif isinstance(event, Ping):
            # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            # response, unless it already received a Close frame."
            with conn._lock:
                if conn._state is State.OPEN:
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

    def _call(self, conn: WebSocketConnection, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception(
                "WebSocket hook %s failed for %s; closing with 1011",
                getattr(fn, "__name__", fn),
                conn.remote_addr,
            )
            self._close(conn, CloseCode.INTERNAL_ERROR, "internal error")

    # --- closing -------------------------------------------------------------------------

    def _on_close_frame(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        conn._peer_close = (code, reason)
        with conn._lock:
            if conn._state is State.OPEN:
                # §5.5.1: "If an endpoint receives a Close frame and did not previously
                # send a Close frame, the endpoint MUST send a Close frame in response.
                # (When sending a Close frame in response, the endpoint typically echos
                # the status code it received.)"
                echo = b"" if code == CloseCode.NO_STATUS_RECEIVED else build_close_payload(code)
                conn._sent_close = (code, "")
                conn._push(frame_header(Opcode.CLOSE, len(echo)), echo)
            conn._state = State.LINGER
        self._linger(conn)
        self._finish(conn, code, reason)

    def _fail(self, conn: WebSocketConnection, code: int, message: str, *, drop: bool = False) -> None:
        """§7.1.7 _Fail the WebSocket Connection_: send a close, read no more frames.

        ``drop`` discards queued frames not yet started (the peer stopped reading).
        """
        reason = message.encode("utf-8")[:123].decode("utf-8", "ignore")
        with conn._lock:
            if conn._state is State.OPEN:
                payload = build_close_payload(code, reason)
                conn._begin_close(code, reason, payload, drop=drop)
            conn._state = State.LINGER
        self._linger(conn)
        self._finish(conn, code, reason)

    def _close(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        """Start a closing handshake from this side (shutdown, timers, a failed hook)."""
        with conn._lock:
            if conn._state is State.OPEN:
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
        """Close the socket now and report the end of the connection."""
        if conn._state is State.CLOSED:
            return
        with conn._lock:
            conn._state = State.CLOSED
            conn._out.clear()
            conn._queued = 0
        conn._timer_at = None
        if self._conns.get(conn._fd) is conn:
            del self._conns[conn._fd]
            self._poller.unregister(conn._fd)
        conn._sock.close()
        code, reason = conn._peer_close or conn._sent_close or (CloseCode.ABNORMAL_CLOSURE, "")
        self._finish(conn, code, reason)

    def _finish(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        if conn._final_code is not None:
            return
        conn._final_code = code
        conn._final_reason = reason
        if self._hooks.on_disconn is not None:
            try:
                self._hooks.on_disconn(conn, code, reason)
            except Exception:
                log.exception("WebSocket hook handle_ws_disconn failed for %s", conn.remote_addr)

    # --- writing -------------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        dirty = self._dirty
        while dirty:
            conn = dirty.popleft()
            if conn._state is not State.CLOSED:
                self._flush(conn)

    def _flush(self, conn: WebSocketConnection) -> None:
        """Write what the socket takes, then act on what is left and on the state."""
        try:
            pending, over = conn._write()
        except OSError as exc:
            log.debug("WebSocket to %s: %s", conn.remote_addr, exc)
            self._abort(conn)
            return
        state = conn._state
        sock = conn._sock
        if state is State.CLOSING and conn._close_deadline is None:
            conn._close_deadline = self._close_deadline()
            self._schedule(conn)
        elif state is State.OPEN and over:
            self._schedule(conn)
        elif state is State.LINGER and not pending:
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
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    self._abort(conn)
                    return
        resume = state is State.OPEN and not over and not conn._events & READ
        events = (0 if over and state is State.OPEN else READ) | (WRITE if pending else 0)
        if events != conn._events:
            conn._events = events
            self._poller.modify(conn._fd, events)
        if resume and conn._decoder.buffered_bytes:
            self._feed(conn, b"")

    # --- timers --------------------------------------------------------------------------

    def _deadline(self, conn: WebSocketConnection) -> float | None:
        state = conn._state
        if state is not State.OPEN:
            return conn._close_deadline if state is not State.CLOSED else None
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
            if conn._state is not State.CLOSED:
                self._schedule(conn)

    def _on_timer(self, conn: WebSocketConnection, now: float) -> None:
        state = conn._state
        if state is not State.OPEN:
            if conn._close_deadline is not None and now >= conn._close_deadline:
                log.debug("closing handshake with %s timed out", conn.remote_addr)
                self._abort(conn)
            return
        over = conn._over_since
        if over is not None and now >= over + self._config.write_timeout:
            log.info(
                "WebSocket to %s: %d bytes queued for over %.1f s; closing with 1008",
                conn.remote_addr,
                conn._queued,
                self._config.write_timeout,
            )
            self._fail(conn, CloseCode.POLICY_VIOLATION, "peer too slow", drop=True)
        elif conn._ping_deadline is not None and now >= conn._ping_deadline:
            log.info("WebSocket to %s: no pong in time; closing with 1011", conn.remote_addr)
            self._close(conn, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif conn._next_ping is not None and now >= conn._next_ping:
            interval = self._config.ping_interval
            assert interval is not None
            conn._next_ping = now + interval
            if conn._ping_deadline is None:
                payload = _PING.pack(next(self._pings))
                timeout = self._config.ping_timeout
                conn._ping_payload = payload
                conn._ping_deadline = None if timeout is None else now + timeout
                with conn._lock:
                    conn._push(frame_header(Opcode.PING, len(payload)), payload)
        if conn._state is not State.OPEN:
            self._flush(conn)


def _discard(conn: WebSocketConnection) -> None:
    """Close a connection that never reached its hooks (so none is called)."""
    conn._state = State.CLOSED
    conn._final_code = CloseCode.ABNORMAL_CLOSURE
    conn._sock.close()
