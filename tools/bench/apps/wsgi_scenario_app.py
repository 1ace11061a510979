"""WSGI app of the WSGI and streaming scenarios, the same for every WSGI server.

Served by ``peregrine-wsgi`` (``python -m peregrine_wsgi``), gunicorn's gthread worker,
waitress and granian (``--interface wsgi``). It answers by path:

- ``/``: the 6150-byte body of :mod:`._body` (the harness's readiness check);
- ``/hello`` (``wsgi-hello-c100``): hello world, a list of one 14-byte bytes object, with
  ``Content-Length``;
- ``/sleep5`` (``wsgi-sleep5-c100``): ``time.sleep(0.005)`` (a stand-in for a synchronous
  database call), then the 3-byte body of :mod:`._blocking`;
- ``/stream1g`` (``stream-1g``): the 1 GiB body of :mod:`._stream`, a generator of 256 KiB
  pieces, with ``Content-Length``;
- anything else: 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from ._blocking import SLEEP_PATH, SLEEP_S, SMALL_BODY, SMALL_CONTENT_TYPE
from ._body import BODY, CONTENT_TYPE
from ._stream import STREAM_BYTES, STREAM_CONTENT_TYPE, STREAM_PATH, pieces

HELLO_PATH: Final = "/hello"
HELLO_BODY: Final = b"Hello, World!\n"

_HELLO_HEADERS: Final = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))]
_SMALL_HEADERS: Final = [
    ("Content-Type", SMALL_CONTENT_TYPE),
    ("Content-Length", str(len(SMALL_BODY))),
]
_STREAM_HEADERS: Final = [
    ("Content-Type", STREAM_CONTENT_TYPE),
    ("Content-Length", str(STREAM_BYTES)),
]
_BODY_HEADERS: Final = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(BODY)))]
_NOT_FOUND: Final = b"not found\n"
_NOT_FOUND_HEADERS: Final = [
    ("Content-Type", SMALL_CONTENT_TYPE),
    ("Content-Length", str(len(_NOT_FOUND))),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer as the path says (see the module's docstring)."""
    path = environ.get("PATH_INFO", "/")
    if path == HELLO_PATH:
        start_response("200 OK", _HELLO_HEADERS)
        return [HELLO_BODY]
    if path == SLEEP_PATH:
        time.sleep(SLEEP_S)
        start_response("200 OK", _SMALL_HEADERS)
        return [SMALL_BODY]
    if path == STREAM_PATH:
        start_response("200 OK", _STREAM_HEADERS)
        return pieces()
    if path == "/":
        start_response("200 OK", _BODY_HEADERS)
        return [BODY]
    start_response("404 Not Found", _NOT_FOUND_HEADERS)
    return [_NOT_FOUND]
