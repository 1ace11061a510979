"""The Python cost of one keep-alive request in a Peregrine worker, without the kernel.

A worker serves connections whose sockets are stand-ins: ``recv`` returns the request wrk
sends and ``send`` takes everything at once. What is timed is exactly the worker's own code
for a pass of 64 ready connections (``_on_readable`` for each, then ``_answer_read``: parse,
the benchmark handler, the response, the flush and the keep-alive deadline), then its parts
one by one. Compare it with the user time per request the harness measures (CPU minus sys):
the difference is the event loop, the real system calls' Python side and memory effects.

Run: ``python tools/bench/hotpath.py [--quick]`` (best of 5 repetitions, one core).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packages" / "peregrine-core" / "src"))

from peregrine_core._config import ServerConfig
from peregrine_core._connection import Connection
from peregrine_core._h1 import parse_head
from peregrine_core._response import Response
from peregrine_core._worker import Worker

from apps.peregrine_app import Handler

REQUEST: Final = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n"
"""What wrk sends."""

PASS_CONNECTIONS: Final = 64
"""Connections per pass: what one poll returns at most."""


class FakeTransport:
    """A transport whose every ``recv`` is one request and whose ``send`` takes it all."""

    supports_sendfile = False

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.sent = 0

    def fileno(self) -> int:
        return self._fd

    def recv(self, size: int) -> bytes:
        return REQUEST

    def send(self, data: bytes) -> int:
        self.sent += 1
        return len(data)

    def sendmsg(self, buffers: list[bytes]) -> int:
        self.sent += 1
        return sum(len(b) for b in buffers)

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_worker() -> tuple[Worker, list[Connection]]:
    """A worker (never started) holding :data:`PASS_CONNECTIONS` fake connections."""
    config = ServerConfig(max_requests_per_connection=2**62)
    worker = Worker(0, Handler(), config, lambda descriptors, connections: None, lambda name: None)
    conns = []
    for i in range(PASS_CONNECTIONS):
        transport = FakeTransport(100_000 + i)
        addr = ("127.0.0.1", 40_000 + i)
        deadline = time.monotonic() + 60
        conn = Connection(transport, addr, deadline, worker._limits, worker._memo)  # type: ignore[arg-type]
        worker._conns[conn.fd] = conn
        conns.append(conn)
    return worker, conns


def per_request_us(passes: int) -> float:
    """Best of 5: microseconds per request over ``passes`` passes of 64 connections."""
    worker, conns = make_worker()
    on_readable = worker._on_readable
    answer = worker._answer_read

    def run() -> None:
        for _ in range(passes):
            for conn in conns:
                on_readable(conn)
            answer()

    run()  # warm the memos
    best = min(timeit.repeat(run, number=1, repeat=5))
    answered = sum(c.transport.sent for c in conns)  # type: ignore[attr-defined]
    if answered != 6 * passes * PASS_CONNECTIONS or any(c.out for c in conns):
        raise SystemExit(f"the worker did not answer every request ({answered} answers)")
    return best * 1e6 / (passes * PASS_CONNECTIONS)


def parts_us(number: int) -> list[tuple[str, float]]:
    """Best of 5, in microseconds, for each part of the path."""
    worker, conns = make_worker()
    conn = conns[0]
    head = parse_head(REQUEST, 0, worker._limits, conn.addr, worker._memo, 0.0)
    assert head is not None
    handler = Handler()
    limits, memo, addr = worker._limits, worker._memo, conn.addr

    def respond() -> None:
        resp = Response()
        handler.handle_request(head.request, resp)
        worker._finish(conn, head, resp, 0.0)
        conn.out.clear()

    def respond_send() -> None:
        resp = Response()
        handler.handle_request(head.request, resp)
        worker._finish(conn, head, resp, 0.0)
        worker._send(conn)

    def handle() -> None:
        handler.handle_request(head.request, Response())

    steps = [
        ("parse_head, head remembered (builds Request and Head)", lambda: parse_head(REQUEST, 0, limits, addr, memo, 0.0)),
        ("Response() and the handler", handle),
        ("the handler, then _finish: the response bytes", respond),
        ("the handler, _finish, then _send: flush and keep-alive deadline", respond_send),
    ]  # fmt: skip
    return [
        (name, min(timeit.repeat(fn, number=number, repeat=5)) * 1e6 / number) for name, fn in steps
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few thousand requests: a smoke run")
    args = parser.parse_args()
    passes, number = (20, 2000) if args.quick else (2000, 200_000)
    print(f"Python {sys.version.split()[0]}")
    print(
        f"{per_request_us(passes):7.3f} µs  whole path, per request (passes of {PASS_CONNECTIONS} connections)"
    )
    for name, us in parts_us(number):
        print(f"{us:7.3f} µs  {name}")


if __name__ == "__main__":
    main()
