"""The sse example: Server-Sent Events, a page at ``/`` that follows a stream at ``/events``.

``/events`` answers ``text/event-stream`` with a body produced by a generator handed to
:meth:`Response.set_stream <peregrine_core.Response.set_stream>`: the server sends each piece
as the generator yields it (chunked on HTTP/1.1) and, whatever ends the response (the last
event, the client going away, an error, a ``HEAD``), calls the generator's ``close()``, so
its ``finally`` runs. The stream opens with ``retry: MS`` (how long the browser waits
before reconnecting), then sends ``id: N`` / ``data: tick N`` events ``interval`` seconds
apart, with a ``: heartbeat`` comment whenever ``heartbeat_s`` pass without one (so proxies
and the browser keep an idle connection open), and ends after ``count`` events. The
browser's ``EventSource`` then reconnects by itself with ``Last-Event-ID: N``, and the
next stream continues with ``N + 1``: one endless sequence over several responses, and
over a restart of the server.

The query of ``/events`` (the page passes its own on) sets ``interval`` (seconds, 0.01 to
60, default 1), ``count`` (1 to 10000, default 100) and ``retry`` (milliseconds, 100 to
60000, default 2000); a value outside these bounds, or not a number, is a ``400``. Run it
with ``python -m peregrine_examples.sse`` and open ``http://localhost:3000/``.

The server iterates the generator on a handler thread, so each open stream holds one of
``handler_threads`` (32 by default) while it sleeps between events. A generator stopped
between pieces runs its ``finally`` only once the server notices the client is gone, which
it can do only when it has a piece to send: the stream learns of a departure within about
one ``interval`` (at most ``heartbeat_s``). On SIGTERM the server waits for in-flight
requests, streams included, so the example stops its streams after
:data:`GRACEFUL_TIMEOUT_S` (the default is 30 s).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from peregrine_core import Request, Response

from ._run import run

__all__ = ["EVENTS_PATH", "PAGE", "SSEExample", "main"]

log = logging.getLogger("peregrine_examples.sse")  # not __name__: "__main__" under -m

#: The path of the event stream.
EVENTS_PATH: Final = "/events"
#: (default, lowest, highest) of each query parameter of ``/events``.
INTERVAL_S: Final = (1.0, 0.01, 60.0)
COUNT: Final = (100, 1, 10_000)
RETRY_MS: Final = (2000, 100, 60_000)
#: How long a stopping server lets open streams run before it closes their connections:
#: the streams never end by themselves in time, and the browsers reconnect anyway.
GRACEFUL_TIMEOUT_S: Final = 1.0
#: Longest ``Last-Event-ID`` honoured, in digits (a larger or malformed one starts at 1).
_MAX_ID_DIGITS: Final = 15

#: The page at ``/``: it follows ``/events`` and records what it saw on ``<body>``
#: (``data-state``, ``data-opens``, ``data-errors``, ``data-received``, ``data-last-id``)
#: and each event as ``<li data-id="N">``, so that a test can read it.
PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Peregrine Server-Sent Events</title>
<style>body { font-family: sans-serif; } .note { color: grey; }</style>
</head>
<body data-state="connecting" data-opens="0" data-errors="0" data-received="0">
<h1>Server-Sent Events</h1>
<p id="status">Connecting&hellip;</p>
<ol id="events"></ol>
<script>
"use strict";
const body = document.body;
const status = document.getElementById("status");
const list = document.getElementById("events");
const source = new EventSource("events" + location.search);
const bump = (name) => { body.dataset[name] = String(Number(body.dataset[name]) + 1); };
source.onopen = () => {
  bump("opens");
  body.dataset.state = "open";
  status.textContent = "Connected";
};
source.onmessage = (event) => {
  const item = document.createElement("li");
  item.dataset.id = event.lastEventId;
  item.textContent = event.data;
  list.appendChild(item);
  bump("received");
  body.dataset.lastId = event.lastEventId;
};
source.onerror = () => {
  bump("errors");
  const closed = source.readyState === EventSource.CLOSED;
  body.dataset.state = closed ? "closed" : "reconnecting";
  status.textContent = closed ? "Closed" : "Reconnecting\u2026";
};
</script>
</body>
</html>
"""


