"""``Hooks``: the handler's optional WebSocket methods, looked up once per server.

A handler may define, all called by the connection's WebSocket loop, one at a time per
connection (inline on the loop's thread; a call that blocks goes on on a thread of its own,
see ``_loop``):

* ``handle_ws_conn(conn)``: the connection is open (before any message);
* ``handle_ws_message(conn, message)``: a whole message, ``str`` for text and ``bytes`` for
  binary; or else ``handle_ws_frame(conn, opcode, payload)``, the original server's shape,
  with ``Opcode.TEXT``/``Opcode.BINARY`` and the payload bytes (control frames are
  handled by the library and not passed on);
* ``handle_ws_disconn(conn, code, reason)``: once, when the connection has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Hooks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """The bound hook methods of one handler (``None`` where it has none)."""

    on_conn: Callable[..., Any] | None = None
    on_message: Callable[..., Any] | None = None
    on_frame: Callable[..., Any] | None = None
    on_disconn: Callable[..., Any] | None = None

    @classmethod
    def from_handler(cls, handler: object) -> Hooks:
        """Look the hooks up; ``handle_ws_message`` wins over ``handle_ws_frame``."""

        def hook(name: str) -> Callable[..., Any] | None:
            fn = getattr(handler, name, None)
            return fn if callable(fn) else None

        on_message = hook("handle_ws_message")
        hooks = cls(
            on_conn=hook("handle_ws_conn"),
            on_message=on_message,
            on_frame=None if on_message is not None else hook("handle_ws_frame"),
            on_disconn=hook("handle_ws_disconn"),
        )
        if hooks.on_message is None and hooks.on_frame is None:
            log.warning(
                "handler %s defines neither handle_ws_message nor handle_ws_frame: "
                "WebSocket messages will be discarded",
                type(handler).__qualname__,
            )
        return hooks
