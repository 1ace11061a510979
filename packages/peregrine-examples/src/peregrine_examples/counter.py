"""The counter example: every request gets ``counter=N`` with N counting from 0.

The count is shared by every worker thread of the process (a lock keeps it exact). With
several processes each process would count on its own: state shared between processes needs
something outside the server (a database, a file, shared memory).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from peregrine_core import Request, Response

from ._run import run

__all__ = ["Counter", "main"]


class Counter:
    """Answers every request with ``counter=N\\n``, N = the number of earlier requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def handle_request(self, req: Request, resp: Response) -> None:
        with self._lock:
            n = self.count
            self.count = n + 1
        resp.add_header("Content-Type", "text/plain")
        resp.set_body(b"counter=%d\n" % n)


def main(argv: Sequence[str] | None = None) -> int:
    return run(Counter(), "Peregrine counter example", argv)


if __name__ == "__main__":
    sys.exit(main())
