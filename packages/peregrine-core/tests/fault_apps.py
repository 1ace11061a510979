"""Handlers for the fault tests, served in a subprocess (``python -m peregrine_core fault_apps:App``).

A handler that is about to block prints ``handler entered <path>`` to stderr first, so a test
waits for that line instead of sleeping and hoping.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Final

from peregrine_core import Request, Response

SLEEP_SECONDS: Final = {"/slow": 0.5, "/sleep1": 1.0, "/stuck": 40.0}
LEAK_MAX_FILES: Final = 200


class App:
    """``/slow``, ``/sleep1`` and ``/stuck`` sleep (0.5 s, 1 s, 40 s); ``/leak`` opens and keeps
    up to 200 descriptors (answering how many it got, and whether it ran out) and
    ``/leak?hold=SECONDS`` closes them again that much later; ``/release`` closes them now;
    ``/upload`` reads its body and answers its size; ``/download?mb=N`` streams N MiB;
    anything else answers ``fast <path>`` at once."""

    def __init__(self) -> None:
        self.leaked: list[int] = []
        self.lock = threading.Lock()

    def handle_request(self, req: Request, resp: Response) -> None:
        path = req.path
        seconds = SLEEP_SECONDS.get(path)
        if seconds is not None:
            print(f"handler entered {path}", file=sys.stderr, flush=True)
            time.sleep(seconds)
            resp.set_body(path.strip("/"))
        elif path == "/leak":
            resp.set_body(self._leak())
            hold = (req.parse_query() or {}).get("hold")
            if hold is not None:
                timer = threading.Timer(float(hold), self._release)
                timer.daemon = True
                timer.start()
        elif path == "/release":
            resp.set_body(f"released {self._release()}")
        elif path == "/upload":  # reads the body through its file, in pieces
            total = 0
            while piece := req.body_file.read(1 << 20):
                total += len(piece)
            resp.set_body(f"received {total}")
        elif path == "/download":  # a generated body of ?mb= MiB, streamed
            mib = int((req.parse_query() or {}).get("mb", "1"))
            piece = b"d" * (256 * 1024)
            resp.set_stream(piece for _ in range(mib * 4))
        else:
            resp.set_body(f"fast {path}")

    def _release(self) -> int:
        with self.lock:
            for fd in self.leaked:
                os.close(fd)
            count, self.leaked = len(self.leaked), []
        print(f"released {count} descriptors", file=sys.stderr, flush=True)
        return count

    def _leak(self) -> str:
        with self.lock:
            for _ in range(LEAK_MAX_FILES):
                try:
                    self.leaked.append(os.open(os.devnull, os.O_RDONLY))
                except OSError as exc:
                    return f"{len(self.leaked)} {exc.strerror}"
            return f"{len(self.leaked)} kept"


class Hello:
    """Answers every request, CONNECT included, with ``200 hello``."""

    def handle_request(self, req: Request, resp: Response) -> None:
        resp.set_body("hello")


class RefusesConnect:
    """Answers CONNECT with ``405`` itself and anything else with ``200 hello``."""

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.method == "CONNECT":
            resp.status = 405
            resp.add_header("Allow", "GET, HEAD")
            resp.set_body("no tunnels here")
            return
        resp.set_body("hello")
