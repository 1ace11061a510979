"""``WebSocketConnection``: what a handler holds, and the thread-safe half of a connection.

Threads: the connection belongs to one WebSocket loop, whose driver thread alone reads and
writes its :class:`~peregrine_core.transport.Transport`, runs the hooks (or hands a
blocked hook call over, see ``_loop``) and changes the state after the opening. Any thread may call
:meth:`~WebSocketConnection.send`, :meth:`~WebSocketConnection.ping` and
:meth:`~WebSocketConnection.close`: they encode the frame, append it to the outgoing
queue under ``_lock`` and ask the loop to flush (a deque plus a wake-up, only when the
connection was not already waiting for a flush).

Invariants:

* Frames enter the queue whole and in the order the calls took the lock, so frames never
  interleave; nothing is queued after our close frame.
* ``_queued`` is the number of bytes in the queue. Past ``max_send_queue_bytes`` sends
  raise :class:`BackpressureError` (one message may overshoot the mark, since a send is
  accepted while the queue is below it) and ``_over_since`` records when the queue went
  over; the loop closes with 1008 if it is still over ``write_timeout`` seconds later.
* With permessage-deflate, compressing and queueing a message happen under ``_send_lock``
  so the peer inflates messages in the order they were compressed, and a message is
  compressed only once it is certain to be queued (otherwise the shared LZ77 context
  would fall out of step with the peer's).
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol

from peregrine_core import LocalProtocolError, Request

from ._config import WebSocketConfig
from ._decoder import FrameDecoder
from ._deflate import PerMessageDeflate
from ._errors import BackpressureError, ConnectionClosed
from ._frames import (
    MAX_CONTROL_PAYLOAD_BYTES,
    CloseCode,
    Opcode,
    build_close_payload,
    frame_header,
)
from ._handshake import Handshake

if TYPE_CHECKING:
    from peregrine_core.transport import Transport

__all__ = ["State", "WebSocketConnection"]

#: Payloads up to this size are joined to their header (one buffer, one copy); larger
#: ones are queued as two buffers and written with one ``sendmsg``.
_JOIN_MAX_BYTES: Final = 65_536
#: Buffers handed to one ``sendmsg`` (Linux's IOV_MAX is 1024).
_IOV_BATCH: Final = 64


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 §7)."""

    OPEN = "open"
    """Messages flow both ways."""
    CLOSING = "closing"
    """Our close frame is queued; waiting for the peer's (§7.1.2)."""
    LINGER = "linger"
    """Closing handshake over, or the connection failed: flushing, then half-closing
    and waiting for the peer's FIN (§7.1.1: the server closes TCP first)."""
    CLOSED = "closed"
    """The transport is closed (and the connection's slot given back to the server)."""


class _Notifier(Protocol):
    def notify(self, conn: WebSocketConnection) -> None: ...


