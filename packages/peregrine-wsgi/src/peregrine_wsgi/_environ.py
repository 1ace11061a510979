"""The WSGI environ of a request (PEP 3333), built from a core :class:`~peregrine_core.Request`.

Strategy: everything that is the same for every request of a handler (``wsgi.*`` keys,
``SCRIPT_NAME``, ``wsgi.errors``...) lives in a template dict built once; each request copies
it (one C-level dict copy) and sets only what varies. Header names are turned into
``HTTP_*`` keys through a bounded memo, so a repeated name costs one dict lookup.

Invariants:

* Every value is a ``str`` holding bytes as latin-1 ("bytes-as-unicode", PEP 3333 §"Unicode
  Issues"); the core already decodes the request line and headers as latin-1, so a path
  without ``%`` escapes is used as it is, and a decoded one is re-decoded as latin-1.
* A header whose name holds ``_`` is dropped: ``X-Forwarded_For`` and ``X-Forwarded-For``
  would both become ``HTTP_X_FORWARDED_FOR`` and one could pass for the other.
* Repeated fields are joined with ``,`` (RFC 9110 §5.3), ``Cookie`` with ``; ``
  (RFC 6265 §5.4), in the order received.
* ``CONTENT_LENGTH`` is the length of the body the application will read (chunked uploads
  are de-chunked by the core), not the header as sent; ``Transfer-Encoding`` is not passed
  on, since ``wsgi.input`` is never chunked.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import weakref
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from peregrine_core import Request

__all__ = ["EnvironBuilder", "ErrorStream", "normalize_root_path"]

log = logging.getLogger("peregrine_wsgi")
errors_log = logging.getLogger("peregrine_wsgi.errors")

_KEY_MEMO_MAX_ENTRIES: Final = 512
# Header name (as received) -> environ key, or "" for a name that is dropped or handled
# apart. A plain dict whose single operations are atomic; bounded (cleared when full).
_KEYS: dict[str, str] = {}
#: Request fields not passed as ``HTTP_*``: CONTENT_TYPE and CONTENT_LENGTH have keys of
#: their own (CGI), and a de-chunked body has no transfer coding.
_SPECIAL: Final = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH", "TRANSFER_ENCODING"})

# Handlers built in this process; a fork (the server's ``processes > 1``) marks them all
# multi-process in the child.
_builders: weakref.WeakSet[EnvironBuilder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for builder in list(_builders):
        builder.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(name: str) -> str:
    """The environ key of header ``name``; ``""`` when it is dropped or handled apart."""
    if "_" in name:
        key = ""
    else:
        upper = name.upper().replace("-", "_")
        key = "" if upper in _SPECIAL else "HTTP_" + upper
    if len(_KEYS) >= _KEY_MEMO_MAX_ENTRIES:
        _KEYS.clear()
    _KEYS[name] = key
    return key


def normalize_root_path(root_path: str) -> str:
    """``root_path`` as a ``SCRIPT_NAME``: ``""`` or ``/x`` (no trailing slash), bytes-as-latin-1.

    Raises:
        ValueError: it is not empty and does not start with ``/``, or holds ``?`` or ``#``.
    """
    if not isinstance(root_path, str):
        raise ValueError(f"root_path must be a str, not {type(root_path).__name__}")
    root = root_path.rstrip("/")
    if not root:
        return ""
    if not root.startswith("/") or "?" in root or "#" in root:
        raise ValueError(f"root_path must be empty or a path starting with '/', not {root_path!r}")
    return root.encode("utf-8").decode("latin-1")


class _EmptyInput(io.BufferedIOBase):
    """``wsgi.input`` of a request without a body: always at its end.

    One instance is shared by every such request, so it holds no state: reads give
    ``b""``, seeks stay at 0 and ``close()`` does nothing.
    """

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        return b""

    def read1(self, size: int | None = -1, /) -> bytes:
        return b""

    def readline(self, size: int | None = -1, /) -> bytes:
        return b""

    def readinto(self, buffer: Any, /) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def close(self) -> None:
        pass  # shared: never closed


EMPTY_INPUT: Final = _EmptyInput()


class ErrorStream(io.TextIOBase):
    """``wsgi.errors``: a text stream whose lines go to the logger ``peregrine_wsgi.errors``.

    Text is kept per thread until a newline (or :meth:`flush`), so one ``print(...,
    file=environ["wsgi.errors"])`` becomes one log record at ERROR level.
    """

    def __init__(self, logger: logging.Logger = errors_log) -> None:
        super().__init__()
        self._logger = logger
        self._pending = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"wsgi.errors takes str, not {type(s).__name__}")
        text = getattr(self._pending, "text", "") + s
        *lines, rest = text.split("\n")
        for line in lines:
            self._logger.error("%s", line)
        self._pending.text = rest
        return len(s)

    def flush(self) -> None:
        rest = getattr(self._pending, "text", "")
        if rest:
            self._pending.text = ""
            self._logger.error("%s", rest)


class EnvironBuilder:
    """Builds environ dicts for one handler.

    Args:
        root_path: the ``SCRIPT_NAME`` (already normalized, see :func:`normalize_root_path`).
        multiprocess: ``wsgi.multiprocess``; ``None`` means "true once this process was
            forked from the one that built the handler" (the server's ``processes > 1``).
        errors: the ``wsgi.errors`` stream.
        file_wrapper: the ``wsgi.file_wrapper`` class.
    """

    def __init__(
        self,
        *,
        root_path: str,
        multiprocess: bool | None,
        errors: ErrorStream,
        file_wrapper: type,
    ) -> None:
        self.root_path = root_path
        self._root_slash = root_path + "/"
        self._auto_multiprocess = multiprocess is None
        self.template: dict[str, Any] = {
            "SCRIPT_NAME": root_path,
            "wsgi.version": (1, 0),
            "wsgi.errors": errors,
            "wsgi.multithread": True,
            "wsgi.multiprocess": bool(multiprocess),
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": file_wrapper,
        }
        # local_addr -> (SERVER_NAME, SERVER_PORT); a server listens on few addresses.
        self._server_names: dict[object, tuple[str, str]] = {}
        _builders.add(self)

    def forked(self) -> None:
        """Called in a child process after a fork: the server now runs several processes."""
        if self._auto_multiprocess:
            self.template = {**self.template, "wsgi.multiprocess": True}

    def _server(self, local_addr: object, host_header: str | None, scheme: str) -> tuple[str, str]:
        if isinstance(local_addr, tuple) and len(local_addr) >= 2:
            names = (str(local_addr[0]), str(local_addr[1]))
            if len(self._server_names) < 64:
                self._server_names[local_addr] = names
            return names
        # Unknown (a Request built by hand): PEP 3333's URL reconstruction falls back on
        # SERVER_NAME only when there is no Host header, so take it from there if present.
        default_port = "443" if scheme == "https" else "80"
        if host_header:
            host, sep, port = host_header.rpartition(":")
            if sep and port.isdigit():
                return host.strip("[]"), port
            return host_header.strip("[]"), default_port
        return "localhost", default_port

    def build(self, req: Request) -> dict[str, Any]:
        """The environ of ``req`` (a new dict the application may change)."""
        environ = self.template.copy()
        target = req.target
        environ["REQUEST_METHOD"] = req.method
        environ["SERVER_PROTOCOL"] = req.version
        environ["RAW_URI"] = environ["REQUEST_URI"] = target
        if target[:1] == "/":  # origin-form, the usual case: split it here
            mark = target.find("?")
            if mark < 0:
                path = target
                environ["QUERY_STRING"] = ""
            else:
                path = target[:mark]
                environ["QUERY_STRING"] = target[mark + 1 :]
        else:  # absolute-form, "*"...: the Request knows how
            path = req.path
            environ["QUERY_STRING"] = req.query
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        root = self.root_path
        if root and (path == root or path.startswith(self._root_slash)):
            path = path[len(root) :]
        environ["PATH_INFO"] = path
        scheme = environ["wsgi.url_scheme"] = req.scheme

        length_sent = False
        keys = _KEYS
        for name, value in req.headers:
            key = keys.get(name)
            if key is None:
                key = _key(name)
            if not key:
                lower = name.lower()
                if lower == "content-type":
                    environ["CONTENT_TYPE"] = value
                elif lower == "content-length" or lower == "transfer-encoding":
                    length_sent = True
                elif "_" in name:
                    log.debug("dropped request header %r: its name holds an underscore", name)
                continue
            old = environ.get(key)
            if old is None:
                environ[key] = value
            elif key == "HTTP_COOKIE":
                environ[key] = old + "; " + value
            else:
                environ[key] = old + "," + value

        local = req.local_addr
        names = self._server_names.get(local)
        if names is None:
            names = self._server(local, environ.get("HTTP_HOST"), scheme)
        environ["SERVER_NAME"], environ["SERVER_PORT"] = names
        remote = req.remote_addr
        if type(remote) is tuple and len(remote) >= 2:
            environ["REMOTE_ADDR"] = remote[0]
            environ["REMOTE_PORT"] = str(remote[1])
        length = req.body_length
        if length:
            environ["CONTENT_LENGTH"] = str(length)
            environ["wsgi.input"] = req.body_file
        else:
            if length_sent:
                environ["CONTENT_LENGTH"] = "0"
            environ["wsgi.input"] = EMPTY_INPUT
        return environ
