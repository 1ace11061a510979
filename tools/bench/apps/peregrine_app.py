"""Peregrine: a handler answering every request with the 6150-byte body.

Run: ``python -m peregrine_core tools.bench.apps.peregrine_app:Handler --port P --host 127.0.0.1``
"""

from __future__ import annotations

from peregrine_core import Request, Response

from ._body import BODY, CONTENT_TYPE


class Handler:
    """Answer ``200`` with the benchmark body, whatever the request."""

    def handle_request(self, req: Request, resp: Response) -> None:
        resp.add_header("Content-Type", CONTENT_TYPE)
        resp.set_body(BODY)
