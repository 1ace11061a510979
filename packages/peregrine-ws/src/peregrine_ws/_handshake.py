"""The opening handshake, server side (RFC 6455 §4.2), as a handler calls it.

:func:`upgrade` reads a :class:`~peregrine_core.Request` and fills in a
:class:`~peregrine_core.Response`: either the 101 that switches the connection to
WebSocket, or an error answer (400, 403, 405, 426) with a short text body. It never
raises for anything the client sent; it raises only for a bug in the caller (a subprotocol
selector returning something the client did not offer).

What was negotiated (subprotocol, permessage-deflate parameters) travels with the response:
``resp.upgrade("websocket", Handshake(...))``, and the core passes it to
:meth:`WebSocketUpgrade.adopt` with the socket once the 101 is sent.

A request body: the core reads an upgrade request's body completely before the handler
runs, so a declined upgrade leaves nothing behind that could be parsed as another request
(the CVE-2026-69243 desync), and an accepted one starts the WebSocket stream right after
the body. The body is available as ``req.body``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from peregrine_core import LocalProtocolError, Request, Response

from ._config import DeflateConfig
from ._deflate import DeflateParams, negotiate_deflate, parse_extensions

__all__ = ["Handshake", "accept_key", "upgrade"]

#: RFC 6455 §1.3: the GUID concatenated with the key before hashing.
GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: RFC 6455 §4.1: the key is "a randomly selected 16-byte value that has been base64-encoded".
KEY_BYTES: Final = 16
SUPPORTED_VERSION: Final = "13"

SubprotocolSelector = Callable[[list[str]], str | None]
OriginCheck = Callable[[str | None], bool]


@dataclass(frozen=True)
class Handshake:
    """What the opening handshake agreed on for one connection."""

    subprotocol: str | None = None
    deflate: DeflateParams | None = None


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2, item 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(req: Request, name: str) -> list[str]:
    """The comma-separated elements of every ``name`` header, stripped (RFC 9110 §5.6.1)."""
    out: list[str] = []
    for value in req.get_headers(name):
        out.extend(item.strip(" \t") for item in value.split(","))
    return [item for item in out if item]


def _refuse(resp: Response, status: int, message: str) -> bool:
    resp.status = status
    resp.add_header("Content-Type", "text/plain; charset=utf-8")
    resp.set_body(message + "\n")
    return False


def upgrade(
    req: Request,
    resp: Response,
    *,
    subprotocols: Sequence[str] | SubprotocolSelector = (),
    origins: Collection[str | None] | OriginCheck | None = None,
    deflate: DeflateConfig | None = None,
) -> bool:
    """Answer a WebSocket opening handshake.

    Call it from ``handle_request``; when it returns ``True`` the response is a ``101``
    and, once it is sent, the connection belongs to the WebSocket thread (the handler's
    ``handle_ws_*`` hooks). When it returns ``False`` the response already holds the
    error status and a short explanation; send it as it is.

    Args:
        req: the request.
        resp: the response to fill in.
        subprotocols: the subprotocols this endpoint speaks, in order of preference (the
            first one the client also offered is chosen), or a function given the
            client's offers in order that returns the chosen one or ``None``. No match
            means no subprotocol; the client then decides whether to go on.
        origins: ``None`` accepts any ``Origin``. A collection accepts only the origins it
            contains (compared case-insensitively; include ``None`` to accept requests
            without an ``Origin`` header, which browsers always send). A function gets
            the ``Origin`` value (or ``None``) and returns whether to accept it.
            Refusals get 403.
        deflate: enable permessage-deflate (RFC 7692) with these settings, if the client
            offers it; ``None`` (the default) never compresses.

    Returns:
        ``True`` when the connection is being upgraded.

    Raises:
        LocalProtocolError: ``subprotocols`` chose a protocol the client did not offer.
    """
    # §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET":
        resp.add_header("Allow", "GET")
        return _refuse(resp, 405, "a WebSocket handshake must be a GET request")
    if req.version != "HTTP/1.1":
        return _refuse(resp, 400, "a WebSocket handshake needs HTTP/1.1")
    # Item 2: "A |Host| header field containing the server's authority."
    if not req.get_header("Host"):
        return _refuse(resp, 400, "a WebSocket handshake needs a Host header")
    # Item 3: "An |Upgrade| header field containing the value "websocket", treated as an
    # ASCII case-insensitive value."
    if "websocket" not in (t.lower() for t in _tokens(req, "Upgrade")):
        return _refuse(resp, 400, "expected a WebSocket handshake (Upgrade: websocket)")
    # Item 4: "A |Connection| header field that includes the token "Upgrade"".
    if "upgrade" not in (t.lower() for t in _tokens(req, "Connection")):
        return _refuse(resp, 400, "a WebSocket handshake needs Connection: Upgrade")
    # Item 6 and §4.4: a version the server does not understand gets an error code such as
    # 426 and a Sec-WebSocket-Version header listing the versions it does.
    versions = req.get_headers("Sec-WebSocket-Version")
    if len(versions) != 1 or versions[0].strip(" \t") != SUPPORTED_VERSION:
        resp.add_header("Sec-WebSocket-Version", SUPPORTED_VERSION)
        # RFC 9110 §15.5.22: "The server MUST send an Upgrade header field in a 426 response".
        resp.add_header("Upgrade", "websocket")
        return _refuse(resp, 426, "unsupported WebSocket version; this server speaks 13")
    # Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when
    # decoded, is 16 bytes in length."
    keys = req.get_headers("Sec-WebSocket-Key")
    key = keys[0].strip(" \t") if len(keys) == 1 else ""
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return _refuse(resp, 400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes")
    # Item 7 and §10.2: the Origin header protects against cross-site WebSocket hijacking.
    if origins is not None:
        if isinstance(origins, str):
            origins = (origins,)
        origin = req.get_header("Origin")
        if callable(origins):
            allowed = bool(origins(origin))
        else:
            wanted = {o.lower() if o is not None else None for o in origins}
            allowed = (origin.lower() if origin is not None else None) in wanted
        if not allowed:
            return _refuse(resp, 403, "WebSocket connections from this origin are not allowed")
    # §4.2.2 item 5.3: "Either a single value representing the subprotocol the server is
    # ready to use or null. The value chosen MUST be derived from the client's handshake".
    offered = _tokens(req, "Sec-WebSocket-Protocol")
    chosen: str | None = None
    if callable(subprotocols):
        chosen = subprotocols(offered)
        if chosen is not None and chosen not in offered:
            raise LocalProtocolError(
                f"the subprotocol selector chose {chosen!r}, which the client did not offer "
                f"(offered: {offered})"
            )
    else:
        chosen = next((p for p in subprotocols if p in offered), None)
    agreed: DeflateParams | None = None
    if deflate is not None:
        try:
            offers = parse_extensions(req.get_headers("Sec-WebSocket-Extensions"))
        except ValueError as exc:
            return _refuse(resp, 400, f"malformed Sec-WebSocket-Extensions header: {exc}")
        agreed = negotiate_deflate(offers, deflate)
    resp.upgrade("websocket", Handshake(chosen, agreed))
    resp.add_header("Sec-WebSocket-Accept", accept_key(key))
    if chosen is not None:
        resp.add_header("Sec-WebSocket-Protocol", chosen)
    if agreed is not None:
        resp.add_header("Sec-WebSocket-Extensions", agreed.response)
    return True
