"""Streamed response bodies: the channel between the code producing a body and the loop.

A handler streams a body with :meth:`Response.set_stream` (an iterable the server iterates
after the handler returns) or :meth:`Response.stream` (a :class:`BodyWriter` to write to as
it goes). Either way the pieces go into a :class:`BodyStream`: the producer side
(:meth:`BodyStream.write`, on whatever thread runs the handler's call) appends and waits
while more than :data:`STREAM_HIGH_BYTES` are queued; the loop side (the worker's driver)
takes what is queued when the connection's output has drained, frames it and sends it.
Memory per streamed response is bounded by about twice that amount.

A call that produces its whole body without blocking and within that amount (the common
case: a short generated body) never touches another thread: the loop finds the body
complete when the call returns and sends it with a ``Content-Length``. A producer that
blocks (waiting for room, or for its next event) is detached from the loop like any
blocking call, and from then on the loop is told when pieces arrive.

Who tells the loop a stream exists: the loop *attaches* to a response whose call runs
elsewhere (detached or offloaded), the producer *creates* the stream; whichever of the two
comes second, under :data:`_ATTACH_LOCK`, announces it. Exactly one does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from ._errors import PeregrineError

__all__ = ["STREAM_HIGH_BYTES", "BodyStream", "BodyWriter", "ClientDisconnected", "StreamState"]

#: A producer waits while more than this many bytes of its body are queued for the loop.
STREAM_HIGH_BYTES: Final = 256 * 1024
_WAIT_SLICE: Final = 1.0  # a waiting producer re-checks this often (a lost wake-up costs this)

_ATTACH_LOCK: Final = threading.Lock()

_Buffer = bytes | bytearray | memoryview


class ClientDisconnected(PeregrineError, ConnectionError):
    """The client is gone (or the server is closing its connection): stop producing."""


class BodyStream:
    """One streamed body. Producer side: :meth:`write`, :meth:`finish`, :meth:`fail`. Loop
    side: :meth:`take`, :meth:`abandon` and the attributes the loop alone uses."""

    __slots__ = (
        "_chunks",
        "_cond",
        "_want",
        "bodyless",
        "chunked",
        "done",
        "failed",
        "gone",
        "keep",
        "length",
        "notify",
        "remaining",
        "sent",
        "size",
        "started",
    )

    def __init__(self, length: int | None) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self.size = 0  # bytes queued, not yet taken by the loop
        self.length = length  # declared by the handler (Content-Length), or None
        self.done = False  # the producer has finished (or failed)
        self.failed = False  # ... because it raised: the body is incomplete
        self.gone = False  # the loop gave up on the connection: writes raise
        self._want = False  # the loop waits for news (it has sent everything it took)
        self.notify: Callable[[], None] | None = None  # the loop's, once it follows the stream
        # The loop's own, once it has sent the head:
        self.started = False
        self.keep = False  # the connection persists after this body
        self.chunked = False
        self.bodyless = False  # HEAD, 1xx, 204, 304: pieces are dropped
        self.remaining = -1  # bytes still owed under a declared length
        self.sent = 0  # body bytes queued for the client (the access log's size)

    # --- producer side -------------------------------------------------------------------

    def write(self, data: _Buffer) -> None:
        """Queue ``data`` (copied when mutable); wait while too much is queued.

        Raises:
            ClientDisconnected: the connection is gone.
            TypeError: ``data`` is not bytes-like.
        """
        self.put(data)
        if self.size > STREAM_HIGH_BYTES:
            with self._cond:
                while self.size > STREAM_HIGH_BYTES and not self.gone:
                    self._cond.wait(_WAIT_SLICE)
                if self.gone:
                    raise ClientDisconnected("the client is gone")

    def put(self, data: _Buffer) -> None:
        """Queue ``data`` without waiting (a call that may still be the loop's driver: it
        must not wait for the loop; if it was detached meanwhile, the loop is told)."""
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"a body piece must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if not data:
            return
        with self._cond:
            if self.gone:
                raise ClientDisconnected("the client is gone")
            self._chunks.append(data)
            self.size += len(data)
            notify = self._news_locked()
        if notify is not None:
            notify()

    def finish(self, failed: bool = False) -> None:
        """The body is complete (``failed``: the producer raised; it is not)."""
        with self._cond:
            self.done = True
            self.failed = failed
            notify = self._news_locked()
        if notify is not None:
            notify()

    def _news_locked(self) -> Callable[[], None] | None:
        """Under the lock, after a change: the loop's callback to call (outside the lock)
        when it waits for news, else ``None``."""
        if not self._want:
            return None
        self._want = False
        return self.notify

    # --- loop side -----------------------------------------------------------------------

    def take(self) -> list[bytes]:
        """Everything queued; when nothing is and the body is not done, the next write
        (or the end) calls :attr:`notify`."""
        with self._cond:
            chunks = list(self._chunks)
            self._chunks.clear()
            if self.size:
                self.size = 0
                self._cond.notify_all()
            elif not self.done:
                self._want = True
            return chunks

    def abandon(self) -> None:
        """The connection is closed: drop what is queued, make the producer stop."""
        with self._cond:
            self.gone = True
            self._chunks.clear()
            self.size = 0
            self._cond.notify_all()


class StreamState:
    """What a response knows of its streamed body (``Response._streaming``)."""

    __slots__ = ("active", "announce", "length", "source", "stream")

    def __init__(self) -> None:
        self.active = False  # the handler asked for a streamed body
        self.source: Iterable[_Buffer] | None = None  # set_stream's iterable
        self.length: int | None = None
        self.stream: BodyStream | None = None
        self.announce: Callable[[BodyStream], None] | None = None  # the loop's, once attached


class _HasState(Protocol):
    _streaming: StreamState | None


def state_of(resp: _HasState) -> StreamState:
    """``resp``'s stream state, created if need be (from any thread)."""
    with _ATTACH_LOCK:
        state = resp._streaming
        if state is None:
            state = resp._streaming = StreamState()
        return state


def attach(resp: _HasState, announce: Callable[[BodyStream], None]) -> None:
    """Loop side: ``resp``'s call runs elsewhere; call ``announce`` with its stream once it
    exists (now, if it does)."""
    with _ATTACH_LOCK:
        state = resp._streaming
        if state is None:
            state = resp._streaming = StreamState()
        stream = state.stream
        if stream is None:
            state.announce = announce
            return
    announce(stream)


def create(resp: _HasState, length: int | None) -> BodyStream:
    """Producer side: ``resp``'s stream, created now if need be (announced to an attached
    loop)."""
    with _ATTACH_LOCK:
        state = resp._streaming
        if state is None:
            state = resp._streaming = StreamState()
        state.active = True
        stream = state.stream
        if stream is not None:
            return stream
        stream = state.stream = BodyStream(length)
        announce = state.announce
    if announce is not None:
        announce(stream)
    return stream


class BodyWriter:
    """Writes a streamed response body as it is produced (see :meth:`Response.stream`).

    ``write`` blocks while the client is not reading (memory stays bounded) and raises
    :class:`ClientDisconnected` once the connection is gone.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: BodyStream) -> None:
        self._stream = stream

    def write(self, data: _Buffer) -> None:
        """Send ``data`` (the head goes out before the first piece)."""
        self._stream.write(data)

    def __call__(self, data: _Buffer) -> None:
        """The same as :meth:`write` (WSGI's ``write()`` callable)."""
        self._stream.write(data)
