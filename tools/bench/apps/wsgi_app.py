"""WSGI app for gunicorn: the 6150-byte body on every request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._body import BODY, CONTENT_TYPE

_HEADERS = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with the body."""
    start_response("200 OK", _HEADERS)
    return [BODY]
