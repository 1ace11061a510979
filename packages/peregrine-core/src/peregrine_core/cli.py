"""The ``peregrine`` command: run a handler from the command line.

``peregrine MODULE:ATTR`` imports ``MODULE`` and serves ``ATTR`` (a handler class or
instance). ``peregrine NAME [ARG]`` serves a ready-made handler registered in the
``peregrine_core.handlers`` entry-point group (``peregrine static ./public`` with
peregrine-static installed). Every :class:`ServerConfig` field has an option.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .__about__ import __version__
from ._config import ServerConfig
from ._errors import PeregrineError
from ._server import Server
from .plugins import HANDLERS_GROUP, available, load

__all__ = ["main"]

_HELP: dict[str, str] = {
    "workers": (
        "worker threads per process: a number or 'auto' "
        "(1 on GIL builds, one per CPU on free-threaded builds)"
    ),
    "processes": (
        "server processes, supervised: a number or 'auto' (one per CPU on GIL builds); "
        "a process that dies is replaced"
    ),
    "handler_threads": "most handler calls running at once per worker (blocked calls included)",
    "handler_queue": "requests waiting for a handler thread per worker; 503 beyond",
    "handoff_delay": "seconds a handler call may hold the loop before another thread takes it over",
    "reuse_port": "give each process its own SO_REUSEPORT listener instead of one shared socket",
    "accept_threads": "threads accepting connections",
    "backlog": "length of the kernel's queue of connections not yet accepted",
    "tcp_nodelay": "disable Nagle's algorithm on accepted sockets",
    "keepalive_timeout": "seconds an idle keep-alive connection stays open",
    "max_requests_per_connection": "requests served on one connection before it is closed",
    "read_buffer_size": "bytes asked for by each recv()",
    "max_request_line_bytes": "longest request line accepted (414 beyond)",
    "max_header_bytes": "largest header section accepted (431 beyond)",
    "max_header_count": "most header fields in one request (431 beyond)",
    "max_body_bytes": "largest request body accepted (413 beyond)",
    "body_buffer_bytes": "largest request body kept in memory; larger ones go to a temporary file",
    "header_timeout": "seconds allowed to receive a request's head (408 beyond)",
    "body_timeout": "seconds allowed to receive a request's body (408 beyond)",
    "write_timeout": "seconds a response may make no progress before the connection is closed",
    "graceful_timeout": "seconds shutdown waits for in-flight requests",
    "max_connections": "open connections per process; accepting pauses beyond it",
    "max_pipelined_requests": "pipelined requests answered before their responses must be flushed",
    "access_log": "log one line per request (logger peregrine_core.access)",
    "poller": "readiness mechanism: auto, epoll, kqueue, poll or select",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peregrine",
        description="Run an HTTP/1.x handler with the Peregrine server.",
        epilog=(
            "APP is MODULE:ATTR (a handler class or instance), or the name of a ready-made "
            f"handler ({', '.join(available(HANDLERS_GROUP)) or 'none installed'}) followed by its "
            "argument. SIGINT or SIGTERM stops the server gracefully; a second SIGINT stops it at once."
        ),
    )
    p.add_argument("app", metavar="APP", help="MODULE:ATTR, or a registered handler name")
    p.add_argument(
        "arg", metavar="ARG", nargs="?", help="argument of a registered handler (e.g. a directory)"
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=3000, help="TCP port (default: %(default)s)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging level (default: %(default)s)",
    )
    p.add_argument("--version", action="version", version=f"peregrine-core {__version__}")
    defaults = ServerConfig()
    for f in dataclasses.fields(ServerConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{_HELP[f.name]} (default: {default})"
        if f.type == "bool":
            p.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif f.type == "int":
            p.add_argument(flag, dest=f.name, type=int, default=None, metavar="N", help=help_text)
        elif f.type == "float":
            p.add_argument(flag, dest=f.name, type=float, default=None, metavar="SECONDS", help=help_text)
        elif f.name in ("workers", "processes"):
            p.add_argument(flag, dest=f.name, type=_workers, default=None, metavar="N", help=help_text)
        else:
            p.add_argument(flag, dest=f.name, default=None, help=help_text)
    return p


def _workers(text: str) -> int | str:
    return "auto" if text == "auto" else int(text)


def load_app(app: str, arg: str | None) -> Any:
    """Resolve ``APP`` (``MODULE:ATTR`` or a registered handler name) to a handler."""
    if ":" in app and not os.path.exists(app):
        module_name, _, attr = app.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise PeregrineError(f"module {module_name!r} has no attribute {attr!r}") from None
        return obj
    factory = load(HANDLERS_GROUP, app)
    return factory(arg)  # type: ignore[operator]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``peregrine`` and ``python -m peregrine_core``; returns the exit code."""
    parser = _parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, ns.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {
        f.name: getattr(ns, f.name)
        for f in dataclasses.fields(ServerConfig)
        if getattr(ns, f.name) is not None
    }
    try:
        config = ServerConfig(**overrides)
        handler = load_app(ns.app, ns.arg)
        server = Server(handler, host=ns.host, port=ns.port, config=config)
        server.bind()
    except (PeregrineError, ImportError, OSError, TypeError) as exc:
        print(f"peregrine: error: {exc}", file=sys.stderr)
        return 1
    try:
        server.start()
    except PeregrineError as exc:
        print(f"peregrine: error: {exc}", file=sys.stderr)
        return 1
    return 130 if server.stopped_forcibly else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
