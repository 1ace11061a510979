"""ASGI app for uvicorn and granian (``--interface asgi``): the 6150-byte body on every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._body import BODY, CONTENT_TYPE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", CONTENT_TYPE.encode("ascii")),
        (b"content-length", str(len(BODY)).encode("ascii")),
    ],
}
_BODY: Message = {"type": "http.response.body", "body": BODY}


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answer HTTP requests; accept the lifespan protocol so servers start quietly."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_START)
    await send(_BODY)
