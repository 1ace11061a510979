"""Peregrine's core handler for ``stream-1g``: the 1 GiB body of :mod:`._stream` through
``resp.set_stream`` (a generator of 256 KiB pieces, the length given, so ``Content-Length``).

Run: ``python -m peregrine_core tools.bench.apps.peregrine_stream_app:Handler --port P
--host 127.0.0.1``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._body import BODY, CONTENT_TYPE
from ._stream import STREAM_BYTES, STREAM_CONTENT_TYPE, STREAM_PATH, pieces

if TYPE_CHECKING:  # annotations only: the module imports without peregrine_core (tests)
    from peregrine_core import Request, Response


class Handler:
    """``/stream1g`` the streamed body, ``/`` the benchmark body, anything else 404."""

    def handle_request(self, req: Request, resp: Response) -> None:
        path = req.path
        if path == STREAM_PATH:
            resp.add_header("Content-Type", STREAM_CONTENT_TYPE)
            resp.set_stream(pieces(), length=STREAM_BYTES)
        elif path == "/":
            resp.add_header("Content-Type", CONTENT_TYPE)
            resp.set_body(BODY)
        else:
            resp.status = 404
            resp.add_header("Content-Type", "text/plain")
            resp.set_body(b"not found\n")
