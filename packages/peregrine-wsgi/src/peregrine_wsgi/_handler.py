"""``WSGIHandler``: a Peregrine handler that runs a WSGI (PEP 3333) application.

One call of :meth:`WSGIHandler.handle_request` is one WSGI invocation, on the handler's
thread: build the environ, call the application, then turn what it returned into the core
response. The rules, in the order a response goes through them:

1. ``start_response`` checks the status and headers when it is called (so the error points
   at the application's own call) and keeps them *pending*; ``exc_info`` may replace them
   until the head is sent, after which it re-raises the application's exception.
2. The head is sent at the first non-empty ``write()`` or body piece. ``Content-Length``
   from the application is never sent as a header: it becomes the ``length`` of the core's
   body, so a body that turns out shorter or longer ends the connection instead of
   mis-framing the next response. Hop-by-hop fields (RFC 9110 §7.6.1) are dropped: PEP 3333
   forbids them; ``Connection: close`` closes the connection after the response.
3. A list or tuple of bytes (the usual framework answer) is joined and set as the body. Any
   other iterable is pulled up to its first non-empty piece here (a generator calls
   ``start_response`` only then); if that piece completes the declared length the body is
   sent whole, otherwise the rest is streamed by the server (``resp.set_stream``).
   A :class:`FileWrapper` over a regular file is sent with ``sendfile``.
4. ``close()`` of the application's iterable is called exactly once in every case: here
   when the handler consumed it, by the server when it streams it (end of body, client
   gone, error, ``HEAD``).
5. An exception before the head was sent answers a plain ``500`` (nothing of the exception
   reaches the client) and is logged with the request line. After ``write()`` started the
   body, the exception goes on to the server, which logs it with the request and answers
   ``500`` if nothing went out yet, or else closes the connection without ending the body
   (the client sees a truncated response, never a mis-framed one). A body the server
   iterates that raises is handled the same way by the server.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from peregrine_core import HeaderBlock, LocalProtocolError, Request, Response

from ._environ import EnvironBuilder, ErrorStream, normalize_root_path
from ._file_wrapper import FileWrapper

if TYPE_CHECKING:
    from peregrine_core import BodyWriter

__all__ = ["WSGIApp", "WSGIHandler"]

log = logging.getLogger("peregrine_wsgi")

WSGIApp = Callable[[dict[str, Any], Callable[..., Callable[[bytes], None]]], Iterable[bytes]]
"""A WSGI application: ``app(environ, start_response) -> iterable of bytes``."""

ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]

#: RFC 9110 §7.6.1 hop-by-hop fields, plus the ones PEP 3333 names; never sent from an app.
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_STATUS: Final = re.compile(r"[2-5][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*")
_BODYLESS: Final = frozenset({204, 304})
_ERROR_BODY: Final = b"Internal Server Error\n"
_MEMO_MAX_ENTRIES: Final = 512
# Checked status lines and ordinary (name, value) header pairs: applications send the same
# few again and again. Plain dicts whose single operations are atomic; bounded.
_STATUS_MEMO: dict[str, int] = {}
# A pair's memo value: -1 for an ordinary field, else the Content-Length it declares.
_FIELD_MEMO: dict[tuple[str, str], int] = {}
# Whole heads, by (status, tuple of header pairs): (code, checked fields, Content-Length,
# Connection: close). A framework answering the same route sends the same head again.
_HEAD_MEMO_MAX_ENTRIES: Final = 256
_HEAD_MEMO: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, HeaderBlock, int | None, bool]] = {}


def _parse_status(status: object) -> int:
    if type(status) is not str:
        raise LocalProtocolError(f"status must be a str such as '200 OK', not {type(status).__name__}")
    if _STATUS.fullmatch(status) is None:
        raise LocalProtocolError(
            f"status {status!r} is not a 3-digit code in 200..599 followed by a space and a reason "
            "phrase without control characters"
        )
    code = int(status[:3])
    if len(_STATUS_MEMO) >= _MEMO_MAX_ENTRIES:
        _STATUS_MEMO.clear()
    _STATUS_MEMO[status] = code
    return code


def _check_field(field: object) -> tuple[str, str]:
    if type(field) is not tuple or len(field) != 2:
        raise LocalProtocolError(f"each header must be a (name, value) tuple of str, not {field!r}")
    name, value = field
    if type(name) is not str or type(value) is not str:
        raise LocalProtocolError(f"header name and value must be str, not {field!r}")
    if _TOKEN.fullmatch(name) is None:
        raise LocalProtocolError(f"header name {name!r} is not an HTTP token")
    if _BAD_VALUE.search(value) is not None:
        raise LocalProtocolError(
            f"header {name} value {value!r} holds CR, LF, another control character or a "
            "character outside latin-1"
        )
    return name, value


def _request_line(req: Request) -> str:
    return f"{req.method} {req.target!r} {req.version}"


class _Body:
    """The rest of an application's iterable, after the piece already pulled, for the server.

    ``close()`` closes the application's iterable once (the server calls it).
    """

    __slots__ = ("_close", "_first", "_rest")

    def __init__(self, first: bytes, rest: Iterator[bytes], close: Callable[[], object] | None) -> None:
        self._first = first
        self._rest = rest
        self._close = close

    # An iterator, not a generator: closing a generator suspended in ``yield from`` would
    # call the application's close() a second time (PEP 380).
    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first:
            self._first = b""
            return first
        return next(self._rest)

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()


class _Call:
    """The state of one WSGI invocation: pending status and headers, and what was sent."""

    __slots__ = ("applied", "block", "close", "code", "handler", "length", "resp", "sent", "writer")

    def __init__(self, handler: WSGIHandler, resp: Response) -> None:
        self.handler = handler
        self.resp = resp
        self.code = 0  # 0: start_response not called yet
        self.block: HeaderBlock | None = None
        self.length: int | None = None
        self.close = False
        self.sent = False  # the head is fixed: exc_info re-raises from now on
        self.applied = False  # the head is on resp
        self.writer: BodyWriter | None = None

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.code:
            raise LocalProtocolError("start_response() called a second time without exc_info")
        key = None
        if type(headers) is list and type(status) is str:
            try:
                key = (status, tuple(headers))
                head = _HEAD_MEMO.get(key)
            except TypeError:  # an unhashable field: checked below
                key = head = None
            if head is not None:
                self.code, self.block, self.length, self.close = head
                return self.write
        code = _STATUS_MEMO.get(status) if type(status) is str else None
        if code is None:
            code = _parse_status(status)
        if not isinstance(headers, list | tuple):
            raise LocalProtocolError(f"headers must be a list of (name, value) tuples, not {headers!r}")
        fields: list[tuple[str, str]] = []
        length: int | None = None
        close = False
        memo = _FIELD_MEMO
        for field in headers:
            try:
                known = memo.get(field) if type(field) is tuple else None
            except TypeError:  # unhashable: _check_field says what is wrong
                known = None
            if known is not None:
                if known < 0:
                    fields.append(field)
                    continue
                if length is not None and length != known:
                    raise LocalProtocolError(f"two different Content-Length headers: {length} and {known}")
                length = known
                continue
            name, value = _check_field(field)
            lower = name.lower()
            if lower == "content-length":
                text = value.strip()
                if not text.isdigit() or not text.isascii():
                    raise LocalProtocolError(f"Content-Length {value!r} is not a decimal number")
                if length is not None and length != int(text):
                    raise LocalProtocolError(f"two different Content-Length headers: {length} and {text}")
                length = int(text)
                if len(memo) >= _MEMO_MAX_ENTRIES:
                    memo.clear()
                memo[(name, value)] = length
            elif lower in HOP_BY_HOP:
                if lower == "connection" and "close" in (t.strip().lower() for t in value.split(",")):
                    close = True
                self.handler._warn_hop_by_hop(name)
            else:
                if len(memo) >= _MEMO_MAX_ENTRIES:
                    memo.clear()
                memo[(name, value)] = -1
                fields.append((name, value))
        block = HeaderBlock(fields)
        if key is not None:
            if len(_HEAD_MEMO) >= _HEAD_MEMO_MAX_ENTRIES:
                _HEAD_MEMO.clear()
            _HEAD_MEMO[key] = (code, block, length, close)
        self.code = code
        self.block = block
        self.length = length
        self.close = close
        return self.write

    def apply(self) -> None:
        """Put the pending status and headers on the response; they cannot change after."""
        resp = self.resp
        resp.status = self.code
        if self.block is not None:
            resp.add_headers(self.block)
        if self.close:
            resp.close_connection = True
        self.sent = self.applied = True

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()`` callable: send ``data`` now (the head first)."""
        if not self.code:
            raise LocalProtocolError("write() called before start_response()")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        writer = self.writer
        if writer is None:
            self.apply()
            writer = self.writer = self.resp.stream(self.length)
        writer.write(bytes(data) if type(data) is not bytes else data)


