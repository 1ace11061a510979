"""The echo example: a WebSocket echo server, the shape Autobahn|Testsuite expects.

Every request, whatever its path, is a WebSocket handshake (a plain HTTP request gets the
``400`` that :func:`peregrine_ws.upgrade` answers). Every message comes back as it was
received: text as text, binary as binary, a fragmented message reassembled into one.
Pings, pongs and the closing handshake are the library's.

Settings, chosen so that the whole Autobahn|Testsuite fuzzing client passes (groups 1 to
13, ``tools/autobahn/run.py``):

* permessage-deflate (RFC 7692) is on, with :class:`~peregrine_ws.DeflateConfig`'s
  defaults, when the client offers it;
* messages may be up to :data:`MAX_MESSAGE_BYTES` (64 MiB; group 9 sends 16 MiB ones).
  That is this example's choice, not a sensible default for a public server: a message
  is held in memory whole, and the default limit is 1 MiB.

A client that sends faster than it reads its echoes (the outgoing queue above its
high-water mark) is closed with 1008. Run it with ``python -m peregrine_examples.echo`` or
``peregrine-echo``; it logs each connection and disconnection.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Final

from peregrine_core import Request, Response
from peregrine_ws import (
    BackpressureError,
    CloseCode,
    DeflateConfig,
    WebSocketConfig,
    WebSocketConnection,
    upgrade,
)

from ._run import run

__all__ = ["DEFLATE", "MAX_MESSAGE_BYTES", "Echo", "main"]

log = logging.getLogger("peregrine_examples.echo")  # not __name__: "__main__" under -m

#: Largest message accepted (and so echoed), after decompression.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: permessage-deflate settings, used when the client offers the extension.
DEFLATE: Final = DeflateConfig()


class Echo:
    """Sends every WebSocket message back, on any path."""

    websocket_config: Final = WebSocketConfig(max_message_bytes=MAX_MESSAGE_BYTES)

    def handle_request(self, req: Request, resp: Response) -> None:
        upgrade(req, resp, deflate=DEFLATE)  # the 101, or why the handshake was refused

    def handle_ws_conn(self, conn: WebSocketConnection) -> None:
        log.info("WebSocket connected: %s %s", conn.remote_addr, conn.request.target)

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        try:
            conn.send(message)  # str: a text message; bytes: a binary one
        except BackpressureError:
            # Earlier echoes are still unread: this client sends without reading.
            conn.close(CloseCode.POLICY_VIOLATION, "echoes are not being read")

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        log.info("WebSocket disconnected: %s (code %d, reason %r)", conn.remote_addr, code, reason)


def main(argv: Sequence[str] | None = None) -> int:
    """Echo WebSocket messages until interrupted; return the exit status."""
    return run(Echo(), "Peregrine echo example: a WebSocket echo server", argv)


if __name__ == "__main__":
    sys.exit(main())
