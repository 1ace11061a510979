"""``Request``: one parsed HTTP request, as the handler sees it.

Headers are kept exactly as received, in order, as ``(name, value)`` string pairs (decoded
as ISO-8859-1, so every byte survives). Names are compared case-insensitively only when a
lookup asks for one; the lower-cased index is built on the first lookup and never before.
The query is parsed only when :meth:`Request.parse_query` is called. A ``Request`` belongs to
one request: nothing of an earlier request is ever visible through it.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator, KeysView
from typing import IO, Protocol

__all__ = ["Request"]


class _Where(Protocol):
    """Where a request arrived (the connection's transport)."""

    @property
    def local_address(self) -> object: ...

    @property
    def scheme(self) -> str: ...


class Request:
    """An HTTP request received by the server.

    Attributes:
        method: the method token exactly as sent (``GET``, ``POST``, ``PURGE``...).
        target: the raw request-target (path and query, or an absolute URI, ``*``, or
            ``host:port`` for CONNECT), not percent-decoded.
        version: ``"HTTP/1.0"`` or ``"HTTP/1.1"``.
        headers: the header fields as ``(name, value)`` pairs in the order received.
        remote_addr: the peer's address as returned by ``accept()``.
        received_at: a :func:`time.monotonic` time by which the request had been received
            in full (taken after the read that completed it; the time of construction when
            not given). Whatever is observed after it is at least as new as the request,
            so a check made after one request's ``received_at`` also answers for any other
            request whose ``received_at`` is not later: the server reads every ready
            connection before it answers any, so the requests of one pass share it.
    """

    __slots__ = (
        "_body",
        "_body_file",
        "_index",
        "_path_end",
        "_where",
        "headers",
        "method",
        "received_at",
        "remote_addr",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        remote_addr: object = None,
        received_at: float | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self._body: bytes | None = body  # None: the body is in _body_file (spooled)
        self._body_file: IO[bytes] | None = None
        self._where: _Where | None = None
        self.remote_addr = remote_addr
        self._index: dict[str, list[str]] | None = None
        self._path_end = -2
        self.received_at = time.monotonic() if received_at is None else received_at

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} {self.version}>"

    # --- body -----------------------------------------------------------------------------

    @property
    def body(self) -> bytes:
        """The whole request body (``b""`` when there is none); chunked bodies are decoded.

        A body larger than ``ServerConfig.body_buffer_bytes`` arrived into a temporary
        file: reading this attribute then loads all of it into memory. Prefer
        :attr:`body_file`, which works for every body.
        """
        body = self._body
        if body is not None:
            return body
        file = self._body_file
        assert file is not None
        at = file.tell()
        try:
            file.seek(0)
            return file.read()
        finally:
            file.seek(at)

    @body.setter
    def body(self, data: bytes) -> None:
        self._discard_file()
        self._body = data

    @property
    def body_file(self) -> IO[bytes]:
        """The body as a readable binary file, positioned at its start on first access.

        The same object on every access; it holds exactly the body (reading past its end
        gives ``b""``). The server closes it when the response is done.
        """
        file = self._body_file
        if file is None:
            file = self._body_file = io.BytesIO(self._body or b"")
        return file

    @property
    def body_length(self) -> int:
        """The body's length in bytes (the whole body is received before the handler runs)."""
        body = self._body
        if body is not None:
            return len(body)
        file = self._body_file
        assert file is not None  # a spooled body's temporary file, flushed when complete
        return os.fstat(file.fileno()).st_size

    def _spool(self, file: IO[bytes]) -> None:
        """The body is all of ``file`` (an anonymous temporary file, flushed)."""
        self._discard_file()
        file.seek(0)
        self._body = None
        self._body_file = file

    def _discard_file(self) -> None:
        """Close the body's file (a spooled body's temporary file goes with it)."""
        file, self._body_file = self._body_file, None
        if file is not None:
            if self._body is None:
                self._body = b""
            try:
                file.close()
            except OSError:  # pragma: no cover - closing an anonymous temporary file
                pass

    # --- where it arrived ------------------------------------------------------------------

    @property
    def local_addr(self) -> object:
        """The local address the connection arrived on (``socket.getsockname()``), or
        ``None`` when unknown (a request built by hand)."""
        where = self._where
        return None if where is None else where.local_address

    @property
    def scheme(self) -> str:
        """``"http"`` (``"https"`` over TLS)."""
        where = self._where
        return "http" if where is None else where.scheme

    # --- target ---------------------------------------------------------------------------

    def _split(self) -> int:
        end = self._path_end
        if end == -2:
            end = self._path_end = self.target.find("?")
        return end

    @property
    def path(self) -> str:
        """The target up to the first ``?`` (the whole target when there is none), raw.

        For an absolute-form target (``http://host/p?q``) this is the path part (``/p``).
        """
        end = self._split()
        target = self.target
        path = target if end < 0 else target[:end]
        if not path.startswith("/") and "://" in path:
            slash = path.find("/", path.find("://") + 3)
            return "/" if slash < 0 else path[slash:]
        return path

    @property
    def query(self) -> str:
        """The raw query string after the first ``?``, or ``""`` when there is none."""
        end = self._split()
        return "" if end < 0 else self.target[end + 1 :]

    @property
    def has_query(self) -> bool:
        """Whether the target contains a ``?`` (an empty query still counts)."""
        return self._split() >= 0

    def parse_query(self) -> dict[str, str] | None:
        """Parse the query string into a mapping.

        The contract of the original server, made safe: ``None`` when the target has no
        ``?`` or the query is malformed (a non-empty pair without ``=``, a bad ``%``
        escape, or bytes that are not UTF-8 once decoded); otherwise a new dict in which a
        repeated key keeps its last value. Keys and values are decoded as
        ``application/x-www-form-urlencoded`` (``%XX`` and ``+`` for space). Empty pairs
        (``a=1&&b=2``, a trailing ``&``) are skipped. Each call parses afresh.
        """
        end = self._split()
        if end < 0:
            return None
        result: dict[str, str] = {}
        query = self.target[end + 1 :]
        if not query:
            return result
        for pair in query.split("&"):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq:
                return None
            k = _decode(key)
            v = _decode(value)
            if k is None or v is None:
                return None
            result[k] = v
        return result

    # --- headers --------------------------------------------------------------------------

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self.headers:
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return index

    def get_header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (any case), or ``default``."""
        index = self._index
        if index is None:
            index = self._lookup()
        values = index.get(name.lower())
        return values[0] if values else default

    def header_names(self) -> KeysView[str]:
        """The names of the header fields present, lower-cased, as a set-like view.

        ``{"range", "if-none-match"}.isdisjoint(req.header_names())`` asks whether any of
        several fields is present with one lookup.
        """
        index = self._index
        if index is None:
            index = self._lookup()
        return index.keys()

    def get_headers(self, name: str) -> list[str]:
        """Return every value of header ``name`` (any case), in the order received."""
        return list(self._lookup().get(name.lower(), ()))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Iterate over the ``(name, value)`` header pairs in the order received."""
        return iter(self.headers)


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode(text: str) -> str | None:
    """Form-decode one key or value; ``None`` for a bad escape or invalid UTF-8."""
    if "%" in text:
        if _BAD_ESCAPE.search(text) is not None:
            return None
        from urllib.parse import unquote_plus  # only when a query is decoded

        try:
            return unquote_plus(text, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
    return text.replace("+", " ") if "+" in text else text
