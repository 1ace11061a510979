"""peregrine-ws: WebSockets (RFC 6455, permessage-deflate RFC 7692) for Peregrine.

Accept the handshake in ``handle_request`` and implement the hooks you need::

    from peregrine_ws import upgrade

    class Echo:
        def handle_request(self, req, resp):
            if req.path == "/ws":
                upgrade(req, resp)  # a 101, or an error status with a short body
                return
            resp.set_body("hello\\n")

        def handle_ws_message(self, conn, message):
            conn.send(message)

Installing this package registers :class:`WebSocketUpgrade` as the ``websocket`` entry
point of the ``peregrine_core.upgrades`` group; the server finds it by itself.
"""

from __future__ import annotations

from .__about__ import __version__
from ._config import DeflateConfig, WebSocketConfig
from ._connection import WebSocketConnection
from ._decoder import BinaryMessage, Close, Event, FrameDecoder, Ping, Pong, TextMessage
from ._errors import BackpressureError, ConnectionClosed, ProtocolError, WebSocketError
from ._frames import CloseCode, Opcode, build_close_payload, build_frame, parse_close_payload
from ._handshake import accept_key, upgrade
from ._server import WebSocketUpgrade

__all__ = [
    "BackpressureError",
    "BinaryMessage",
    "Close",
    "CloseCode",
    "ConnectionClosed",
    "DeflateConfig",
    "Event",
    "FrameDecoder",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "TextMessage",
    "WebSocketConfig",
    "WebSocketConnection",
    "WebSocketError",
    "WebSocketUpgrade",
    "__version__",
    "accept_key",
    "build_close_payload",
    "build_frame",
    "parse_close_payload",
    "upgrade",
]
