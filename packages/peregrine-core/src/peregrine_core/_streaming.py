"""The worker's side of streamed response bodies (a mixin of :class:`~peregrine_core._worker.Worker`).

The producer (the handler's call: inline on the driver, detached, or on a pool thread) puts
pieces into the response's :class:`~peregrine_core._stream.BodyStream`; the loop frames and
sends them. A body produced inline without waiting is sent whole by ``_finish_stream`` with a
``Content-Length``. Otherwise the loop follows the stream once it is announced: it sends the
head, then what the producer queued each time the connection's output has drained, and the
end when the call's result comes back. Meanwhile the connection is ``CALLING``: nothing is
read from it; it is in the poller only while output waits for writability.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._connection import Connection, State, flush
from ._h1 import Head
from ._log import escape
from ._protocol import error_response, has_body
from ._response import Response
from ._stream import STREAM_HIGH_BYTES, BodyStream, ClientDisconnected, attach, create
from .poller import WRITE

if TYPE_CHECKING:
    from ._config import ServerConfig
    from ._request import Request
    from .handoff import HandoffPool
    from .poller import Poller, Waker

__all__ = ["StreamingMixin"]

log = logging.getLogger("peregrine_core.server")

_CLOSED = State.CLOSED


class StreamingMixin:
    """Streamed bodies, for the worker: it provides the attributes declared here."""

    _attention: bool
    _config: ServerConfig
    _conns: dict[int, Connection]
    _date_line: bytes
    _max_busy: int
    _max_requests: int
    _poller: Poller
    _pool: HandoffPool
    _stopping: bool
    _streams: deque[tuple[Connection, BodyStream, Head, Response]]
    _waker: Waker

    if TYPE_CHECKING:

        def _close(self, conn: Connection) -> None: ...
        def _pause(self, conn: Connection) -> None: ...
        def _post(self, conn: Connection, head: Head, resp: Response, started: float) -> None: ...
        def _set_deadline(self, conn: Connection, deadline: float) -> None: ...
        def _log_access(
            self, conn: Connection, req: Request, status: int, size: int, started: float
        ) -> None: ...

    def _produce(self, head: Head, resp: Response, inline: bool) -> Iterator[Any] | None:
        """On the call's thread, after the handler: iterate a ``set_stream`` body.

        Inline (on the driver) nothing waits: past :data:`STREAM_HIGH_BYTES` queued, the
        iterator is returned, for the rest to be produced elsewhere.
        """
        state = resp._streaming
        assert state is not None
        if not state.active:
            return None
        stream = create(resp, state.length)
        source = state.source
        if source is None:  # stream() alone: the body ended with the handler
            stream.finish()
            return None
        status = resp._status
        if head.request.method == "HEAD" or not has_body(status):
            _close_source(source)  # nothing is sent, nothing is produced
            stream.finish()
            return None
        try:
            it = iter(source)
        except Exception:
            log.exception("streamed body of %s %s failed", head.request.method, escape(head.request.target))
            _close_source(source)
            stream.finish(failed=True)
            return None
        return self._pump(stream, source, it, inline, head)

    def _pump(
        self,
        stream: BodyStream,
        source: Iterable[Any] | None,
        it: Iterator[Any],
        inline: bool,
        head: Head | None = None,
    ) -> Iterator[Any] | None:
        """Move pieces from ``it`` into ``stream`` until the end; ``source`` is closed then."""
        try:
            if inline:
                put = stream.put
                for piece in it:
                    put(piece)
                    if stream.size > STREAM_HIGH_BYTES:
                        if self._pool._busy < self._max_busy:
                            return it  # the rest is produced on a handler thread
                        inline = False  # none is free: wait here (this call is detached)
                        break
            if not inline:
                write = stream.write
                for piece in it:
                    write(piece)
        except ClientDisconnected:
            _close_source(source)
            stream.finish(failed=True)
            return None
        except Exception:
            if head is not None:
                log.exception(
                    "streamed body of %s %s failed", head.request.method, escape(head.request.target)
                )
            else:
                log.exception("a streamed body failed")
            _close_source(source)
            stream.finish(failed=True)
            return None
        _close_source(source)
        stream.finish()
        return None

    def _stream_elsewhere(
        self, conn: Connection, head: Head, resp: Response, rest: Iterator[Any], started: float
    ) -> None:
        """On the driver: a streamed body outgrew the inline budget; produce the rest on a
        handler thread while the loop sends what comes."""
        state = resp._streaming
        assert state is not None and state.stream is not None
        stream = state.stream
        source = state.source
        conn.calling = head
        self._pause(conn)
        attach(resp, self._announcer(conn, head, resp))  # the stream exists: announced now

        def task() -> None:
            self._pump(stream, source, rest, False, head)
            self._post(conn, head, resp, started)

        self._pool.submit(task)

    def _announcer(self, conn: Connection, head: Head, resp: Response) -> Callable[[BodyStream], None]:
        """What a producer calls (any thread) when the stream of ``resp`` exists."""
        streams = self._streams
        waker = self._waker

        def announce(stream: BodyStream) -> None:
            streams.append((conn, stream, head, resp))
            self._attention = True
            waker.wake()

        return announce

    def _take_streams(self) -> None:
        """Follow announced streams and send what their producers queued."""
        streams = self._streams
        for _ in range(len(streams)):  # news added meanwhile waits for the next pass
            conn, stream, head, resp = streams.popleft()
            if conn.state == _CLOSED or self._conns.get(conn.fd) is not conn:
                stream.abandon()
                continue
            if conn.streaming is not stream:
                if stream.started:
                    continue  # its call came back first: sent already
                self._start_stream(conn, stream, head, resp)
            if not conn.writing:
                self._pump_stream(conn, stream, head, resp)

    def _start_stream(self, conn: Connection, stream: BodyStream, head: Head, resp: Response) -> None:
        conn.streaming = stream
        streams = self._streams
        waker = self._waker
        item = (conn, stream, head, resp)

        def notify() -> None:  # on the producer's thread: news
            streams.append(item)
            self._attention = True
            waker.wake()

        stream.notify = notify
        keep = not self._stopping and conn.requests + 1 < self._max_requests
        conn.respond_stream(head, resp, stream, keep, self._date_line)

    def _pump_stream(self, conn: Connection, stream: BodyStream, head: Head, resp: Response) -> None:
        """Send what the producer queued (the connection's output has drained)."""
        chunks = stream.take()
        if chunks:
            conn.frame(stream, chunks)
        if not conn.out:
            return  # nothing to send: take() asked for news
        try:
            done = flush(conn)
        except OSError as exc:
            log.debug("write to %s failed: %s", conn.addr, exc)
            self._close(conn)
            return
        if done:
            if chunks:  # there may be more already: look next pass (the others' turn first)
                self._streams.append((conn, stream, head, resp))
                self._attention = True
            return
        assert conn.paused  # a streaming connection is out of the poller while it does not write
        conn.writing = True
        conn.paused = False
        self._poller.register(conn.fd, WRITE)
        self._set_deadline(conn, time.monotonic() + self._config.write_timeout)

    def _stream_drained(self, conn: Connection) -> None:
        """A streaming connection's output is all written: out of the poller until more."""
        stream = conn.streaming
        assert stream is not None
        conn.writing = False
        conn.paused = True
        self._poller.unregister(conn.fd)
        notify = stream.notify
        if notify is not None:
            notify()  # take more next pass

    def _finish_stream(self, conn: Connection, head: Head, resp: Response, started: float) -> bool:
        """Queue the rest of a streamed response whose call has returned; False when the
        connection must end."""
        req = head.request
        state = resp._streaming
        assert state is not None
        stream = state.stream
        if stream is None:  # stream()/set_stream() asked for, never produced (a failure)
            stream = create(resp, state.length)
            stream.finish(failed=True)
        conn.requests += 1
        if conn.streaming is stream:
            conn.streaming = None
            chunks = stream.take()
            if chunks:
                conn.frame(stream, chunks)
            keep = conn.end_stream(stream)
        elif stream.started:  # pragma: no cover - a stream is sent by one path only
            keep = False
        else:
            # The loop never followed it: the whole body is here (or its production
            # failed before anything was sent). Sent with a Content-Length.
            stream.started = True
            chunks = stream.take()
            keep_allowed = not self._stopping and conn.requests < self._max_requests
            status = resp._status
            bodyless = req.method == "HEAD" or not has_body(status)
            if stream.failed:
                keep = conn.respond(head, error_response(500), keep_allowed, self._date_line)
            elif bodyless:
                keep = conn.respond_stream(head, resp, stream, keep_allowed, self._date_line)
            else:
                body = b"".join(chunks)
                if stream.length is not None and len(body) != stream.length:
                    log.error(
                        "handler for %s %s declared a %d-byte body and produced %d bytes; sent 500",
                        req.method,
                        escape(req.target),
                        stream.length,
                        len(body),
                    )
                    keep = conn.respond(head, error_response(500), keep_allowed, self._date_line)
                else:
                    resp.body = body
                    keep = conn.respond(head, resp, keep_allowed, self._date_line)
        if started:
            # The body's size: joined into resp.body, or counted as the pieces were framed.
            self._log_access(conn, req, resp._status, max(resp.content_length, stream.sent), started)
        if req._body_file is not None:
            req._discard_file()
        if not keep:
            conn.close_after_flush = True
        return keep


def _close_source(source: object) -> None:
    """Call a streamed body's ``close()``, if it has one (errors are logged, never raised)."""
    close = getattr(source, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing a streamed body failed")


def _drop(resp: Response) -> None:
    """A response that will not be sent: close its file and stop its producer."""
    resp._drop_file()
    state = resp._streaming
    if state is not None and state.stream is not None:
        state.stream.abandon()
