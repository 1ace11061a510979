"""The websocket example: a page at ``/`` that talks to the server over a WebSocket at ``/ws``.

The original's example. The page (``index.html``, ``main.css`` and ``main.js``, shipped in
``static/websocket/`` next to this module and served by :class:`~peregrine_static.DirServer`)
opens a WebSocket to ``/ws`` on the host it was loaded from (``ws://`` or ``wss://`` as the
page itself), shows "Connected to WebSocket", sends ``Hello server!`` once a second ten
times, shows every reply ("Received: Hello client!") and, once the tenth reply arrived,
closes the connection with 1000. The server answers every message with ``Hello client!``
and logs each connection, message and disconnection. Run it with
``python -m peregrine_examples.websocket`` or ``peregrine-websocket`` and open
``http://localhost:3000/``.

Routing: only the exact path ``/ws`` (any query string) is a WebSocket endpoint; a request
there that is not a valid handshake gets the error :func:`peregrine_ws.upgrade` chose (400,
405 or 426). Everything else is a file of the page (or 404).

Unlike the original, the page does not hard-code ``localhost:3000``, the server answers the
closing handshake (so the browser sees a clean close at once instead of a dropped
connection), and the page records its progress on ``<body>`` (``data-state``,
``data-sent``, ``data-received``, ``data-close-code``, ``data-was-clean``) so that a test can
read it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from peregrine_core import Request, Response
from peregrine_static import DirServer
from peregrine_ws import BackpressureError, CloseCode, WebSocketConnection, upgrade

from ._run import run

__all__ = ["REPLY", "STATIC_DIR", "WS_PATH", "WebSocketExample", "main"]

log = logging.getLogger("peregrine_examples.websocket")  # not __name__: "__main__" under -m

#: The page and its assets, inside the installed package.
STATIC_DIR: Final = Path(__file__).resolve().parent / "static" / "websocket"
#: The one path that upgrades to a WebSocket.
WS_PATH: Final = "/ws"
#: What the server answers to every message.
REPLY: Final = "Hello client!"
#: Longest part of a message written to the log (a message may be up to 1 MiB).
_LOGGED_CHARS: Final = 80


class WebSocketExample:
    """Serves the page's files, and answers ``Hello client!`` on the WebSocket at ``/ws``.

    Raises:
        ConfigError: the page's folder is missing (a broken installation).
    """

    def __init__(self) -> None:
        self._files = DirServer(STATIC_DIR, url_prefix="/")

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path == WS_PATH:
            upgrade(req, resp)  # the 101, or the reason the handshake was refused
            return
        self._files.handle_request(req, resp)

    def handle_ws_conn(self, conn: WebSocketConnection) -> None:
        log.info("WebSocket connected: %s", _peer(conn))

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        log.info("WebSocket message from %s: %s", _peer(conn), _shorten(message))
        try:
            conn.send(REPLY)
        except BackpressureError:
            # The client sends without reading the replies: stop talking to it.
            conn.close(CloseCode.POLICY_VIOLATION, "too many unread replies")

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        log.info("WebSocket disconnected: %s (code %d, reason %r)", _peer(conn), code, reason)


def _peer(conn: WebSocketConnection) -> str:
    addr = conn.remote_addr
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _shorten(message: str | bytes) -> str:
    """The message for a log line: ``repr`` escapes control characters, long ones are cut."""
    more = len(message) - _LOGGED_CHARS
    return repr(message[:_LOGGED_CHARS]) + (f" (+{more} more)" if more > 0 else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the page and its WebSocket until interrupted; return the exit status."""
    return run(WebSocketExample(), "Peregrine websocket example: a page that talks over /ws", argv)


if __name__ == "__main__":
    sys.exit(main())
