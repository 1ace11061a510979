"""Peregrine: a handler that blocks like a database call (see :mod:`._blocking` for the paths).

Run: ``python -m peregrine_core tools.bench.apps.peregrine_blocking_app:Handler --port P
--host 127.0.0.1 [--handler-threads N]``
"""

from __future__ import annotations

import time

from peregrine_core import Request, Response

from ._blocking import DELAYS_S, SMALL_BODY, SMALL_CONTENT_TYPE
from ._body import BODY, CONTENT_TYPE


class Handler:
    """Sleep as the path says, then answer; ``/`` gets the benchmark body, unknown paths 404."""

    def handle_request(self, req: Request, resp: Response) -> None:
        path = req.path
        delay = DELAYS_S.get(path)
        if delay is None:
            if path == "/":
                resp.add_header("Content-Type", CONTENT_TYPE)
                resp.set_body(BODY)
            else:
                resp.status = 404
                resp.add_header("Content-Type", SMALL_CONTENT_TYPE)
                resp.set_body(b"not found\n")
            return
        if delay:
            time.sleep(delay)
        resp.add_header("Content-Type", SMALL_CONTENT_TYPE)
        resp.set_body(SMALL_BODY)
