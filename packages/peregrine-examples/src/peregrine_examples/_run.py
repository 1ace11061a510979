"""The command line every example shares: ``--host``, ``--port``, ``--workers``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from peregrine_core import Server, ServerConfig

__all__ = ["run"]


def run(handler: Any, description: str, argv: Sequence[str] | None = None, **config: Any) -> int:
    """Parse the example's arguments, print ``listening on HOST:PORT`` and serve until stopped."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=3000, help="TCP port (default: %(default)s)")
    parser.add_argument("--workers", default="auto", help="worker threads (default: %(default)s)")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = ns.workers if ns.workers == "auto" else int(ns.workers)
    server = Server(handler, host=ns.host, port=ns.port, config=ServerConfig(workers=workers, **config))
    try:
        server.bind()
    except OSError as exc:
        print(f"cannot listen on {ns.host}:{ns.port}: {exc}", file=sys.stderr)
        return 1
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    server.start()
    return 0
