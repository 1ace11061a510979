"""The HTTP/1.x request codec: bytes in, requests (or "need more", or an error) out.

It never touches a socket. :func:`parse_head` looks at a buffer from an offset and returns
``None`` until a whole head is there, then a :class:`Head`; body readers
(:class:`ChunkedReader`, and plain slicing for Content-Length) consume the bytes after it.
Every violation raises :class:`RemoteProtocolError` carrying the status to answer with.

Strategy: the work is done by C code (``find``, ``count``, ``split``, ``partition`` and a few
anchored regular expressions without nested quantifiers, so no input can make them
backtrack). The rules are RFC 9112's, applied strictly:

* "A recipient MUST NOT ... accept a bare CR" and we also refuse a bare LF as a line
  terminator (RFC 9112 §2.2 allows rejecting it): every CR and LF in a head appears as CRLF.
* Method and field names are ``token`` s; field values hold no control character but HTAB;
  only SP and HTAB are whitespace; "No whitespace is allowed between the field name and
  colon" (RFC 9112 §5.1); obs-fold is rejected (§5.2 permits that with a 400).
* The version is exactly ``HTTP/1.0`` or ``HTTP/1.1``; another ``HTTP/d.d`` gets 505.
* ``Content-Length = 1*DIGIT``, once. ``Transfer-Encoding`` once, and only ``chunked`` as
  the final and only coding (another coding gets 501). Both together get 400: RFC 9112
  §6.1 lets a server reject such a message, and rejecting it is the only safe choice.
* HTTP/1.1 needs exactly one ``Host``.
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import RemoteProtocolError
from ._request import Request

__all__ = ["ChunkedReader", "Head", "Limits", "parse_head"]

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Any control character other than HTAB, CR and LF (CR and LF are checked separately).
_CTL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_VERSION_LIKE: Final = re.compile(r"HTTP/[0-9]\.[0-9]")
_VCHARS: Final = re.compile(r"[\x21-\x7e]+")
_ABSOLUTE_FORM: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]+(?:[/?].*)?")
_AUTHORITY_FORM: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+):[0-9]+")
_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
_DIGITS: Final = re.compile(r"[0-9]+")
_MAX_LEADING_CRLF: Final = 8
_MAX_CL_DIGITS: Final = 18

_COMMON_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)
_SPECIAL: Final = {
    "content-length": 1,
    "transfer-encoding": 2,
    "host": 3,
    "connection": 4,
    "expect": 5,
}


class Limits:
    """The size limits the codec enforces (taken from :class:`ServerConfig`)."""

    __slots__ = ("max_body_bytes", "max_header_bytes", "max_header_count", "max_request_line_bytes")

    def __init__(
        self,
        max_request_line_bytes: int = 8192,
        max_header_bytes: int = 32768,
        max_header_count: int = 100,
        max_body_bytes: int = 1 << 20,
    ) -> None:
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes


class Head:
    """A parsed request head and how its body is framed.

    Attributes:
        request: the :class:`Request` (its ``body`` is filled in once read).
        end: offset just past the head's final CRLF in the buffer.
        content_length: body length for Content-Length framing, else 0.
        chunked: whether the body is chunked.
        keep_alive: whether the client allows the connection to persist (RFC 9112 §9.3).
        expect_continue: the client sent ``Expect: 100-continue``.
    """

    __slots__ = ("chunked", "content_length", "end", "expect_continue", "keep_alive", "request", "upgrade")

    def __init__(
        self,
        request: Request,
        end: int,
        content_length: int,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        self.request = request
        self.end = end
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade


def _bad(message: str, status: int = 400) -> RemoteProtocolError:
    return RemoteProtocolError(message, status)


def _check_line_endings(data: bytes, partial: bool) -> None:
    """Every CR and LF must be part of a CRLF (a trailing CR may await its LF if partial)."""
    pairs = data.count(b"\r\n")
    if data.count(b"\n") != pairs:
        raise _bad("bare LF in request head")
    crs = data.count(b"\r")
    if crs != pairs and not (partial and crs == pairs + 1 and data.endswith(b"\r")):
        raise _bad("bare CR in request head")


def _parse_request_line(line: str, limits: Limits) -> tuple[str, str, str]:
    if len(line) > limits.max_request_line_bytes:
        raise _bad(f"request line exceeds {limits.max_request_line_bytes} bytes", 414)
    parts = line.split(" ")
    if len(parts) != 3:
        raise _bad("request line is not 'method SP target SP version'")
    method, target, version = parts
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        if _VERSION_LIKE.fullmatch(version):
            raise _bad(f"HTTP version {version} is not supported", 505)
        raise _bad("malformed HTTP version")
    if method not in _COMMON_METHODS and _TOKEN.fullmatch(method) is None:
        raise _bad("method is not a token")
    if _VCHARS.fullmatch(target) is None:
        raise _bad("request target is empty or holds invalid characters")
    first = target[0]
    if method == "CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise _bad("CONNECT requires an authority-form target (host:port)")
    elif first == "/":
        pass  # origin-form
    elif target == "*":
        if method != "OPTIONS":
            raise _bad("asterisk-form target is only allowed with OPTIONS")
    elif _ABSOLUTE_FORM.fullmatch(target) is None:
        raise _bad("request target is neither origin-form nor absolute-form")
    return method, target, version


def _incomplete(buf: bytes, start: int, limits: Limits) -> None:
    """Check what has arrived of a head so far; raise as soon as it cannot become valid."""
    size = len(buf) - start
    line_end = buf.find(b"\r\n", start, start + limits.max_request_line_bytes + 2)
    if line_end < 0:
        if size > limits.max_request_line_bytes:
            raise _bad(f"request line exceeds {limits.max_request_line_bytes} bytes", 414)
        _check_line_endings(buf[start:], True)
        return
    if size > limits.max_header_bytes:
        raise _bad(f"request head exceeds {limits.max_header_bytes} bytes", 431)
    data = buf[start:]
    _check_line_endings(data, True)
    if _CTL.search(data.decode("latin-1")) is not None:
        raise _bad("control character in request head")
    _parse_request_line(buf[start:line_end].decode("latin-1"), limits)
    if data.count(b"\r\n") > limits.max_header_count + 1:
        raise _bad(f"more than {limits.max_header_count} header fields", 431)


def parse_head(buf: bytes, start: int, limits: Limits, remote_addr: object = None) -> Head | None:
    """Parse the request head that begins at ``buf[start]``.

    Returns:
        ``None`` when the head is not complete yet (and nothing seen so far is invalid), or
        the :class:`Head`.

    Raises:
        RemoteProtocolError: the head is malformed or over a limit; ``status_hint`` is the
            status to answer with (400, 414, 417, 431, 501 or 505).
    """
    skipped = 0
    while buf.startswith(b"\r\n", start):  # RFC 9112 §2.2: ignore empty lines before a request
        start += 2
        skipped += 1
        if skipped > _MAX_LEADING_CRLF:
            raise _bad("too many empty lines before the request line")
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        if start < len(buf):
            _incomplete(buf, start, limits)
        return None
    if end + 4 - start > limits.max_header_bytes:
        raise _bad(f"request head exceeds {limits.max_header_bytes} bytes", 431)
    raw = buf[start:end]
    _check_line_endings(raw, False)
    text = raw.decode("latin-1")
    if _CTL.search(text) is not None:
        raise _bad("control character in request head")
    lines = text.split("\r\n")
    method, target, version = _parse_request_line(lines[0], limits)
    if len(lines) - 1 > limits.max_header_count:
        raise _bad(f"more than {limits.max_header_count} header fields", 431)

    headers: list[tuple[str, str]] = []
    append = headers.append
    special = _SPECIAL
    token = _TOKEN.fullmatch
    content_length = -1
    te: str | None = None
    hosts = 0
    connection = ""
    expect: str | None = None
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        if not colon or token(name) is None:
            if not colon:
                raise _bad("header line without a colon")
            raise _bad("header name is not a token (whitespace before the colon, or obs-fold)")
        value = value.strip(" \t")
        append((name, value))
        kind = special.get(name.lower())
        if kind is None:
            continue
        if kind == 1:
            if content_length >= 0:
                raise _bad("more than one Content-Length")
            if _DIGITS.fullmatch(value) is None:
                raise _bad("Content-Length is not a string of digits")
            if len(value) > _MAX_CL_DIGITS:
                raise _bad("Content-Length is too large", 413)
            content_length = int(value)
        elif kind == 2:
            if te is not None:
                raise _bad("more than one Transfer-Encoding")
            te = value
        elif kind == 3:
            hosts += 1
            if _HOST.fullmatch(value) is None:
                raise _bad("malformed Host")
        elif kind == 4:
            connection = value if not connection else f"{connection},{value}"
        elif expect is None:
            expect = value
        else:
            expect = f"{expect},{value}"

    http11 = version == "HTTP/1.1"
    if http11 and hosts != 1:
        raise _bad("HTTP/1.1 request needs exactly one Host header")
    if hosts > 1:
        raise _bad("more than one Host header")

    chunked = False
    if te is not None:
        if not http11:
            raise _bad("Transfer-Encoding in an HTTP/1.0 request")
        if content_length >= 0:
            raise _bad("both Transfer-Encoding and Content-Length")
        codings = [c.strip(" \t").lower() for c in te.split(",")]
        if any(_TOKEN.fullmatch(c) is None for c in codings):
            raise _bad("malformed Transfer-Encoding")
        if codings != ["chunked"]:
            raise _bad(f"Transfer-Encoding {te!r} is not supported (only chunked)", 501)
        chunked = True

    keep_alive = http11
    upgrade = False
    if connection:
        for tok in connection.split(","):
            tok = tok.strip(" \t").lower()
            if tok == "close":
                keep_alive = False
                break
            if tok == "keep-alive":
                keep_alive = True
            elif tok == "upgrade":
                upgrade = True
            elif not tok or _TOKEN.fullmatch(tok) is None:
                raise _bad("malformed Connection header")
        else:
            pass
    expect_continue = False
    if expect is not None:
        for item in expect.split(","):
            item = item.strip(" \t").lower()
            if item == "100-continue":
                expect_continue = http11
            elif item:
                raise _bad(f"unsupported expectation {item!r}", 417)

    request = Request(method, target, version, headers, b"", remote_addr)
    return Head(
        request,
        end + 4,
        max(content_length, 0),
        chunked,
        keep_alive,
        expect_continue,
        upgrade,
    )


_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]+)"
    rb"((?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb'|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*)'
    rb"[ \t]*"
)
_HEX_BYTES: Final = frozenset(b"0123456789abcdefABCDEF")
_MAX_CHUNK_LINE_BYTES: Final = 4096
_MAX_CHUNK_SIZE_DIGITS: Final = 16
_FORBIDDEN_TRAILERS: Final = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "content-type",
        "content-encoding",
        "content-range",
        "expect",
        "authorization",
        "cookie",
        "set-cookie",
    }
)


class ChunkedReader:
    """Decode a chunked body incrementally (RFC 9112 §7.1).

    ``feed(buf, pos)`` consumes what it can from ``buf[pos:]`` and returns the new offset;
    ``done`` turns true once the last chunk and the trailer section have been read. Chunk
    sizes are ``1*HEXDIG`` (at most 16 digits), extensions are validated and ignored, the
    CRLF after each chunk's data is checked exactly, and trailers are parsed like header
    fields, bounded, and discarded. The body is counted as it arrives against the limit.
    """

    __slots__ = (
        "_body",
        "_remaining",
        "_state",
        "_trailer_budget",
        "_trailer_fields",
        "done",
        "max_body_bytes",
    )

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self, max_body_bytes: int, max_trailer_bytes: int = 8192) -> None:
        self.max_body_bytes = max_body_bytes
        self._trailer_budget = max_trailer_bytes
        self._body = bytearray()
        self._state = self._SIZE
        self._remaining = 0
        self._trailer_fields = 0
        self.done = False

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def feed(self, buf: bytes, pos: int) -> int:
        """Consume from ``buf[pos:]``; return the offset of the first byte not consumed.

        Raises:
            RemoteProtocolError: malformed framing (400) or a body over the limit (413).
        """
        end = len(buf)
        while not self.done and pos < end:
            state = self._state
            if state == self._SIZE:
                eol = buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE_BYTES + 2)
                if eol < 0:
                    tail = buf[pos : pos + _MAX_CHUNK_LINE_BYTES + 1]
                    if len(tail) > _MAX_CHUNK_LINE_BYTES:
                        raise _bad("chunk size line too long")
                    if b"\n" in tail or b"\r" in tail[:-1]:
                        raise _bad("bare CR or LF in chunk size line")
                    if tail[0] not in _HEX_BYTES:
                        raise _bad("malformed chunk size line")
                    return pos
                m = _CHUNK_LINE.fullmatch(buf, pos, eol)
                if m is None:
                    raise _bad("malformed chunk size line")
                digits = m.group(1)
                if len(digits) > _MAX_CHUNK_SIZE_DIGITS:
                    raise _bad("chunk size too large")
                size = int(digits, 16)
                if len(self._body) + size > self.max_body_bytes:
                    raise _bad(f"request body exceeds {self.max_body_bytes} bytes", 413)
                pos = eol + 2
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._remaining = size
                    self._state = self._DATA
            elif state == self._DATA:
                take = min(self._remaining, end - pos)
                self._body += buf[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                if end - pos < 2:
                    if buf[pos : pos + 1] != b"\r":
                        raise _bad("chunk data not followed by CRLF")
                    return pos
                if buf[pos : pos + 2] != b"\r\n":
                    raise _bad("chunk data not followed by CRLF")
                pos += 2
                self._state = self._SIZE
            else:
                new = self._feed_trailer(buf, pos)
                if new == pos:
                    return pos
                pos = new
        return pos

    def _feed_trailer(self, buf: bytes, pos: int) -> int:
        eol = buf.find(b"\r\n", pos, pos + self._trailer_budget + 2)
        if eol < 0:
            tail = buf[pos : pos + self._trailer_budget + 1]
            if len(tail) > self._trailer_budget:
                raise _bad("trailer section too large", 431)
            if b"\n" in tail or b"\r" in tail[:-1]:
                raise _bad("bare CR or LF in trailer section")
            return pos
        if eol == pos:
            self.done = True
            return pos + 2
        line = buf[pos:eol].decode("latin-1")
        self._trailer_budget -= eol + 2 - pos
        self._trailer_fields += 1
        if self._trailer_budget < 0 or self._trailer_fields > 100:
            raise _bad("trailer section too large", 431)
        name, colon, value = line.partition(":")
        if not colon or _TOKEN.fullmatch(name) is None or _CTL.search(value) is not None or "\r" in value:
            raise _bad("malformed trailer field")
        if name.lower() in _FORBIDDEN_TRAILERS:
            raise _bad(f"{name} is not allowed in a trailer")
        return eol + 2
