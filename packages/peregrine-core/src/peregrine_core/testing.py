"""Helpers for testing handlers and plugins against a real server.

:func:`serve` runs a :class:`~peregrine_core.Server` on ``127.0.0.1``, port 0, in a background
thread, and stops it (gracefully, with a bounded wait) when the block ends::

    with serve(MyHandler) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._config import ServerConfig
from ._server import Server

__all__ = ["serve"]


@contextmanager
def serve(
    handler: Any,
    *,
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    start_timeout: float = 10.0,
    stop_timeout: float | None = None,
) -> Iterator[Server]:
    """Run a server in a background thread for the duration of the ``with`` block.

    Raises:
        RuntimeError: the server did not start, or did not stop, within its timeout.
    """
    server = Server(handler, host=host, port=0, config=config)
    if stop_timeout is None:
        stop_timeout = server.config.graceful_timeout + 10.0
    server.bind()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="peregrine-test-server", daemon=True)
    thread.start()
    if not server.wait_started(start_timeout):
        server.shutdown()
        raise RuntimeError(f"server did not start within {start_timeout} s: {errors}")
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(stop_timeout)
        if thread.is_alive():
            raise RuntimeError(f"server did not stop within {stop_timeout} s")
        if errors:
            raise RuntimeError("server failed") from errors[0]
