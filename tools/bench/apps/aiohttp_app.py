"""aiohttp: the 6150-byte body on every request, served by ``web.run_app`` as its docs show.

Run: ``python -m tools.bench.apps.aiohttp_app --port P --host 127.0.0.1 [--backlog N]``
(the default asyncio event loop, no access log).
"""

from __future__ import annotations

import argparse

from aiohttp import web

from ._body import BODY, CONTENT_TYPE

_HEADERS = {"Content-Type": CONTENT_TYPE}


async def index(request: web.Request) -> web.Response:
    """Answer with the body."""
    return web.Response(body=BODY, headers=_HEADERS)


def main() -> None:
    """Parse ``--host/--port/--backlog`` and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=128)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", index)
    web.run_app(
        app, host=args.host, port=args.port, backlog=args.backlog, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
