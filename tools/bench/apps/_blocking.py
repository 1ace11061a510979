"""What the blocking apps answer: a stand-in for a handler that waits on a database.

Every blocking app (``peregrine_blocking_app``, ``wsgi_blocking_app``) answers by path:

- ``/``: the 6150-byte body of :mod:`._body` at once, so the harness's readiness check is the
  same for every app;
- ``/sleep5``: ``time.sleep(0.005)``, then :data:`SMALL_BODY` (scenario ``sleep5-c100``);
- ``/fast``: :data:`SMALL_BODY` at once, and ``/slow``: ``time.sleep(1)`` then
  :data:`SMALL_BODY` (scenario ``slow1pct-c100``, whose client sends ``/slow`` as every
  100th request of a connection);
- anything else: 404.

The sleep blocks the calling thread, as a synchronous database driver does: it is the
server's job to keep other clients going meanwhile.
"""

from __future__ import annotations

from typing import Final

SLEEP_PATH: Final = "/sleep5"
SLEEP_S: Final = 0.005
FAST_PATH: Final = "/fast"
SLOW_PATH: Final = "/slow"
SLOW_S: Final = 1.0
SMALL_BODY: Final = b"ok\n"
SMALL_CONTENT_TYPE: Final = "text/plain"

DELAYS_S: Final[dict[str, float]] = {SLEEP_PATH: SLEEP_S, FAST_PATH: 0.0, SLOW_PATH: SLOW_S}
"""Seconds each blocking path sleeps before answering :data:`SMALL_BODY`."""
