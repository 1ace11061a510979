"""The standard library's ``ThreadingHTTPServer``: what ``http.server`` users write.

``protocol_version = "HTTP/1.1"`` enables keep-alive (the default HTTP/1.0 closes every
connection); the head and the body go out in separate writes, as ``BaseHTTPRequestHandler``
does, with Nagle left on: that is the stall the performance notes describe.

Run: ``python -m tools.bench.apps.stdlib_app --port P --host 127.0.0.1 [--backlog N]``
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._body import BODY, CONTENT_TYPE
from ._cli import listen_args


class BodyHandler(BaseHTTPRequestHandler):
    """Answer ``GET``/``HEAD`` with the body; no access log."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    """Parse ``--host/--port/--backlog`` and serve until interrupted."""
    args = listen_args(__doc__, default_backlog=5)

    class Server(ThreadingHTTPServer):
        request_queue_size = args.backlog

    with Server((args.host, args.port), BodyHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
