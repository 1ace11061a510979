"""``H1Protocol``: one connection's HTTP/1 framing, without I/O.

Bytes in (:meth:`H1Protocol.receive`), complete requests out (:meth:`H1Protocol.next_request`:
a :class:`~peregrine_core._h1.Head` whose ``request.body`` is filled in, ``None`` for "need
more", or :class:`RemoteProtocolError` carrying the status to answer); a response in
(:meth:`H1Protocol.respond`), buffers out (``out``, a queue of bytes and
:class:`FileBody` regions for the transport to write). It owns everything about framing:
skipped empty lines, the head, Content-Length and chunked bodies, the 413 before a body is
read, ``100 Continue``, keep-alive, what the server must add (Content-Length, Date,
Connection) or refuse (a 2xx to CONNECT), and the bytes left over after an upgrade. The
worker keeps polling, deadlines, writing and closing; the codec tests drive this very
object.

Receive states (``state``): ``IDLE`` (no byte of the next request yet), ``HEAD`` (some of a
head), ``BODY`` (a head announcing a body is complete; the body is arriving). A complete
request sets it back to ``IDLE``. The connection's other states (``LINGER``, ``CALLING``...)
belong to the worker and are set by it only while no request is being parsed.

The speed of this object is the server's: a request costs one call here and one in
``respond``, parsing works on the received buffer from an offset (it is compacted only when
a read ends inside a request), and the common head is rebuilt from ``HeadMemo``.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Final

from ._body import BodyBuffer
from ._chunked import ChunkedReader
from ._errors import RemoteProtocolError
from ._h1 import _LINE_AND_CTL_BYTES, Head, HeadMemo, Limits, parse_head
from ._log import escape
from ._response import FileBody, Response
from ._status import reason_phrase, status_line

if TYPE_CHECKING:
    from ._request import _Where
    from ._stream import BodyStream

__all__ = ["H1Protocol", "State", "error_response"]

log = logging.getLogger("peregrine_core.server")

_MAX_IDLE_CRLF_BYTES: Final = 16
_JOIN_MAX_BODY_BYTES: Final = 16 * 1024  # smaller bodies are copied behind their head
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE_TAIL: Final = b"Connection: close\r\n\r\n"
_UPGRADE_TAIL: Final = b"Connection: Upgrade\r\n"
_KA11_TAIL: Final = b"\r\n"
_UPGRADE_KA_TAIL: Final = b"Connection: Upgrade, keep-alive\r\n\r\n"
_UPGRADE_CLOSE_TAIL: Final = b"Connection: Upgrade, close\r\n\r\n"


class State(enum.IntEnum):
    IDLE = 0
    HEAD = 1
    BODY = 2
    LINGER = 3
    UPGRADED = 4
    CLOSED = 5
    CALLING = 6


_IDLE: Final = State.IDLE
_HEAD: Final = State.HEAD
_BODY: Final = State.BODY


class H1Protocol:
    """The HTTP/1 side of one connection.

    Args:
        limits: the request limits.
        memo: a :class:`HeadMemo` for ``limits`` shared by the connections of a worker.
        addr: the peer's address (the requests' ``remote_addr``).
        ka10_tail: the end of a keep-alive response to HTTP/1.0 (it names the timeout).
    """

    __slots__ = (
        "_blank",
        "_body",
        "_buf",
        "_chunked",
        "_head",
        "_ka10_tail",
        "_limits",
        "_memo",
        "_pos",
        "_trickle_max",
        "addr",
        "ended",
        "out",
        "state",
        "where",
    )

    def __init__(
        self,
        limits: Limits,
        memo: HeadMemo | None,
        addr: object,
        ka10_tail: bytes = b"Connection: keep-alive\r\n\r\n",
    ) -> None:
        self._limits = limits
        # Within the request-line limit, and within the head limit with room for the head's
        # final CRLFCRLF (the codec refuses a head that can no longer fit before it reaches
        # the limit itself).
        self._trickle_max = min(limits.max_request_line_bytes, limits.max_header_bytes - 4)
        self._memo = memo
        self.addr = addr
        self._ka10_tail = ka10_tail
        self.state = State.IDLE
        self._buf = b""
        self._pos = 0
        self._blank = False  # _buf holds nothing but empty lines, waiting for a request
        self._head: Head | None = None  # a head whose body is arriving
        self._body: BodyBuffer | None = None  # a Content-Length body arriving
        self._chunked: ChunkedReader | None = None
        self.where: _Where | None = None  # the transport: requests' local_addr and scheme
        self.ended = False  # a response ended the connection: nothing more is parsed
        # A list, not a deque: it holds a handful of buffers, and an empty deque costs
        # ~600 bytes per connection.
        self.out: list[bytes | memoryview | FileBody] = []

    # --- receiving -------------------------------------------------------------------------

    def receive(self, data: bytes) -> bool:
        """Take bytes read from the peer; False when parsing now could tell nothing new.

        Bytes without CR, LF or another control character, added to a head that does not
        end in a CR and stays under the request-line and head limits, can neither
        complete nor break it (the codec answers the same however the bytes are split),
        so a client trickling a head byte by byte does not cost a parse per byte.
        """
        buf = self._buf
        if not buf and not self.ended:  # the common case: nothing was left over
            self._buf = data
            return True
        if self.ended:
            return False  # input after the last response is discarded
        self._blank = False
        if buf:
            if self._pos:
                buf = buf[self._pos :]
                self._pos = 0
            if (
                self.state == _HEAD
                and len(buf) + len(data) <= self._trickle_max
                and not buf.endswith(b"\r")
                and len(data.translate(None, _LINE_AND_CTL_BYTES)) == len(data)  # none of CR, LF, CTL
            ):
                self._buf = buf + data
                return False
            self._buf = buf + data
        else:
            self._buf = data
        return True

    @property
    def pending(self) -> bool:
        """Whether received bytes wait to be parsed (empty lines alone do not count)."""
        return self._pos < len(self._buf) and not self._blank

    @property
    def inside_request(self) -> bool:
        """Whether part of a request has been received (an EOF now would cut it)."""
        return self.state == _HEAD or self.state == _BODY

    def rest(self) -> bytes:
        """The bytes received after the last request, taken (for an upgraded protocol)."""
        rest = self._buf[self._pos :]
        self._buf = b""
        self._pos = 0
        return rest

    def next_request(self, received: float) -> Head | None:
        """The next complete request, or ``None`` until more bytes arrive.

        ``received`` becomes the request's ``received_at``. After ``None``, ``state`` says
        whether a request has begun (``HEAD``, ``BODY``: its deadline runs), and ``out``
        may hold a ``100 Continue``.

        Raises:
            RemoteProtocolError: the peer's bytes violate HTTP/1; answer
                :meth:`error` and close. Nothing more is parsed.
        """
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end and self.state != _BODY:  # all parsed: the common end of a read
            if end:
                self._buf = b""
                self._pos = 0
            return None
        limits = self._limits
        try:
            if self.state == _BODY:
                head = self._head
                assert head is not None
                reader = self._chunked
                if reader is not None:
                    pos = reader.feed(buf, pos)
                    if not reader.done:
                        self._need_more(buf, pos)
                        return None
                    self._chunked = None
                    reader.buffer.give(head.request)
                else:
                    body = self._body
                    assert body is not None
                    take = min(head.content_length - body.size, end - pos)
                    body.write(memoryview(buf)[pos : pos + take])
                    pos += take
                    if body.size < head.content_length:
                        self._need_more(buf, pos)
                        return None
                    self._body = None
                    body.give(head.request)
                head.request.received_at = received  # its last byte came with this read
                self._head = None
            else:
                if self.ended:
                    self._need_more(buf, pos)
                    return None
                if self.state == _IDLE:
                    # RFC 9112 §2.2: "a server ... SHOULD ignore at least one empty line
                    # (CRLF) received prior to the request-line" (some clients send one
                    # after a body). When that is all there is, it neither starts a
                    # request nor counts as activity; before a request line the codec
                    # skips it (and bounds how many).
                    # They are kept (not dropped) so that the codec's bound on empty lines
                    # holds however the bytes are split.
                    rest = end - pos
                    if rest <= _MAX_IDLE_CRLF_BYTES and buf.count(b"\r\n", pos, end) * 2 == rest:
                        self._need_more(buf, pos)
                        self._blank = True
                        return None
                head = parse_head(buf, pos, limits, self.addr, self._memo, received)
                if head is None:
                    self.state = _HEAD  # the head's deadline runs from its first byte
                    self._need_more(buf, pos)
                    return None
                pos = head.end
                if head.chunked or head.content_length:
                    if head.content_length > limits.max_body_bytes:
                        raise RemoteProtocolError(
                            f"request body of {head.content_length} bytes exceeds {limits.max_body_bytes}",
                            413,
                        )
                    if head.chunked:
                        reader = ChunkedReader(
                            limits.max_body_bytes, limits.max_header_bytes, limits.body_buffer_bytes
                        )
                        self._chunked = reader
                        pos = reader.feed(buf, pos)
                        if reader.done:
                            self._chunked = None
                            reader.buffer.give(head.request)
                        else:
                            self._body_begins(head, buf, pos)
                            return None
                    elif end - pos >= head.content_length:
                        head.request._body = buf[pos : pos + head.content_length]
                        pos += head.content_length
                    else:  # the rest arrives into a buffer (or a file), not by re-joining
                        self._body = BodyBuffer(limits.body_buffer_bytes, memoryview(buf)[pos:end])
                        self._body_begins(head, buf, end)
                        return None
        except RemoteProtocolError:
            self._buf = b""
            self._pos = 0
            self._head = None
            self.drop_body()
            self.ended = True
            raise
        self._pos = pos
        self.state = _IDLE
        head.request._where = self.where
        return head

    def drop_body(self) -> None:
        """Drop a body that was arriving (the connection ends before it is complete)."""
        reader, self._chunked = self._chunked, None
        if reader is not None:
            reader.buffer.close()
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def _need_more(self, buf: bytes, pos: int) -> None:
        self._buf = buf[pos:] if pos < len(buf) else b""
        self._pos = 0

    def _body_begins(self, head: Head, buf: bytes, pos: int) -> None:
        self._head = head
        self.state = _BODY
        if head.expect_continue:
            # RFC 9110 §10.1.1: the body will be read, so the client may send it now.
            self.out.append(CONTINUE)
        self._need_more(buf, pos)

    # --- responding ------------------------------------------------------------------------

    def respond(self, head: Head, resp: Response, keep: bool, date: bytes, upgrade: bool = False) -> bool:
        """Queue ``resp`` as the answer to ``head``'s request on ``out``.

        Args:
            keep: whether the server lets the connection persist (shutdown, request
                counts); the request and the response have their say too.
            date: the ``Date`` line (used unless the handler set one).
            upgrade: the connection switches to ``resp.upgrade_protocol`` after this 101.

        Returns:
            True when the connection goes on with HTTP/1 (parse the next request); False
            when it ends after this response (``ended``) or switches protocols.
        """
        req = head.request
        if req.method == "CONNECT" and not upgrade:
            # RFC 9110 §9.3.6: "Any 2xx (Successful) response indicates that the sender
            # (and all inbound proxies) will switch to tunnel mode immediately after the
            # response header section". There is no tunnel here: a 2xx would make a proxy
            # in front forward what follows uninspected while this server parses it.
            if 200 <= resp._status < 300:
                log.error(
                    "handler answered CONNECT %s with %d, but this server has no tunnel; sent 501",
                    escape(req.target),
                    resp._status,
                )
                resp._drop_file()
                resp = error_response(501)
            keep = False  # nothing after a CONNECT is parsed as a request
        keep = keep and head.keep_alive and not resp.close_connection
        status = resp._status
        out = self.out
        lines = resp._lines
        fields = "".join(lines).encode("latin-1") if lines else b""
        date = b"" if resp._has_date else date
        if upgrade:
            protocol = (resp.upgrade_protocol or "").encode("ascii")
            tail = b"%sUpgrade: %s\r\n\r\n" % (_UPGRADE_TAIL, protocol)
            out.append(b"".join((status_line(status), fields, date, tail)))
            return False
        if resp._has_upgrade:  # RFC 9110 §7.8: Upgrade is listed in Connection
            tail = _UPGRADE_KA_TAIL if keep else _UPGRADE_CLOSE_TAIL
        elif keep:
            tail = _KA11_TAIL if req.version == "HTTP/1.1" else self._ka10_tail
        else:
            tail = _CLOSE_TAIL
        if status < 200 or status == 204 or status == 304:  # not has_body(status), inlined: no Content-Length
            resp._drop_file()
            out.append(b"".join((status_line(status), fields, date, tail)))
        else:
            file = resp.file
            body = resp.body
            parts = [
                status_line(status),
                fields,
                b"Content-Length: %d\r\n" % (len(body) if file is None else file.count),
                date,
                tail,
            ]
            if req.method == "HEAD":
                resp._drop_file()
                out.append(b"".join(parts))
            elif file is not None:
                out.append(b"".join(parts))
                out.append(file)
                resp.file = None
            elif len(body) <= _JOIN_MAX_BODY_BYTES:
                parts.append(body)  # type: ignore[arg-type]  # one buffer, one send
                out.append(b"".join(parts))
            else:  # a large body is not copied: head and body go out in one sendmsg
                out.append(b"".join(parts))
                out.append(body)  # type: ignore[arg-type]
        if not keep:
            self.ended = True
        return keep

    def respond_stream(self, head: Head, resp: Response, stream: BodyStream, keep: bool, date: bytes) -> bool:
        """Queue the head of a streamed response; the body follows through :meth:`frame`
        and :meth:`end_stream`. Sets the stream's framing; returns whether the connection
        may persist after it."""
        req = head.request
        status = resp._status
        stream.started = True
        if req.method == "CONNECT" and 200 <= status < 300:
            stream.bodyless = True
            self.respond(head, resp, False, date)  # refuses the 2xx (501), ends the connection
            return False
        keep = keep and head.keep_alive and not resp.close_connection
        lines = resp._lines
        fields = "".join(lines).encode("latin-1") if lines else b""
        date = b"" if resp._has_date else date
        length = stream.length
        no_content = not has_body(status)
        if no_content:
            framing = b""
        elif length is not None:
            framing = b"Content-Length: %d\r\n" % length
            stream.remaining = length
        elif req.version == "HTTP/1.1":
            framing = b"Transfer-Encoding: chunked\r\n"
            stream.chunked = True
        else:
            framing = b""  # HTTP/1.0: the end of the body is the end of the connection
            if req.method != "HEAD":
                keep = False
        if no_content or req.method == "HEAD":
            stream.bodyless = True
            stream.chunked = False
            stream.remaining = -1
        if resp._has_upgrade:
            tail = _UPGRADE_KA_TAIL if keep else _UPGRADE_CLOSE_TAIL
        elif keep:
            tail = _KA11_TAIL if req.version == "HTTP/1.1" else self._ka10_tail
        else:
            tail = _CLOSE_TAIL
        self.out.append(b"".join((status_line(status), fields, framing, date, tail)))
        stream.keep = keep
        if not keep:
            self.ended = True
        return keep

    def frame(self, stream: BodyStream, chunks: list[bytes]) -> None:
        """Queue pieces of a streamed body, framed as :meth:`respond_stream` decided."""
        if stream.bodyless or stream.gone:
            return
        out = self.out
        if stream.chunked:
            size = 0
            parts: list[bytes] = []
            for chunk in chunks:
                parts += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
                size += len(chunk)
            stream.sent += size
            if size <= _JOIN_MAX_BODY_BYTES:
                out.append(b"".join(parts))
            else:
                out.extend(parts)
        elif stream.remaining >= 0:
            remaining = stream.remaining
            for chunk in chunks:
                if len(chunk) > remaining:
                    log.error(
                        "a streamed body is longer than its declared length (%d bytes); "
                        "the rest is dropped and the connection closed",
                        stream.length,
                    )
                    if remaining:
                        out.append(chunk[:remaining])
                        stream.sent += remaining
                    stream.remaining = 0
                    stream.keep = False
                    self.ended = True
                    stream.abandon()  # the producer stops
                    return
                out.append(chunk)
                remaining -= len(chunk)
                stream.sent += len(chunk)
            stream.remaining = remaining
        else:
            stream.sent += sum(map(len, chunks))
            out.extend(chunks)

    def end_stream(self, stream: BodyStream) -> bool:
        """Queue the end of a streamed body; whether the connection may persist after it."""
        keep = stream.keep
        if stream.bodyless:
            return keep
        if stream.failed:
            keep = False  # the body is incomplete: only closing tells the client so
        elif stream.chunked:
            self.out.append(b"0\r\n\r\n")
        elif stream.remaining > 0:
            log.error(
                "a streamed body ended %d bytes short of its declared length (%d); closing the connection",
                stream.remaining,
                stream.length,
            )
            keep = False
        elif stream.remaining < 0:
            keep = False  # close-delimited
        if not keep:
            self.ended = True
        return keep

    def error(self, exc: RemoteProtocolError, date: bytes) -> None:
        """Queue the answer to a protocol error; the connection ends after it."""
        status = exc.status_hint
        body = f"{reason_phrase(status)}: {exc}\n".encode("latin-1", "replace")
        self.out.append(
            b"".join(
                (
                    status_line(status),
                    b"Content-Type: text/plain; charset=utf-8\r\n",
                    b"Content-Length: %d\r\n" % len(body),
                    date,
                    _CLOSE_TAIL,
                    body,
                )
            )
        )
        self.ended = True


def has_body(status: int) -> bool:
    """Whether a response with ``status`` carries a body (RFC 9110 §6.4.1: never 1xx, 204
    or 304; a response to HEAD has none either)."""
    return status >= 200 and status != 204 and status != 304


def error_response(status: int) -> Response:
    """A plain-text response with ``status`` and its reason phrase."""
    resp = Response()
    resp.status = status
    resp.add_header("Content-Type", "text/plain; charset=utf-8")
    resp.set_body(f"{reason_phrase(status)}\n")
    return resp
