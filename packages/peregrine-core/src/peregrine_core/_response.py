"""``Response``: what a handler fills in, and what the server frames.

The handler sets a status, adds headers and sets a body (bytes, a ``str`` encoded as UTF-8,
or a file region that the server sends with ``os.sendfile``). The server owns the framing
headers: it adds ``Content-Length`` (never on 1xx, 204 or 304), ``Date`` (unless the handler
set one) and ``Connection``/``Keep-Alive``; a handler cannot set ``Content-Length``,
``Transfer-Encoding``, ``Connection`` or ``Keep-Alive`` itself. A handler may add
``Upgrade`` (RFC 9110 §15.5.22: a 426 must carry it); the server then lists ``upgrade`` in
``Connection`` (§7.8). Switching protocols is :meth:`Response.upgrade`'s business.

Header names must be RFC 9110 tokens and values may not contain CR, LF, NUL or any other
control character but HTAB: response splitting is impossible by construction.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from ._errors import LocalProtocolError
from ._stream import BodyWriter, StreamState, create, state_of

__all__ = ["FileBody", "HeaderBlock", "Response"]

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_MANAGED: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_BODY_TYPES: Final = (bytes, bytearray, memoryview)
# Header lines already checked, by (name, value): handlers add the same few fields again and
# again. Ordinary fields only (not Date or Upgrade, which set flags). Bounded; a plain dict
# whose operations are atomic, shared by every thread.
_CHECKED: dict[tuple[str, str], str] = {}
_CHECKED_MAX_ENTRIES: Final = 256
_CHECKED_MAX_CHARS: Final = 512


class _FileLike(Protocol):
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class FileBody:
    """A region of a file, sent with ``os.sendfile`` (or read in pieces where absent).

    Either an open ``file``, or an ``opener`` that the server calls when the region's turn
    to be sent comes (so a response queued behind others holds no file descriptor). The
    server owns the file once it is handed over or opened and closes it when the response
    is done, sent or not.
    """

    __slots__ = ("count", "file", "offset", "opener")

    def __init__(
        self,
        file: _FileLike | None,
        offset: int,
        count: int,
        opener: Callable[[], _FileLike] | None = None,
    ) -> None:
        if file is None and opener is None:
            raise LocalProtocolError("a FileBody needs a file or an opener")
        self.file = file
        self.offset = offset
        self.count = count
        self.opener = opener

    def open(self) -> _FileLike:
        """The open file, opening it now if it was given as an opener.

        Raises:
            OSError: from the opener (the file is gone, or no descriptor is left).
        """
        file = self.file
        if file is None:
            assert self.opener is not None
            file = self.file = self.opener()
            self.opener = None
        return file

    def close(self) -> None:
        """Close the file if it is open (never raises); an unopened opener is dropped."""
        file, self.file, self.opener = self.file, None, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


class HeaderBlock:
    """Header fields checked once, to be added to many responses with
    :meth:`Response.add_headers`.

    Every field goes through the same checks as :meth:`Response.add_header` when the block
    is built; adding the block to a response then costs a list extension. Useful where the
    same fields recur, such as a static file's ``Content-Type``, ``ETag`` and
    ``Last-Modified``.

    Raises:
        LocalProtocolError: a field that :meth:`Response.add_header` would refuse.
    """

    __slots__ = ("_has_date", "_has_upgrade", "_lines")

    def __init__(self, fields: Iterable[tuple[str, str | int]]) -> None:
        checked = Response()
        for name, value in fields:
            checked.add_header(name, value)
        self._lines = tuple(checked._lines)
        self._has_date = checked._has_date
        self._has_upgrade = checked._has_upgrade

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The fields as ``(name, value)`` pairs, in order."""
        return [(n, v[:-2]) for n, _, v in (line.partition(": ") for line in self._lines)]


