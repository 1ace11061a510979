"""``TimerHeap``: the deadlines of one WebSocket thread's connections.

One heap of ``(when, seq, conn)`` for every timer (keepalive ping, pong deadline, closing
timeout, backpressure timeout). Invariant: a connection's live entry is the one whose
``when`` equals ``conn._timer_at``; rescheduling to a later time leaves the earlier entry,
which fires early and is then rescheduled, and entries that no longer match are skipped.
So there is at most one live entry per connection and nothing is ever searched for.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from ._connection import WebSocketConnection

__all__ = ["TimerHeap"]


class TimerHeap:
    """Deadlines on the monotonic clock, owned by one thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, WebSocketConnection]] = []
        self._seq = itertools.count()

    def schedule(self, conn: WebSocketConnection, when: float | None) -> None:
        """Make ``when`` the connection's next deadline (``None``: it has none)."""
        if when is None:
            conn._timer_at = None
        elif conn._timer_at is None or when < conn._timer_at:
            conn._timer_at = when
            heapq.heappush(self._heap, (when, next(self._seq), conn))

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None``."""
        heap = self._heap
        while heap and heap[0][2]._timer_at != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Iterator[WebSocketConnection]:
        """Yield each connection whose deadline has come; it then has none scheduled."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, conn = heapq.heappop(heap)
            if conn._timer_at == when:
                conn._timer_at = None
                yield conn