class SSEExample:
    """Serves :data:`PAGE` at ``/`` and an event stream at :data:`EVENTS_PATH`.

    Args:
        heartbeat_s: longest silence on a stream before a ``: heartbeat`` comment.

    Attributes:
        active_streams: the streams whose generator has started and not yet finished.
    """

    def __init__(self, heartbeat_s: float = 15.0) -> None:
        self.heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self.active_streams = 0

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path not in ("/", EVENTS_PATH):
            _plain(resp, 404, "not found: the page is at /, the stream at /events")
        elif req.method not in ("GET", "HEAD"):
            resp.add_header("Allow", "GET, HEAD")
            _plain(resp, 405, "only GET and HEAD")
        elif req.path == "/":
            resp.add_header("Content-Type", "text/html; charset=utf-8")
            resp.add_header("Cache-Control", "no-cache")
            resp.set_body(PAGE)
        else:
            self._events(req, resp)

    def _events(self, req: Request, resp: Response) -> None:
        query = req.parse_query()
        if query is None and req.has_query:
            _plain(resp, 400, "malformed query string")
            return
        try:
            interval = _number(query or {}, "interval", INTERVAL_S, float)
            count = int(_number(query or {}, "count", COUNT, int))
            retry = int(_number(query or {}, "retry", RETRY_MS, int))
        except ValueError as exc:
            _plain(resp, 400, str(exc))
            return
        last = req.get_header("last-event-id") or ""
        digits = last.isascii() and last.isdigit() and len(last) <= _MAX_ID_DIGITS
        first = int(last) + 1 if digits else 1
        resp.add_header("Content-Type", "text/event-stream")
        resp.add_header("Cache-Control", "no-store")
        resp.add_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
        addr = req.remote_addr
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)
        resp.set_stream(self._stream(peer, first, count, interval, retry))

    def _stream(self, peer: str, first: int, count: int, interval: float, retry: int) -> Iterator[bytes]:
        """The stream's pieces: ``retry``, then ``count`` events from id ``first``."""
        with self._lock:
            self.active_streams += 1
        log.info("stream to %s opened at id %d", peer, first)
        sent = 0
        try:
            yield b"retry: %d\n\n" % retry
            for n in range(first, first + count):
                if n > first:
                    yield from self._wait(interval)
                yield b"id: %d\ndata: tick %d\n\n" % (n, n)
                sent += 1
        finally:  # the last event, or the server's close(): the client left or an error
            with self._lock:
                self.active_streams -= 1
            log.info("stream to %s closed after %d events", peer, sent)

    def _wait(self, seconds: float) -> Iterator[bytes]:
        """Sleep ``seconds``, yielding a comment each time ``heartbeat_s`` pass."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > self.heartbeat_s:
            time.sleep(self.heartbeat_s)
            yield b": heartbeat\n\n"
        time.sleep(max(0.0, left))


def _number(
    query: dict[str, str], name: str, limits: tuple[float, float, float], kind: Callable[[str], float]
) -> float:
    """The query parameter ``name`` (its default when absent), checked against ``limits``.

    Raises:
        ValueError: not a number of that kind, or outside the limits (the message says so).
    """
    default, low, high = limits
    text = query.get(name)
    if text is None:
        return default
    try:
        value: float = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text[:20]!r}") from None
    if not low <= value <= high:  # also refuses nan
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def _plain(resp: Response, status: int, text: str) -> None:
    resp.status = status
    resp.add_header("Content-Type", "text/plain; charset=utf-8")
    resp.set_body(text + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the page and its event stream until interrupted; return the exit status."""
    return run(
        SSEExample(), "Peregrine Server-Sent Events example", argv, graceful_timeout=GRACEFUL_TIMEOUT_S
    )


if __name__ == "__main__":
    sys.exit(main())
