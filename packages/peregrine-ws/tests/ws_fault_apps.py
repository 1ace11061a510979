"""A handler for the WebSocket fault tests, served in a subprocess
(``python -m peregrine_core ws_fault_apps:Echo``)."""

from __future__ import annotations

import time

from peregrine_core import Request, Response
from peregrine_ws import WebSocketConnection, upgrade


class Echo:
    """Upgrades ``/ws`` and echoes every message; the message ``sleep`` first blocks its hook
    for 0.5 s. Anything else gets ``200 plain``."""

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path == "/ws":
            upgrade(req, resp)
            return
        resp.set_body("plain")

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        if message == "sleep":
            time.sleep(0.5)
        conn.send(message)