class WSGIHandler:
    """Serve a WSGI application with Peregrine.

    Args:
        app: the WSGI application, ``app(environ, start_response)``.
        root_path: the path the application is mounted at, its ``SCRIPT_NAME`` (``"/api"``);
            it is removed from the front of ``PATH_INFO`` when the request path starts with
            it (a proxy that does not strip the prefix), and ``PATH_INFO`` is the whole path
            otherwise (a proxy that strips it).
        multiprocess: ``wsgi.multiprocess``; ``None`` (default) means true in the processes
            the server forks (``processes > 1``) and false otherwise.

    Raises:
        TypeError: ``app`` is not callable.
        ValueError: ``root_path`` is neither empty nor a path starting with ``/``.
    """

    def __init__(self, app: WSGIApp, *, root_path: str = "", multiprocess: bool | None = None) -> None:
        if not callable(app):
            raise TypeError(f"the WSGI application must be callable, not {type(app).__name__}")
        self.app = app
        self.root_path = normalize_root_path(root_path)
        self.errors = ErrorStream()
        self._environ = EnvironBuilder(
            root_path=self.root_path,
            multiprocess=multiprocess,
            errors=self.errors,
            file_wrapper=FileWrapper,
        ).build
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<WSGIHandler {self.app!r} root_path={self.root_path!r}>"

    def _warn_hop_by_hop(self, name: str) -> None:
        lower = name.lower()
        if lower in self._warned or len(self._warned) > len(HOP_BY_HOP):
            log.debug("dropped the hop-by-hop header %r set by the WSGI application", name)
        else:
            self._warned.add(lower)
            log.warning(
                "dropped the hop-by-hop header %r set by the WSGI application (PEP 3333 forbids "
                "them; the server manages the connection); further ones are logged at DEBUG",
                name,
            )

    def environ(self, req: Request) -> dict[str, Any]:
        """The WSGI environ ``handle_request`` would pass to the application for ``req``."""
        return self._environ(req)

    def handle_request(self, req: Request, resp: Response) -> None:
        """Run the application for ``req`` and fill in ``resp`` (see the module's rules)."""
        call = _Call(self, resp)
        try:
            result = self.app(self._environ(req), call.start_response)
        except Exception as exc:
            self._failed(req, resp, call, exc)
            return
        try:
            self._respond(req, resp, call, result)
        except Exception as exc:
            self._failed(req, resp, call, exc)

    def _respond(self, req: Request, resp: Response, call: _Call, result: Iterable[bytes]) -> None:
        kind = type(result)
        if kind is list or kind is tuple:
            self._respond_sequence(req, resp, call, result)  # type: ignore[arg-type]
            return
        if isinstance(result, list | tuple):  # a subclass may have close()
            try:
                self._respond_sequence(req, resp, call, result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            return
        self._respond_iterable(req, resp, call, result)

    def _respond_sequence(
        self, req: Request, resp: Response, call: _Call, result: list[bytes] | tuple[bytes, ...]
    ) -> None:
        if not call.code:
            raise LocalProtocolError("the WSGI application returned without calling start_response()")
        if call.writer is not None:
            write = call.writer.write
            for piece in result:
                write(_checked(piece))
            return
        try:
            body = b"".join(result)
        except TypeError:
            for piece in result:
                _checked(piece)
            raise
        self._set_body(req, resp, call, body)

    def _respond_iterable(self, req: Request, resp: Response, call: _Call, result: Iterable[bytes]) -> None:
        kind = type(result)
        close = getattr(result, "close", None)
        try:
            if kind is FileWrapper and call.writer is None and call.code:
                assert isinstance(result, FileWrapper)
                if self._set_file(req, resp, call, result):
                    close = None  # the server closes the wrapper, and so the file
                    return
            rest = iter(result)
            first = b""
            for piece in rest:
                if piece:
                    first = _checked(piece)
                    break
                _checked(piece)
            if not call.code:
                raise LocalProtocolError(
                    "the WSGI application did not call start_response() before its first body piece"
                )
            if call.writer is not None:  # write() was used: the rest continues that body
                resp.set_stream(_Body(first, rest, close))
                close = None
                return
            length = call.length
            if not first or (length is not None and len(first) >= length):
                # The whole body (or more than declared) is here: the rest must be empty.
                extra = b""
                if first:
                    call.sent = True  # a piece was yielded: the head can no longer change
                    for piece in rest:
                        if piece:
                            extra = _checked(piece)
                            break
                        _checked(piece)
                self._set_body(req, resp, call, first + extra[:1])
                return
            call.apply()
            resp.set_stream(_Body(first, rest, close), length)
            close = None
        finally:
            if close is not None:
                close()

    def _set_body(self, req: Request, resp: Response, call: _Call, body: bytes) -> None:
        length = call.length
        if length is None or length == len(body):
            call.apply()
            resp.set_body(body)
            return
        if req.method == "HEAD" or call.code in _BODYLESS:
            # No body goes out; Content-Length on HEAD states the GET body's length.
            call.apply()
            if call.code in _BODYLESS:
                resp.set_body(b"")
            else:
                resp.set_stream((), length)
            return
        log.error(
            "WSGI application declared Content-Length %d but its body is %s bytes, on %s; answering 500",
            length,
            f"{len(body)}" if len(body) <= length else f"more than {length}",
            _request_line(req),
        )
        self._error_page(resp)

    def _set_file(self, req: Request, resp: Response, call: _Call, wrapper: FileWrapper) -> bool:
        region = wrapper.region()
        if region is None:
            return False
        offset, count = region
        length = call.length
        if length is not None and length != count:
            if length > count and req.method != "HEAD" and call.code not in _BODYLESS:
                log.error(
                    "WSGI application declared Content-Length %d but its file has %d bytes left, "
                    "on %s; answering 500",
                    length,
                    count,
                    _request_line(req),
                )
                wrapper.close()
                self._error_page(resp)
                return True
            count = min(length, count)
        call.apply()
        resp.set_file(wrapper, offset=offset, count=count)
        return True

    def _error_page(self, resp: Response) -> None:
        resp.status = 500
        resp.add_header("Content-Type", "text/plain; charset=utf-8")
        resp.set_body(_ERROR_BODY)

    def _failed(self, req: Request, resp: Response, call: _Call, exc: Exception) -> None:
        if call.writer is not None:
            if isinstance(exc, ConnectionError):  # peregrine_core.ClientDisconnected, from write()
                log.info("client went away during %s", _request_line(req))
                resp.close_connection = True
                return
            # Part of the body may be on the wire: the server logs the exception with the
            # request, answers 500 if nothing went out yet, and otherwise ends the
            # connection without ending the body (the client sees it cut).
            raise exc
        if call.applied:
            # resp holds part of the application's head and nothing went out: let the
            # server answer with a fresh 500 (it logs the exception with the request).
            raise exc
        log.error("WSGI application failed on %s", _request_line(req), exc_info=exc)
        self._error_page(resp)


def _checked(piece: object) -> bytes:
    if type(piece) is bytes:
        return piece
    if isinstance(piece, bytearray | memoryview):
        return bytes(piece)
    raise TypeError(f"a WSGI body piece must be bytes, not {type(piece).__name__}")