class WebSocketConnection:
    """One WebSocket connection, as the ``handle_ws_*`` hooks receive it.

    Every method is safe to call from any thread. Sending never blocks on the network:
    frames are queued and the connection's WebSocket thread writes them.

    Attributes:
        request: the upgrade request (path, query, headers, cookies...).
        remote_addr: the peer's address.
        subprotocol: the subprotocol agreed in the handshake, or ``None``.
    """

    __slots__ = (
        "_close_deadline",
        "_decoder",
        "_deflate",
        "_dirty",
        "_disconn_due",
        "_events",
        "_fd",
        "_final_code",
        "_final_reason",
        "_held",
        "_limit",
        "_lock",
        "_loop",
        "_next_ping",
        "_out",
        "_over_since",
        "_peer_close",
        "_ping_deadline",
        "_ping_payload",
        "_queued",
        "_send_lock",
        "_sent_close",
        "_shut",
        "_state",
        "_timer_at",
        "_transport",
        "remote_addr",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        transport: Transport,
        request: Request,
        handshake: Handshake,
        config: WebSocketConfig,
        loop: _Notifier,
    ) -> None:
        self._transport = transport
        self._fd = transport.fileno()
        self.request = request
        self.remote_addr = request.remote_addr
        if self.remote_addr is None:
            self.remote_addr = transport.peername
        self.subprotocol = handshake.subprotocol
        deflate = handshake.deflate
        self._deflate = PerMessageDeflate(deflate) if deflate is not None else None
        self._decoder = FrameDecoder(max_message_bytes=config.max_message_bytes, deflate=self._deflate)
        self._loop = loop
        self._limit = config.max_send_queue_bytes
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._out: deque[bytes | memoryview] = deque()
        self._queued = 0
        self._dirty = False
        self._over_since: float | None = None
        self._state = State.OPEN
        self._sent_close: tuple[int, str] | None = None
        self._peer_close: tuple[int, str] | None = None
        self._final_code: int | None = None
        self._final_reason = ""
        # Owned by the loop's driver thread.
        self._events = 0  # the poller interest; 0: not registered
        # Why the loop holds this connection back (see _loop): the name of a hook call of
        # it that runs off the loop or waits for a handler thread, or "" while reading it
        # waits for room in the handler queue; None when it is served normally.
        self._held: str | None = None
        self._disconn_due = False  # handle_ws_disconn waits for the held call to end
        self._shut = False
        self._timer_at: float | None = None
        self._close_deadline: float | None = None
        self._next_ping: float | None = None
        self._ping_deadline: float | None = None
        self._ping_payload: bytes | None = None

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.remote_addr!r} {self._state.value}>"

    # --- public API ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the closing handshake has started (nothing more can be sent)."""
        return self._state is not State.OPEN

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with (as given to ``handle_ws_disconn``), or
        ``None`` while it has not ended."""
        return self._final_code

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet written to the transport."""
        return self._queued

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a message: a ``str`` as a text message, bytes as a binary one.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            BackpressureError: the outgoing queue is above its high-water mark.
            TypeError: ``message`` is neither ``str`` nor bytes-like.
        """
        if isinstance(message, str):
            self._send_message(Opcode.TEXT, message.encode("utf-8"))
        elif isinstance(message, bytes | bytearray | memoryview):
            self._send_message(Opcode.BINARY, bytes(message))
        else:
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")

    def send_text(self, text: str) -> None:
        """Send a text message (see :meth:`send` for the exceptions)."""
        if not isinstance(text, str):
            raise TypeError(f"send_text takes a str, not {type(text).__name__}")
        self._send_message(Opcode.TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message (see :meth:`send` for the exceptions)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send_bytes takes bytes, not {type(data).__name__}")
        self._send_message(Opcode.BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the runtime also sends keepalive pings by itself).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            LocalProtocolError: ``payload`` is longer than 125 bytes.
        """
        if len(payload) > MAX_CONTROL_PAYLOAD_BYTES:
            raise LocalProtocolError(f"a ping payload is at most 125 bytes, not {len(payload)}")
        with self._lock:
            self._check_open()
            self._push(frame_header(Opcode.PING, len(payload)), bytes(payload))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake; does nothing if it has already started.

        Queued messages are still sent, then the close frame. ``handle_ws_disconn`` runs
        when the peer answers, or after ``close_timeout`` seconds when it does not.

        Raises:
            LocalProtocolError: ``code`` may not be sent (1005, 1006, 1015, out of range)
                or ``reason`` is longer than 123 bytes in UTF-8.
        """
        payload = build_close_payload(code, reason)
        with self._lock:
            if self._state is State.OPEN:
                self._begin_close(code, reason, payload)

    # --- internals (the _lock must be held where noted) ----------------------------------

    def _check_open(self) -> None:
        if self._state is not State.OPEN:
            raise ConnectionClosed("the WebSocket connection is closed", self._final_code)

    def _send_message(self, opcode: int, data: bytes) -> None:
        deflate = self._deflate
        if deflate is None or len(data) < deflate.params.config.min_bytes:
            with self._lock:
                self._check_open()
                self._check_room()
                self._push(frame_header(opcode, len(data)), data)
            return
        with self._send_lock:
            with self._lock:
                self._check_open()
                self._check_room()
            payload = deflate.compress(data)
            with self._lock:
                # Compressed, so it must be queued: the peer's context expects it.
                self._check_open()
                self._push(frame_header(opcode, len(payload), rsv1=True), payload)

    def _check_room(self) -> None:
        if self._queued >= self._limit:
            raise BackpressureError(self._queued, self._limit)

    def _push(self, header: bytes, payload: bytes) -> None:
        """Queue one frame (_lock held) and make sure the loop will flush it."""
        if len(payload) <= _JOIN_MAX_BYTES:
            self._out.append(header + payload)
        else:
            # The payload is marked as the middle of a frame (see _begin_close).
            self._out.append(header)
            self._out.append(memoryview(payload))
        self._queued += len(header) + len(payload)
        if self._queued >= self._limit and self._over_since is None:
            self._over_since = time.monotonic()
        if not self._dirty:
            self._dirty = True
            self._loop.notify(self)

    def _begin_close(self, code: int, reason: str, payload: bytes, *, drop: bool = False) -> None:
        """Queue our close frame and enter CLOSING (_lock held).

        ``drop`` discards queued frames not yet started, so the close frame goes out next
        (used when the peer stopped reading and the queue will never drain). Queued
        buffers are ``bytes`` at a frame's start and ``memoryview`` in a frame's middle (a
        partly written buffer, or the payload queued after its header), so the frame being
        written is the leading run of memoryviews.
        """
        if drop:
            out = self._out
            keep = 0
            while keep < len(out) and isinstance(out[keep], memoryview):
                keep += 1
            while len(out) > keep:
                out.pop()
            self._queued = sum(len(b) for b in out)
        self._state = State.CLOSING
        self._sent_close = (code, reason)
        self._push(frame_header(Opcode.CLOSE, len(payload)), payload)

    def _write(self) -> tuple[bool, bool]:
        """Write as much of the queue as the transport takes (loop's driver thread only).

        Returns:
            ``(pending, over)``: whether bytes remain queued, and whether the queue is
            still at or above the high-water mark (otherwise ``_over_since`` is cleared).

        Raises:
            OSError: the connection is broken.
        """
        transport = self._transport
        with self._lock:
            self._dirty = False
            out = self._out
            while out:
                try:
                    if len(out) == 1:
                        sent = transport.send(out[0])
                    else:
                        sent = transport.sendmsg(list(itertools.islice(out, _IOV_BATCH)))
                except (BlockingIOError, InterruptedError):
                    break
                self._queued -= sent
                while sent:
                    size = len(out[0])
                    if size <= sent:
                        out.popleft()
                        sent -= size
                    else:
                        out[0] = memoryview(out[0])[sent:]
                        break
                else:
                    continue
                break  # a partial write: the kernel's buffer is full
            over = self._queued >= self._limit
            if not over:
                self._over_since = None
            return bool(out), over
