"""``WebSocketUpgrade``: the ``websocket`` plugin of the ``peregrine_core.upgrades`` group.

The core creates one per server (``WebSocketUpgrade(handler, server_config)``) and calls
:meth:`~WebSocketUpgrade.adopt` on an HTTP worker thread once a ``101`` has been sent;
:meth:`~WebSocketUpgrade.shutdown` once, while the server stops.

Strategy: ``threads`` WebSocket threads are started on the first adoption (a server that
never upgrades a connection starts none). Each new connection goes to the thread owning
the fewest. After :meth:`shutdown` has begun, a late adoption is closed at once (1001),
so no socket is ever left open.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from peregrine_core import ConfigError, Request

from ._config import WebSocketConfig
from ._connection import WebSocketConnection
from ._frames import CloseCode, Opcode, build_close_payload, build_frame
from ._handshake import Handshake
from ._hooks import Hooks
from ._loop import WebSocketLoop

if TYPE_CHECKING:
    from peregrine_core import ServerConfig

__all__ = ["WebSocketUpgrade"]

log = logging.getLogger(__name__)


class WebSocketUpgrade:
    """Runs the WebSocket connections of one server on dedicated threads.

    Args:
        handler: the server's handler. Its optional hooks, called on a WebSocket thread:
            ``handle_ws_conn(conn)`` once the connection is open;
            ``handle_ws_message(conn, message)`` per message (``str`` for text, ``bytes``
            for binary), or else ``handle_ws_frame(conn, opcode, payload)`` with
            ``Opcode.TEXT``/``Opcode.BINARY`` and the payload bytes;
            ``handle_ws_disconn(conn, code, reason)`` once when it ends. Its optional
            ``websocket_config`` attribute (a :class:`WebSocketConfig`) sets the limits.
        config: the server's configuration (its ``poller`` choice is used), or ``None``.

    Raises:
        ConfigError: ``websocket_config`` is not a :class:`WebSocketConfig`.
    """

    def __init__(self, handler: object, config: ServerConfig | None = None) -> None:
        ws_config = getattr(handler, "websocket_config", None)
        if ws_config is None:
            ws_config = WebSocketConfig()
        elif not isinstance(ws_config, WebSocketConfig):
            raise ConfigError(
                f"{type(handler).__qualname__}.websocket_config must be a "
                f"peregrine_ws.WebSocketConfig, not {type(ws_config).__name__}"
            )
        self.config: WebSocketConfig = ws_config
        self._poller = config.poller if config is not None else "auto"
        self._hooks = Hooks.from_handler(handler)
        self._loops: list[WebSocketLoop] = []
        self._lock = threading.Lock()
        self._stopped = False

    def adopt(self, sock: socket.socket, request: Request, data: bytes, state: object = None) -> None:
        """Take over an upgraded connection (called on the HTTP worker thread).

        Args:
            sock: the connected socket; from now on this object closes it.
            request: the upgrade request.
            data: bytes received after the request, the start of the WebSocket stream;
                they are decoded before anything read later.
            state: the :class:`Handshake` that :func:`upgrade` agreed (defaults: no
                subprotocol, no compression).
        """
        handshake = state if isinstance(state, Handshake) else Handshake()
        sock.setblocking(False)
        with self._lock:
            if self._stopped:
                _refuse(sock)
                return
            if not self._loops:
                self._start_loops()
            loop = min(self._loops, key=lambda lp: lp.load)
            conn = WebSocketConnection(sock, request, handshake, self.config, loop)
            loop.adopt(conn, bytes(data))

    def shutdown(self, timeout: float) -> None:
        """Close every connection with 1001 and stop the threads within ``timeout``.

        Each connection gets its close frame and up to ``close_timeout`` (bounded by
        ``timeout``) to answer; then every socket is closed and the threads are joined.
        """
        with self._lock:
            self._stopped = True
            loops = list(self._loops)
        deadline = time.monotonic() + max(0.0, timeout)
        for loop in loops:
            loop.stop(deadline)
        for loop in loops:
            # The extra second lets a thread finish closing sockets after its deadline.
            if not loop.join(max(0.0, deadline - time.monotonic()) + 1.0):
                log.warning("a WebSocket thread did not stop in time (a hook is blocking?)")

    def _start_loops(self) -> None:
        for i in range(self.config.threads):
            loop = WebSocketLoop(f"peregrine-ws-{i}", self.config, self._hooks, self._poller)
            loop.start()
            self._loops.append(loop)
        log.info("started %d WebSocket thread(s)", self.config.threads)


def _refuse(sock: socket.socket) -> None:
    """Best effort: tell a connection adopted during shutdown to go away, then close it."""
    try:
        sock.send(build_frame(Opcode.CLOSE, build_close_payload(CloseCode.GOING_AWAY)))
    except OSError:
        pass
    sock.close()
