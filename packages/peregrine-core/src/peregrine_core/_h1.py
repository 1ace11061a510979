"""The HTTP/1.x request codec: bytes in, requests (or "need more", or an error) out.

It never touches a socket. :func:`parse_head` looks at a buffer from an offset and returns
``None`` until a whole head is there, then a :class:`Head`; body readers
(:class:`ChunkedReader`, and plain slicing for Content-Length) consume the bytes after it.
Every violation raises :class:`RemoteProtocolError` carrying the status to answer with.

Strategy: the work is done by C code (``find``, ``count``, ``translate``, ``split``,
``partition`` and a few anchored regular expressions in which no two quantifiers can
compete for the same character, so no input makes them backtrack more than linearly).
The codec keeps no state between calls: the worker offers the whole buffer again when
more bytes arrive. The one exception is an optional :class:`HeadMemo`, a bounded memory of
heads already accepted under the same limits: a head seen again is rebuilt from it without
being validated again. The answer is the same either way (the memo only ever holds what
passed every check, keyed by the exact bytes). A complete head free of bare CR/LF and
control characters (nearly every request) takes a fast path; anything else takes a careful
path that finds the earliest violation. Both apply the same rules.

The rules are RFC 9112's and RFC 9110's, applied strictly:

* "A recipient MUST NOT ... accept a bare CR" and we also refuse a bare LF as a line
  terminator (RFC 9112 §2.2 allows rejecting it): every CR and LF in a head, a chunk line
  or a trailer appears as CRLF.
* Method and field names are ``token`` s (RFC 9110 §5.6.2); field values hold no control
  character but HTAB (§5.5); only SP and HTAB are whitespace, never ``str.strip()``'s
  idea of it; "No whitespace is allowed between the field name and colon" (RFC 9112
  §5.1); obs-fold is rejected (§5.2 permits that with a 400).
* The version is exactly ``HTTP/1.0`` or ``HTTP/1.1``; another ``HTTP/d.d`` gets 505.
* The target is visible ASCII, without a fragment; origin-form, absolute-form (with a
  non-empty authority and no userinfo), asterisk-form for OPTIONS only, authority-form
  for CONNECT only (RFC 9112 §3.2). Unknown methods are the handler's business.
* ``Content-Length = 1*DIGIT``, once. ``Transfer-Encoding`` once, ``chunked`` exactly once
  as the final and only coding; other well-formed codings get 501, a malformed list (an
  empty element included, although RFC 9110 §5.6.1 would skip it) or ``chunked`` not
  final 400. Both headers together get 400: RFC 9112 §6.1 lets a server reject such a
  message, and rejecting it is the only safe choice.
* HTTP/1.1 needs exactly one ``Host``, and no request may have two (RFC 9112 §3.2).
* Chunk sizes are ``1*HEXDIG``, chunk extensions follow their grammar, chunk data ends
  with exactly CRLF, and trailers are header fields, bounded, without the fields that
  frame, route or authenticate a message (RFC 9110 §6.5.1).

Invariants:

* Soundness: a prefix of a valid request is never rejected; ``None`` means "not yet".
* Same input, same answer, however it is split: an error is raised for the earliest
  violation in byte order among those that can be seen before the head is complete (bare
  CR/LF, control characters, the request line, the size and count limits); the rest
  (field syntax and semantics) is checked only on the complete head, in a fixed order.
  So feeding a request whole, byte by byte or in random pieces yields the same status.
  The same holds for chunk lines and trailers (``_chunked.ChunkedReader``).
* Limits are checked before the work they bound: the request line, the head, a chunk
  line and the trailers are searched only within their limits, whatever the buffer holds.
* Error messages never quote the peer's bytes (the server sends them back in the body).
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

from ._errors import RemoteProtocolError
from ._request import Request

__all__ = ["Head", "HeadMemo", "Limits", "parse_head"]

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_BYTES: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Control characters other than HTAB, CR and LF (those are checked as line endings).
# Bytes that appear in a head only inside a CRLF (CR, LF) or never (the other controls but
# HTAB): deleting them from a clean head removes exactly two bytes per CRLF.
_LINE_AND_CTL_BYTES: Final = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
# The first byte that can never belong to a head: a bare CR, a bare LF or a control.
_DEFECT: Final = re.compile(rb"\r(?!\n)|(?<!\r)\n|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_VERSION_LIKE: Final = re.compile(r"HTTP/[0-9]\.[0-9]")
_VCHARS: Final = re.compile(r"[\x21-\x7e]+")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_AUTHORITY_END: Final = re.compile(r"[/?]")
# RFC 9110 §4.2.3 / RFC 3986 §3.2.2: IP-literal or reg-name, then an optional port.
# (No userinfo: RFC 9110 §4.2.4 tells a recipient to treat its presence as an error.)
_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
_AUTHORITY_FORM: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+):[0-9]+")
_DIGITS: Final = re.compile(r"[0-9]+")
_MAX_LEADING_CRLF: Final = 8
_MAX_CONTENT_LENGTH_DIGITS: Final = 18

_COMMON_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)
_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_HOST_FIELD: Final = 3
_CONNECTION: Final = 4
_EXPECT: Final = 5
_SPECIAL: Final = {
    "content-length": _CONTENT_LENGTH,
    "transfer-encoding": _TRANSFER_ENCODING,
    "host": _HOST_FIELD,
    "connection": _CONNECTION,
    "expect": _EXPECT,
}


class Limits:
    """The size limits the codec enforces (taken from :class:`ServerConfig`).

    Attributes:
        max_request_line_bytes: longest request line, CRLF excluded (414 beyond).
        max_header_bytes: largest head, request line and final CRLF included (431 beyond).
        max_header_count: most header fields (431 beyond).
        max_body_bytes: largest body; the server answers 413 beyond (before reading a
            Content-Length body, as soon as a chunk would cross it for a chunked one).
        body_buffer_bytes: largest body kept in memory while it arrives; a larger one goes
            to a temporary file.
    """

    __slots__ = (
        "body_buffer_bytes",
        "max_body_bytes",
        "max_header_bytes",
        "max_header_count",
        "max_request_line_bytes",
    )

    def __init__(
        self,
        max_request_line_bytes: int = 8192,
        max_header_bytes: int = 32768,
        max_header_count: int = 100,
        max_body_bytes: int = 1 << 20,
        body_buffer_bytes: int = 1 << 20,
    ) -> None:
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes
        self.body_buffer_bytes = body_buffer_bytes


# method, target, version, headers, content_length, chunked, keep_alive, expect_continue, upgrade
_Parsed = tuple[str, str, str, tuple[tuple[str, str], ...], int, bool, bool, bool, bool]
_K = TypeVar("_K")
_V = TypeVar("_V")
MEMO_ENTRIES: Final = 128
MEMO_HEAD_BYTES: Final = 3072


class HeadMemo:
    """The heads a worker has accepted lately, with what they parsed to, so that a head seen
    again (a keep-alive client's next request, a health check) skips validation.

    Parsing is a pure function of the bytes and the :class:`Limits`, so a memo is only ever
    used with the one ``Limits`` object it was created for. Only accepted input is kept,
    never an error; a key is a head's exact bytes, from the request line to the empty line
    that ends it (the version is in them). Bounded: at most :data:`MEMO_ENTRIES` heads of up
    to :data:`MEMO_HEAD_BYTES`, the oldest dropped first: 0.8 MiB filled with heads of one
    long field, 2.2 MiB at worst (heads of a hundred tiny fields, each a few objects).
    """

    __slots__ = ("heads", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.heads: dict[bytes, _Parsed] = {}

    def _remember(self, key: bytes, head: Head) -> None:
        req = head.request
        _put_bounded(
            self.heads,
            key,
            (
                req.method,
                req.target,
                req.version,
                tuple(req.headers),
                head.content_length,
                head.chunked,
                head.keep_alive,
                head.expect_continue,
                head.upgrade,
            ),
        )


def _put_bounded(store: dict[_K, _V], key: _K, value: _V) -> None:
    """Insert into a memo of at most :data:`MEMO_ENTRIES`, dropping the oldest entry first."""
    if len(store) >= MEMO_ENTRIES:
        del store[next(iter(store))]
    store[key] = value


class Head:
    """A parsed request head and how its body is framed.

    Attributes:
        request: the :class:`Request` (its ``body`` is filled in once read).
        end: offset just past the head's final CRLF in the buffer.
        content_length: body length for Content-Length framing, else 0.
        chunked: whether the body is chunked.
        keep_alive: whether the client allows the connection to persist (RFC 9112 §9.3).
        expect_continue: the client sent ``Expect: 100-continue`` in an HTTP/1.1 request.
        upgrade: ``Connection`` lists ``upgrade``.
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
    # Messages never quote the peer's bytes: the server sends them back in the error body.
    return RemoteProtocolError(message, status)


def _is_clean(data: bytes) -> bool:
    """Whether every CR and LF in ``data`` is part of a CRLF and no other control but HTAB
    is there (two C-speed passes: a CRLF count and a deletion)."""
    return len(data) - len(data.translate(None, _LINE_AND_CTL_BYTES)) == 2 * data.count(b"\r\n")


def _first_defect(data: bytes, partial: bool) -> int:
    """Return the offset of the first bare CR, bare LF or control character, or -1.

    With ``partial``, a CR that ends ``data`` may still be followed by its LF: it is not a
    defect yet. The common case (no defect) costs a few C-speed passes over ``data``.
    """
    if _is_clean(data) or (partial and data.endswith(b"\r") and _is_clean(data[:-1])):
        return -1
    m = _DEFECT.search(data)
    if m is None:  # pragma: no cover - _is_clean said there is one
        return -1
    at = m.start()
    if partial and at == len(data) - 1 and data[at] == 0x0D:
        return -1  # only a CR awaiting its LF
    return at


def _defect_error(data: bytes, at: int, where: str) -> RemoteProtocolError:
    byte = data[at]
    if byte == 0x0A:
        return _bad(f"bare LF in {where} (lines must end with CRLF)")
    if byte == 0x0D:
        return _bad(f"bare CR in {where}")
    return _bad(f"control character 0x{byte:02x} in {where}")


def _check_field_lines(section: bytes, partial: bool, max_count: int, where: str) -> None:
    """Check what can be checked of (part of) a field section before it is complete.

    ``section`` starts at a line start. Raises for its first bare CR/LF or control
    character, unless more than ``max_count`` complete lines came before it (431).
    """
    pairs = section.count(b"\r\n")
    clean = len(section) - len(section.translate(None, _LINE_AND_CTL_BYTES)) == 2 * pairs
    if clean or (partial and section.endswith(b"\r") and _is_clean(section[:-1])):
        if pairs > max_count:
            raise _bad(f"more than {max_count} {where} fields", 431)
        return
    at = _first_defect(section, partial)
    if section.count(b"\r\n", 0, at) > max_count:
        raise _bad(f"more than {max_count} {where} fields", 431)
    raise _defect_error(section, at, where)


def _check_partial_request_line(buf: bytes, start: int, max_line: int) -> None:
    """Check the start of a request line whose CRLF has not arrived (within the limit)."""
    window = buf[start : start + max_line + 1]
    at = _first_defect(window, True)
    if at >= 0:
        raise _defect_error(window, at, "request line")
    size = len(buf) - start
    # The CRLF can still start at offset max_line only if that byte is a CR.
    if size > max_line + 1 or (size == max_line + 1 and not window.endswith(b"\r")):
        raise _bad(f"request line exceeds {max_line} bytes", 414)


def _parse_request_line(line: str) -> tuple[str, str, str]:
    """Parse ``method SP request-target SP HTTP-version`` (RFC 9112 §3), CRLF excluded.

    ``line`` holds no bare CR/LF and no control character (checked by the caller).
    """
    parts = line.split(" ")
    if len(parts) != 3:
        raise _bad("request line is not 'method SP target SP version' (single spaces)")
    method, target, version = parts
    if method not in _COMMON_METHODS and _TOKEN.fullmatch(method) is None:
        raise _bad("method is not a token")
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        if _VERSION_LIKE.fullmatch(version):
            raise _bad(f"HTTP version {version} is not supported", 505)
        raise _bad("malformed HTTP version")
    _check_target(method, target)
    return method, target, version


def _check_target(method: str, target: str) -> None:
    """RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT) or ``*`` (OPTIONS)."""
    if _VCHARS.fullmatch(target) is None:
        raise _bad("request target is empty or holds invalid characters")
    if "#" in target:
        # RFC 9112 §3.2: no form of request-target contains a fragment.
        raise _bad("request target contains a fragment ('#')")
    if method == "CONNECT":
        # §3.2.3: "only used for CONNECT requests"; and CONNECT uses nothing else.
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise _bad("CONNECT requires an authority-form target (host:port)")
        return
    first = target[0]
    if first == "/":
        return  # origin-form
    if target == "*":
        # §3.2.4: "only used for a server-wide OPTIONS request".
        if method != "OPTIONS":
            raise _bad("asterisk-form target is only allowed with OPTIONS")
        return
    # §3.2.2 absolute-form: scheme "://" authority [path-abempty] ["?" query]
    scheme, sep, rest = target.partition("://")
    if not sep or _SCHEME.fullmatch(scheme) is None:
        raise _bad("request target is neither origin-form nor absolute-form")
    m = _AUTHORITY_END.search(rest)
    authority = rest if m is None else rest[: m.start()]
    if not authority or _HOST.fullmatch(authority) is None:
        raise _bad("absolute-form target has an empty or invalid authority")


def parse_head(
    buf: bytes,
    start: int,
    limits: Limits,
    remote_addr: object = None,
    memo: HeadMemo | None = None,
    received_at: float | None = None,
) -> Head | None:
    """Parse the request head that begins at ``buf[start]``.

    Up to eight empty lines before the request line are skipped (RFC 9112 §2.2).

    Args:
        buf: the bytes received (a request may continue past its end).
        start: the offset where the head begins.
        limits: the size limits to enforce.
        remote_addr: stored in the :class:`Request`.
        memo: a :class:`HeadMemo` created for ``limits``: a remembered head is rebuilt
            without validating it again (the answer is the same either way); an accepted
            head is remembered.
        received_at: stored in the :class:`Request` (now when ``None``).

    Returns:
        ``None`` when the head is not complete yet and nothing seen so far is invalid,
        otherwise the :class:`Head`.

    Raises:
        RemoteProtocolError: the peer sent a malformed head or one over a limit;
            ``status_hint`` is the status to answer with (400, 413, 414, 417, 431, 501
            or 505). The same bytes give the same status however they are split.
    """
    end = buf.find(b"\r\n\r\n", start, start + limits.max_header_bytes)
    if memo is not None:
        if memo.limits is not limits:
            raise ValueError("a HeadMemo is used only with the Limits it was made for")
        # No key begins with an empty line: a head behind skipped ones misses here and is
        # parsed below (a slice from the first CRLF can never equal an accepted head).
        known = memo.heads.get(buf[start : end + 4]) if 0 <= end <= start + MEMO_HEAD_BYTES - 4 else None
        if known is not None:
            method, target, version, headers, length, chunked, keep_alive, expect_continue, upgrade = known
            return Head(
                Request(method, target, version, list(headers), b"", remote_addr, received_at),
                end + 4,
                length,
                chunked,
                keep_alive,
                expect_continue,
                upgrade,
            )
    if buf.startswith(b"\r\n", start):
        skipped = 0
        while buf.startswith(b"\r\n", start):
            start += 2
            skipped += 1
            if skipped > _MAX_LEADING_CRLF:
                raise _bad("too many empty lines before the request line")
        end = buf.find(b"\r\n\r\n", start, start + limits.max_header_bytes)
    # Fast path: a complete head within the limit, free of bare CR/LF and controls, and
    # within the line and count limits gets exactly the checks of the careful path below,
    # minus the search for the earliest defect (there is none).
    if end >= 0:
        raw = buf[start:end]  # the request line and the field lines, CRLF-separated
        pairs = raw.count(b"\r\n")
        if (
            pairs <= limits.max_header_count
            and len(raw) - len(raw.translate(None, _LINE_AND_CTL_BYTES)) == 2 * pairs
        ):
            lines = raw.decode("latin-1").split("\r\n")
            line = lines[0]
            if len(line) <= limits.max_request_line_bytes:
                method, target, version = _parse_request_line(line)
                head = _build_head(method, target, version, lines, end + 4, remote_addr, received_at)
                if memo is not None and end + 4 - start <= MEMO_HEAD_BYTES:
                    memo._remember(buf[start : end + 4], head)
                return head
    return _parse_head_carefully(buf, start, end, limits, remote_addr, received_at)


def _parse_head_carefully(
    buf: bytes, start: int, end: int, limits: Limits, remote_addr: object, received_at: float | None
) -> Head | None:
    """Parse a head that is incomplete or has a defect, reporting the earliest violation.

    ``end`` is where the head's final CRLF CRLF starts, or -1 when there is none within
    the head limit (the first CRLF CRLF after ``start`` is also the first after the
    request line's CRLF).
    """
    if start >= len(buf):
        return None
    max_line = limits.max_request_line_bytes
    line_end = buf.find(b"\r\n", start, start + max_line + 2)
    if line_end < 0:
        _check_partial_request_line(buf, start, max_line)
        return None
    raw_line = buf[start:line_end]
    at = _first_defect(raw_line, False)
    if at >= 0:
        raise _defect_error(raw_line, at, "request line")
    method, target, version = _parse_request_line(raw_line.decode("latin-1"))

    max_count = limits.max_header_count
    head_limit = start + limits.max_header_bytes
    fields_start = line_end + 2
    if end < 0:
        _check_field_lines(buf[fields_start:head_limit], True, max_count, "header")
        if len(buf) >= head_limit:
            raise _bad(f"request head exceeds {limits.max_header_bytes} bytes", 431)
        return None
    section = buf[fields_start : end + 2]  # every field line with its CRLF; b"" if none
    _check_field_lines(section, False, max_count, "header")
    lines = ["", *section[:-2].decode("latin-1").split("\r\n")] if section else [""]
    return _build_head(method, target, version, lines, end + 4, remote_addr, received_at)


def _build_head(
    method: str,
    target: str,
    version: str,
    lines: list[str],
    end: int,
    remote_addr: object,
    received_at: float | None,
) -> Head:
    """Parse the field lines ``lines[1:]`` (free of CR, LF and controls) and apply the
    framing and connection rules of RFC 9112 §3.2, §6, §9 and RFC 9110 §7.2, §10.1."""
    headers: list[tuple[str, str]] = []
    append = headers.append
    token = _TOKEN.fullmatch
    special = _SPECIAL
    content_length = -1
    te: str | None = None
    hosts = 0
    connection: list[str] = []
    expect: list[str] = []
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        if not colon:
            raise _bad("header line without a colon (or obs-fold)")
        if token(name) is None:
            raise _bad("header name is not a token (whitespace before the colon, or obs-fold)")
        # RFC 9110 §5.5: OWS around the value is SP / HTAB only.
        value = value.strip(" \t")
        append((name, value))
        kind = special.get(name.lower())
        if kind is None:
            continue
        if kind == _CONTENT_LENGTH:
            # RFC 9110 §8.6: Content-Length = 1*DIGIT. No sign, no list, no second field.
            if content_length >= 0:
                raise _bad("more than one Content-Length")
            if _DIGITS.fullmatch(value) is None:
                raise _bad("Content-Length is not a string of digits")
            if len(value.lstrip("0")) > _MAX_CONTENT_LENGTH_DIGITS:
                raise _bad("Content-Length is too large", 413)
            content_length = int(value)
        elif kind == _TRANSFER_ENCODING:
            if te is not None:
                raise _bad("more than one Transfer-Encoding")
            te = value
        elif kind == _HOST_FIELD:
            hosts += 1
            if hosts > 1:
                raise _bad("more than one Host header")
            if _HOST.fullmatch(value) is None:
                raise _bad("malformed Host")
        elif kind == _CONNECTION:
            connection.append(value)
        else:
            expect.append(value)

    http11 = version == "HTTP/1.1"
    if http11 and hosts == 0:
        # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
        # HTTP/1.1 request message that lacks a Host header field".
        raise _bad("HTTP/1.1 request without a Host header")

    chunked = False
    if te is not None:
        chunked = _check_transfer_encoding(te, http11, content_length >= 0)

    # RFC 9112 §9.3: HTTP/1.1 persists unless "close" is listed; HTTP/1.0 only if
    # "keep-alive" is. RFC 9110 §5.6.1: empty list elements are ignored.
    keep_alive = http11
    upgrade = False
    close = False
    for value in connection:
        for item in value.split(","):
            tok = item.strip(" \t").lower()
            if tok == "close":
                close = True
            elif tok == "keep-alive":
                keep_alive = True
            elif tok == "upgrade":
                upgrade = True
            elif tok and _TOKEN.fullmatch(tok) is None:
                raise _bad("malformed Connection header")
    if close:
        keep_alive = False

    expect_continue = False
    for value in expect:
        for item in value.split(","):
            item = item.strip(" \t").lower()
            if item == "100-continue":
                # RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
                # HTTP/1.0 request MUST ignore that expectation."
                expect_continue = http11
            elif item:
                raise _bad("unsupported expectation (only 100-continue is)", 417)

    request = Request(method, target, version, headers, b"", remote_addr, received_at)
    return Head(request, end, max(content_length, 0), chunked, keep_alive, expect_continue, upgrade)


def _check_transfer_encoding(te: str, http11: bool, has_content_length: bool) -> bool:
    """Validate the one Transfer-Encoding field; True when the body is chunked."""
    if not http11:
        # RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        # Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        raise _bad("Transfer-Encoding in an HTTP/1.0 request")
    if has_content_length:
        # RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length
        # and Transfer-Encoding". We always do.
        raise _bad("both Transfer-Encoding and Content-Length")
    # A list of codings. Unlike other lists, empty elements are refused: on the one field
    # that decides framing, every ambiguity is a way to disagree with a proxy.
    codings = [c.strip(" \t").lower() for c in te.split(",")]
    if any(_TOKEN.fullmatch(c) is None for c in codings):
        raise _bad("malformed Transfer-Encoding")
    if codings == ["chunked"]:
        return True
    if "chunked" in codings:
        if codings[-1] != "chunked" or codings.count("chunked") > 1:
            # RFC 9112 §6.3: chunked not final -> "MUST respond with the 400"; §7: "A sender
            # MUST NOT apply the chunked coding more than once".
            raise _bad("Transfer-Encoding: chunked must be the final coding, applied once")
    # RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
    # does not understand SHOULD respond with 501 (Not Implemented)."
    raise _bad("unsupported Transfer-Encoding (only chunked is)", 501)
