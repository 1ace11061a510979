"""Chunked request bodies (RFC 9112 §7.1), decoded incrementally.

Bytes in, body out, no IO: :class:`ChunkedReader` consumes what it can of a buffer and
says where it stopped. It keeps the invariants of :mod:`._h1`: the earliest violation in
byte order wins whatever the split, limits are checked before the work they bound, and
error messages never quote the peer's bytes.
"""

from __future__ import annotations

import re
from typing import Final

from ._body import BodyBuffer
from ._h1 import _TOKEN, _TOKEN_BYTES, _bad, _defect_error, _first_defect

__all__ = ["ChunkedReader"]

# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
#   chunk-size = 1*HEXDIG
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-val = token / quoted-string
# No whitespace after the size or an extension: the grammar has none there.
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]+)"
    rb"(?:[ \t]*;[ \t]*" + _TOKEN_BYTES + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN_BYTES + rb"|"
    rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*'
)
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
_MAX_CHUNK_LINE_BYTES: Final = 4096
_MAX_CHUNK_SIZE_DIGITS: Final = 16
_MAX_TRAILER_FIELDS: Final = 100
# RFC 9110 §6.5.1: fields needed for framing, routing, authentication or payload handling
# must not be sent as trailers; a request that does is refused rather than half-obeyed.
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
        "proxy-authorization",
        "cookie",
        "set-cookie",
    }
)


def _check_chunk_line(buf: bytes, pos: int, eol: int) -> None:
    """Explain why the chunk line at ``pos`` does not match, or return if it is only incomplete.

    ``eol`` is where its CRLF starts, or -1 when none was found within the line limit.
    """
    limit = _MAX_CHUNK_LINE_BYTES
    if eol < 0:
        window = buf[pos : pos + limit + 1]
        if window[0] not in _HEX_DIGITS:
            raise _bad("chunk size line does not start with a hex digit")
        at = _first_defect(window, True)
        if at >= 0:
            raise _defect_error(window, at, "chunk size line")
        size = len(buf) - pos
        # The CRLF can still start at offset limit only if that byte is a CR.
        if size > limit + 1 or (size == limit + 1 and not window.endswith(b"\r")):
            raise _bad(f"chunk size line exceeds {limit} bytes")
        return
    line = buf[pos:eol]
    at = _first_defect(line, False)
    if at >= 0:
        raise _defect_error(line, at, "chunk size line")
    raise _bad("malformed chunk size line (1*HEXDIG, then only ;name[=value] extensions)")


class ChunkedReader:
    """Decode a chunked body incrementally (RFC 9112 §7.1).

    ``feed(buf, pos)`` consumes what it can from ``buf[pos:]`` and returns the new offset;
    ``done`` turns true once the last chunk and the trailer section have been read. Chunk
    sizes are ``1*HEXDIG``, chunk lines at most 4096 bytes, extensions are validated and
    ignored, the CRLF after each chunk's data is checked exactly, and trailers are parsed
    like header fields (at most ``max_trailer_bytes`` in all and 100 fields) and discarded.
    The body is counted against ``max_body_bytes`` before each chunk's data is read. As for
    the head, the same bytes give the same result however they are split.

    Args:
        max_body_bytes: largest decoded body (413 beyond).
        max_trailer_bytes: largest trailer section, final CRLF included (431 beyond).
        spool_bytes: decoded bytes kept in memory; beyond, the body goes to a temporary
            file (see :class:`~peregrine_core._body.BodyBuffer`).
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

    def __init__(
        self, max_body_bytes: int, max_trailer_bytes: int = 8192, spool_bytes: int | None = None
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self._trailer_budget = max_trailer_bytes
        self._body = BodyBuffer(max_body_bytes if spool_bytes is None else spool_bytes)
        self._state = self._SIZE
        self._remaining = 0
        self._trailer_fields = 0
        self.done = False

    @property
    def body(self) -> bytes:
        """The body decoded so far (all of it once ``done``)."""
        return self._body.getvalue()

    @property
    def buffer(self) -> BodyBuffer:
        """The decoded body, to hand to the request once ``done`` (or to close)."""
        return self._body

    def feed(self, buf: bytes, pos: int) -> int:
        """Consume from ``buf[pos:]``; return the offset of the first byte not consumed.

        Bytes not consumed must be offered again, followed by more, on the next call.

        Raises:
            RemoteProtocolError: malformed framing (400), a body over the limit (413) or
                a trailer section over the limit (431).
        """
        end = len(buf)
        while not self.done and pos < end:
            state = self._state
            if state == self._SIZE:
                eol = buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE_BYTES + 2)
                m = None if eol < 0 else _CHUNK_LINE.fullmatch(buf, pos, eol)
                if m is None:
                    _check_chunk_line(buf, pos, eol)  # raises unless only incomplete
                    return pos
                digits = m.group(1)
                if len(digits) > _MAX_CHUNK_SIZE_DIGITS:
                    digits = digits.lstrip(b"0") or b"0"
                    if len(digits) > _MAX_CHUNK_SIZE_DIGITS:
                        raise _bad(f"request body exceeds {self.max_body_bytes} bytes", 413)
                size = int(digits, 16)
                if len(self._body) + size > self.max_body_bytes:
                    raise _bad(f"request body exceeds {self.max_body_bytes} bytes", 413)
                pos = eol + 2
                if size:
                    self._remaining = size
                    self._state = self._DATA
                else:
                    self._state = self._TRAILER
            elif state == self._DATA:
                take = min(self._remaining, end - pos)
                self._body.write(memoryview(buf)[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                # RFC 9112 §7.1: chunk-data is followed by exactly CRLF (h11 CVE-2025-43859
                # dropped these two bytes unchecked).
                if end - pos < 2:
                    if buf[pos] != 0x0D:
                        raise _bad("chunk data not followed by CRLF")
                    return pos
                if buf[pos] != 0x0D or buf[pos + 1] != 0x0A:
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
        """Consume one trailer line (RFC 9112 §7.1.2), or the final empty line."""
        budget = self._trailer_budget
        eol = buf.find(b"\r\n", pos, pos + budget)  # the line and its CRLF fit the budget
        if eol < 0:
            window = buf[pos : pos + budget]
            at = _first_defect(window, True)
            if at >= 0:
                raise _defect_error(window, at, "trailer section")
            if len(buf) - pos >= budget:
                raise _bad("trailer section too large", 431)
            return pos
        self._trailer_budget = budget - (eol + 2 - pos)
        if eol == pos:
            self.done = True
            return pos + 2
        line = buf[pos:eol]
        at = _first_defect(line, False)
        if at >= 0:
            raise _defect_error(line, at, "trailer section")
        self._trailer_fields += 1
        if self._trailer_fields > _MAX_TRAILER_FIELDS:
            raise _bad(f"more than {_MAX_TRAILER_FIELDS} trailer fields", 431)
        name, colon, _ = line.decode("latin-1").partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise _bad("malformed trailer field")
        if name.lower() in _FORBIDDEN_TRAILERS:
            raise _bad(f"{name} is not allowed in a trailer")
        return eol + 2
