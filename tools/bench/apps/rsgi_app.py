"""RSGI app for granian (``--interface rsgi``): the 6150-byte body on every request."""

from __future__ import annotations

from typing import Any

from ._body import BODY, CONTENT_TYPE

_HEADERS = [("content-type", CONTENT_TYPE)]


async def app(scope: Any, proto: Any) -> None:
    """Answer every request with the body (granian adds Content-Length)."""
    proto.response_bytes(200, _HEADERS, BODY)