class Response:
    """The response a handler builds for one request.

    Attributes:
        status: the status code (an ``int`` or a :class:`~peregrine_core.Status`), 200 by
            default; must be within 100..599.
        body: the body bytes (empty by default).
        file: a :class:`FileBody` set by :meth:`set_file`, sent after the head instead of
            ``body``.
        close_connection: set to ``True`` to close the connection after this response.
    """

    __slots__ = (
        "_has_date",
        "_has_upgrade",
        "_lines",
        "_status",
        "_streaming",
        "body",
        "close_connection",
        "file",
        "upgrade_protocol",
        "upgrade_state",
    )

    def __init__(self) -> None:
        self._status = 200
        self._lines: list[str] = []
        self._has_date = False
        self.body: bytes | bytearray | memoryview = b""
        self.file: FileBody | None = None
        self.close_connection = False
        self.upgrade_protocol: str | None = None
        self.upgrade_state: object = None
        self._has_upgrade = False
        self._streaming: StreamState | None = None

    def __repr__(self) -> str:
        return f"<Response {self._status}>"

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, code: int) -> None:
        if type(code) is int and 100 <= code <= 599:
            self._status = code
            return
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise LocalProtocolError(f"status must be an integer in 100..599, not {code!r}")
        self._status = int(code)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers added so far, as ``(name, value)`` pairs in order."""
        pairs = []
        for line in self._lines:
            name, _, value = line[:-2].partition(": ")
            pairs.append((name, value))
        return pairs

    def add_header(self, name: str, value: str | int) -> None:
        """Append a header field; a repeated name sends the field several times.

        Args:
            name: an RFC 9110 token.
            value: the value; an ``int`` is formatted in decimal.

        Raises:
            LocalProtocolError (a ``ValueError``): the name is not a token, the value holds
                CR, LF, NUL, another control character or a character outside ISO-8859-1,
                or the header is one the server manages (``Content-Length``...).
        """
        if type(name) is str and type(value) is str:
            line = _CHECKED.get((name, value))
            if line is not None:
                self._lines.append(line)
                return
        if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
            raise LocalProtocolError(f"header name {name!r} is not an HTTP token")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise LocalProtocolError(f"header {name} value must be str or int, not {type(value).__name__}")
        elif _BAD_VALUE.search(value) is not None:
            raise LocalProtocolError(
                f"header {name} value {value!r} contains a control character or a non-latin-1 character"
            )
        lower = name.lower()
        if lower in _MANAGED:
            raise LocalProtocolError(
                f"the {name} header is set by the server (use set_body/set_file, close_connection "
                "or Response.upgrade instead)"
            )
        line = f"{name}: {value}\r\n"
        if lower == "date":
            self._has_date = True
        elif lower == "upgrade":
            if self.upgrade_protocol is not None:
                raise LocalProtocolError("upgrade() already sets the Upgrade header of this response")
            # RFC 9110 §7.8: "A sender of Upgrade MUST also send an "Upgrade" connection
            # option": the server adds it to its Connection header.
            self._has_upgrade = True
        elif type(name) is str and type(value) is str and len(line) <= _CHECKED_MAX_CHARS:
            if len(_CHECKED) >= _CHECKED_MAX_ENTRIES:
                _CHECKED.clear()
            _CHECKED[(name, value)] = line
        self._lines.append(line)

    def add_headers(self, block: HeaderBlock) -> None:
        """Append every field of a :class:`HeaderBlock` (checked when it was built)."""
        if block._has_upgrade and self.upgrade_protocol is not None:
            raise LocalProtocolError("upgrade() already sets the Upgrade header of this response")
        self._lines.extend(block._lines)
        self._has_date = self._has_date or block._has_date
        self._has_upgrade = self._has_upgrade or block._has_upgrade

    def set_header(self, name: str, value: str | int) -> None:
        """Replace every field called ``name`` (any case) with one field, or add it."""
        lower = name.lower()
        self._lines = [line for line in self._lines if line.partition(":")[0].lower() != lower]
        if lower == "date":
            self._has_date = False
        elif lower == "upgrade":
            self._has_upgrade = False
        self.add_header(name, value)

    def get_header(self, name: str) -> str | None:
        """Return the first value added for ``name`` (any case), or ``None``."""
        lower = name.lower()
        for line in self._lines:
            key, _, value = line.partition(": ")
            if key.lower() == lower:
                return value[:-2]
        return None

    def set_body(self, data: bytes | bytearray | memoryview | str) -> None:
        """Set the body; a ``str`` is encoded as UTF-8. Replaces any earlier body or file."""
        if self._streaming is not None and self._streaming.active:
            raise LocalProtocolError("the body is streamed (set_stream() or stream() was called)")
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, _BODY_TYPES):
            raise LocalProtocolError(f"body must be bytes or str, not {type(data).__name__}")
        self.body = data
        if self.file is not None:
            self._drop_file()

    def set_file(self, file: _FileLike, offset: int = 0, count: int | None = None) -> None:
        """Send ``count`` bytes of an open file from ``offset`` as the body.

        The server takes ownership of ``file`` and closes it once the response is done.
        ``count`` defaults to the rest of the file.
        """
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if offset < 0 or count < 0:
            raise LocalProtocolError(f"invalid file region offset={offset} count={count}")
        self._drop_file()
        self.body = b""
        self.file = FileBody(file, offset, count)

    def set_file_opener(self, opener: Callable[[], _FileLike], offset: int, count: int) -> None:
        """Send ``count`` bytes from ``offset`` of a file that ``opener()`` opens.

        The server calls ``opener`` only when this body's turn to be sent comes: a
        response waiting behind others (pipelining) holds no file descriptor. The head is
        sent by then, so if ``opener`` raises ``OSError`` or the file turns out shorter
        than ``offset + count``, the connection is closed (the client sees a truncated
        body, never a wrong one). The server closes the file once it is sent.
        """
        if offset < 0 or count < 0:
            raise LocalProtocolError(f"invalid file region offset={offset} count={count}")
        if not callable(opener):
            raise LocalProtocolError(f"opener must be callable, not {type(opener).__name__}")
        self._drop_file()
        self.body = b""
        self.file = FileBody(None, offset, count, opener)

    def set_stream(self, body: Iterable[bytes | bytearray | memoryview], length: int | None = None) -> None:
        """Send ``body``, an iterable of byte strings, as it is produced.

        After the handler returns, the server iterates ``body`` on the handler's thread
        (waiting for the next piece does not stall other clients: the call is moved off the
        loop like any call that blocks) and sends each piece as it comes. Iteration waits
        while the client is not reading, so memory stays bounded. The server calls
        ``body.close()``, when it has one, in every case: at the end, when the client goes
        away, when iterating raises, and for HEAD (and 1xx, 204, 304) where nothing is
        iterated.

        Framing: a body that is complete by the time the call returns, without having
        waited, goes out with a ``Content-Length``. Otherwise HTTP/1.1 gets
        ``Transfer-Encoding: chunked`` unless ``length`` was given, and HTTP/1.0 a body
        delimited by closing the connection. With ``length``, exactly that many bytes are
        sent: a body that turns out shorter or longer ends the connection (a shorter one
        is cut, the client sees it incomplete; the rest of a longer one is dropped and
        logged), never a mis-framed response. Empty pieces are skipped; a piece that is
        not bytes ends the response likewise.

        After :meth:`stream`, the iterable continues the body after what was written.
        """
        if length is not None and (type(length) is not int or length < 0):
            raise LocalProtocolError(f"length must be a non-negative integer or None, not {length!r}")
        if not isinstance(body, Iterable) or isinstance(body, str | bytes | bytearray | memoryview):
            raise LocalProtocolError(
                f"set_stream() takes an iterable of byte strings, not {type(body).__name__} (use set_body)"
            )
        state = state_of(self)
        if state.stream is not None:
            if length is not None and length != state.stream.length:
                raise LocalProtocolError("the length was already given to stream()")
        else:
            state.length = length
        state.source = body
        state.active = True
        self.body = b""
        self._drop_file()

    def stream(self, length: int | None = None) -> BodyWriter:
        """Start the body now and return a writer to send it piece by piece.

        For code that produces the body as it goes from inside the handler (WSGI's
        ``write()``). Status and headers must be set first: the head goes out before the
        first piece. ``BodyWriter.write`` waits while the client is not reading and raises
        :class:`~peregrine_core.ClientDisconnected` once the connection is gone. Framing
        and ``length`` as for :meth:`set_stream`; the body ends when the handler returns
        (or, after :meth:`set_stream`, when its iterable ends).
        """
        if length is not None and (type(length) is not int or length < 0):
            raise LocalProtocolError(f"length must be a non-negative integer or None, not {length!r}")
        state = self._streaming
        if state is not None and state.stream is not None:
            if length is not None and length != state.stream.length:
                raise LocalProtocolError("stream() was already called with another length")
            return BodyWriter(state.stream)
        if state is not None and state.length is not None and length is None:
            length = state.length
        self.body = b""
        self._drop_file()
        return BodyWriter(create(self, length))

    @property
    def streaming(self) -> bool:
        """Whether the body is streamed (:meth:`set_stream` or :meth:`stream` was called)."""
        state = self._streaming
        return state is not None and state.active

    def _drop_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @property
    def content_length(self) -> int:
        """The length of the body the server will frame."""
        return self.file.count if self.file is not None else len(self.body)

    def upgrade(self, protocol: str, state: object = None) -> None:
        """Switch protocols after this response (for protocol plugins such as WebSockets).

        Sets status 101; the server sends ``Upgrade: <protocol>`` and ``Connection:
        Upgrade`` and, once the response is sent, hands the connection to the plugin
        registered for ``protocol`` in the ``peregrine_core.upgrades`` entry-point group,
        passing it ``state`` (whatever the plugin's handshake agreed on).
        """
        if _TOKEN.fullmatch(protocol) is None:
            raise LocalProtocolError(f"upgrade protocol {protocol!r} is not a token")
        self._lines = [line for line in self._lines if line.partition(":")[0].lower() != "upgrade"]
        self._has_upgrade = False
        self._status = 101
        self.upgrade_protocol = protocol
        self.upgrade_state = state
        self.body = b""
        self._drop_file()
