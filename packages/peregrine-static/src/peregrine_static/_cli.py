"""The command line (``python -m peregrine_static``) and the ``static`` handler plugin.

``make_handler`` is registered in the ``peregrine_core.handlers`` entry-point group as
``static``, so ``peregrine static DIR`` (the core's command line) serves a directory too.

The command line is meant as a drop-in for ``python -m http.server``: same default port
(8000), same default address (every interface), the directory as the first argument, plus
``-b/--bind`` and ``-d/--directory`` as in ``http.server``. Unlike ``http.server`` it lists
directories only with ``--listing`` and hides dot files unless ``--show-hidden``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Final, Literal

from peregrine_core import ConfigError, Server, ServerConfig

from ._dir_server import DirServer

__all__ = ["main", "make_handler"]

DEFAULT_PORT: Final = 8000
DEFAULT_HOST: Final = "0.0.0.0"


def make_handler(argument: str | None) -> DirServer:
    """Entry point of the ``static`` handler plugin: serve ``argument`` (a directory).

    Args:
        argument: the directory to serve; the current directory when ``None`` or empty.

    Raises:
        ConfigError: the directory does not exist.
    """
    return DirServer(argument or os.getcwd())


def _workers(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', not {value!r}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0..65535, not {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m peregrine_static``."""
    parser = argparse.ArgumentParser(
        prog="python -m peregrine_static",
        description="Serve a directory over HTTP with Peregrine (a drop-in for http.server).",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=None,
        metavar="DIR",
        help="directory to serve (default: the current directory)",
    )
    parser.add_argument(
        "-d",
        "--directory",
        dest="directory_option",
        default=None,
        metavar="DIR",
        help="same as DIR, as in http.server",
    )
    parser.add_argument(
        "--host",
        "-b",
        "--bind",
        dest="host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}, every interface)",
    )
    parser.add_argument(
        "--port",
        "-p",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="worker threads, or 'auto' (default: auto)",
    )
    parser.add_argument("--listing", action="store_true", help="list directories that have no index.html")
    parser.add_argument("--show-hidden", action="store_true", help="serve and list names starting with a dot")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not log each request")
    return parser


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: Sequence[str] | None = None) -> int:
    """Run the static file server until interrupted; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.directory is not None and args.directory_option is not None:
        parser.error("give the directory once: either DIR or --directory")
    directory = args.directory or args.directory_option or os.getcwd()
    try:
        handler = DirServer(directory, listing=args.listing, show_hidden=args.show_hidden)
        config = ServerConfig(workers=args.workers, access_log=not args.quiet)
    except ConfigError as exc:
        hint = ""
        if directory.isdigit() and not os.path.exists(directory):
            hint = f" (http.server takes the port first; here use --port {directory})"
        parser.error(f"{exc}{hint}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    server = Server(handler, host=args.host, port=args.port, config=config)
    try:
        server.bind()
    except OSError as exc:
        print(
            f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"Serving {handler.root} on http://{_url_host(args.host)}:{server.port}/", flush=True)
    server.start()
    return 130 if server.stopped_forcibly else 0
