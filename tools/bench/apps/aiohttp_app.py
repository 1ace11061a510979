"""aiohttp: the 6150-byte body on every request, served by ``web.run_app`` as its docs show.

Run: ``python -m tools.bench.apps.aiohttp_app --port P --host 127.0.0.1 [--backlog N]``
(the default asyncio event loop, no access log).
"""

from __future__ import annotations

from aiohttp import web

from ._body import BODY, CONTENT_TYPE
from ._cli import listen_args

_HEADERS = {"Content-Type": CONTENT_TYPE}


async def index(request: web.Request) -> web.Response:
    """Answer with the body."""
    return web.Response(body=BODY, headers=_HEADERS)


def main() -> None:
    """Parse ``--host/--port/--backlog`` and serve until SIGINT or SIGTERM."""
    args = listen_args(__doc__, default_backlog=128)
    app = web.Application()
    app.router.add_get("/", index)
    web.run_app(
        app, host=args.host, port=args.port, backlog=args.backlog, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
