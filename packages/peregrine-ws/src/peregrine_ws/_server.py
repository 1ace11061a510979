"""``WebSocketUpgrade``: the ``websocket`` plugin of the ``peregrine_core.upgrades`` group.

The core creates one per server (``WebSocketUpgrade(handler, server_config)``) and calls
:meth:`~WebSocketUpgrade.adopt` on an HTTP worker thread once a ``101`` has been sent;
:meth:`~WebSocketUpgrade.shutdown` once, while the server stops.

Strategy: ``threads`` WebSocket loops are started on the first adoption (a server that
never upgrades a connection starts none), with one :class:`~peregrine_core.handoff.Monitor`
watching their hook calls (it sleeps while no hook runs). Each new connection goes to the
loop owning the fewest. After :meth:`shutdown` has begun, a late adoption is closed at once
(1001), so no transport is ever left open: every path that ends a connection closes its
transport, which gives the connection's slot back to the server's connection budget.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from peregrine_core import ConfigError, Request, ServerConfig
from peregrine_core.handoff import Monitor

from ._config import WebSocketConfig
from ._connection import WebSocketConnection
from ._frames import CloseCode, Opcode, build_close_payload, build_frame
from ._handshake import Handshake
from ._hooks import Hooks
from ._loop import WebSocketLoop

if TYPE_CHECKING:
    from peregrine_core.transport import Transport

__all__ = ["WebSocketUpgrade"]

log = logging.getLogger(__name__)

#: How much longer than its deadline :meth:`WebSocketUpgrade.shutdown` waits for a loop:
#: the last pass (closing transports) and the detaching of a hook stuck at that moment.
STOP_MARGIN_SECONDS: Final = 0.15


class WebSocketUpgrade:
    """Runs the WebSocket connections of one server on dedicated threads.

    Args:
        handler: the server's handler. Its optional hooks, called by a WebSocket loop:
            ``handle_ws_conn(conn)`` once the connection is open;
            ``handle_ws_message(conn, message)`` per message (``str`` for text, ``bytes``
            for binary), or else ``handle_ws_frame(conn, opcode, payload)`` with
            ``Opcode.TEXT``/``Opcode.BINARY`` and the payload bytes;
            ``handle_ws_disconn(conn, code, reason)`` once when it ends. Its optional
            ``websocket_config`` attribute (a :class:`WebSocketConfig`) sets the limits.
            A hook call that blocks for longer than ``handoff_delay`` goes on on a thread
            of its own while the loop serves the other connections.
        config: the server's configuration (its ``poller``, ``handoff_delay``,
            ``handler_threads`` and ``handler_queue`` apply to each loop), or ``None``
            for the defaults.

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
        self._server_config = config if config is not None else ServerConfig()
        self._hooks = Hooks.from_handler(handler)
        self._loops: list[WebSocketLoop] = []
        self._monitor: Monitor | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def adopt(self, transport: Transport, request: Request, data: bytes, state: object = None) -> None:
        """Take over an upgraded connection (called on the HTTP worker thread).

        Args:
            transport: the connection (non-blocking); from now on this object closes it,
                exactly once, whatever happens.
            request: the upgrade request.
            data: bytes received after the request, the start of the WebSocket stream;
                they are decoded before anything read later.
            state: the :class:`Handshake` that :func:`upgrade` agreed (defaults: no
                subprotocol, no compression).
        """
        handshake = state if isinstance(state, Handshake) else Handshake()
        with self._lock:
            if self._stopped:
                _refuse(transport)
                return
            try:
                if not self._loops:
                    self._start_loops()
                loop = min(self._loops, key=lambda lp: lp.load)
                conn = WebSocketConnection(transport, request, handshake, self.config, loop)
            except BaseException:
                transport.close()
                raise
            loop.adopt(conn, bytes(data))

    def shutdown(self, timeout: float) -> None:
        """Close every connection with 1001 and stop the loops within ``timeout``.

        Each connection gets its close frame and up to ``close_timeout`` (bounded by
        ``timeout``) to answer; then every transport is closed. Returns by the deadline
        plus :data:`STOP_MARGIN_SECONDS` even if hooks are stuck (each is logged, and left
        running on its own thread); ``timeout=0`` closes everything at once.
        """
        with self._lock:
            self._stopped = True
            loops = list(self._loops)
            monitor = self._monitor
        deadline = time.monotonic() + max(0.0, timeout)
        for loop in loops:
            loop.stop(deadline)
        for loop in loops:
            if not loop.join(max(0.0, deadline - time.monotonic()) + STOP_MARGIN_SECONDS):
                log.error("WebSocket loop %s did not stop by its deadline; leaving it", loop.name)
        if monitor is not None:
            for loop in loops:
                monitor.remove(loop.pool)
            monitor.stop()

    def _start_loops(self) -> None:
        config = self._server_config
        monitor = Monitor(config.handoff_delay)
        for i in range(self.config.threads):
            loop = WebSocketLoop(f"peregrine-ws-{i}", self.config, self._hooks, config, monitor)
            self._loops.append(loop)
        monitor.start()
        self._monitor = monitor
        for loop in self._loops:
            loop.start()
        log.info("started %d WebSocket thread(s)", self.config.threads)


def _refuse(transport: Transport) -> None:
    """Best effort: tell a connection adopted during shutdown to go away, then close it."""
    try:
        transport.send(build_frame(Opcode.CLOSE, build_close_payload(CloseCode.GOING_AWAY)))
    except OSError:
        pass
    finally:
        transport.close()
