"""WSGI app for gunicorn's gthread worker and waitress: it blocks like a database call.

The paths are those of :mod:`._blocking`; ``/`` answers the 6150-byte body at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ._blocking import DELAYS_S, SMALL_BODY, SMALL_CONTENT_TYPE
from ._body import BODY, CONTENT_TYPE

_BODY_HEADERS = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(BODY)))]
_SMALL_HEADERS = [("Content-Type", SMALL_CONTENT_TYPE), ("Content-Length", str(len(SMALL_BODY)))]
_NOT_FOUND = b"not found\n"
_NOT_FOUND_HEADERS = [
    ("Content-Type", SMALL_CONTENT_TYPE),
    ("Content-Length", str(len(_NOT_FOUND))),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Sleep as the path says, then answer; ``/`` gets the benchmark body, unknown paths 404."""
    path = environ.get("PATH_INFO", "/")
    delay = DELAYS_S.get(path)
    if delay is None:
        if path == "/":
            start_response("200 OK", _BODY_HEADERS)
            return [BODY]
        start_response("404 Not Found", _NOT_FOUND_HEADERS)
        return [_NOT_FOUND]
    if delay:
        time.sleep(delay)
    start_response("200 OK", _SMALL_HEADERS)
    return [SMALL_BODY]
