"""The command line every self-started benchmark app takes: ``--host``, ``--port``, ``--backlog``."""

from __future__ import annotations

import argparse


def listen_args(description: str | None, default_backlog: int) -> argparse.Namespace:
    """Parse ``--host`` (default 127.0.0.1), ``--port`` (required) and ``--backlog``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=default_backlog)
    return parser.parse_args()
