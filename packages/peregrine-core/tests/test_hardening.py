"""Server-side protections: body deadlines, 100-continue refusals, attacks under load, log floods."""

from __future__ import annotations

import http.client
import logging
import socket
import statistics
import threading
import time

import pytest

from peregrine_core import Request, Response, ServerConfig
from peregrine_core.testing import serve

from conftest import TIMEOUT, Reader, connect, exchange


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def handle_request(self, req: Request, resp: Response) -> None:
        with self.lock:
            self.seen.append(f"{req.method} {req.target} {len(req.body)}")
        resp.set_body(b"ok")


def test_body_deadline_answers_408_to_a_body_that_never_completes() -> None:
    handler = Recorder()
    with serve(handler, config=ServerConfig(body_timeout=0.5)) as srv, connect(srv.port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status == 408 and reply.header("connection") == "close"
        assert 0.4 < time.monotonic() - started < 1.5
        assert reader.closed()
    assert handler.seen == []


def test_expect_100_continue_with_a_too_large_body_gets_413_without_100() -> None:
    handler = Recorder()
    with serve(handler, config=ServerConfig(max_body_bytes=1000)) as srv, connect(srv.port) as sock:
        sock.sendall(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status == 413 and reply.header("connection") == "close"
        assert reader.closed()
    assert handler.seen == []


def test_oversized_chunked_body_is_refused_as_it_arrives() -> None:
    handler = Recorder()
    with serve(handler, config=ServerConfig(max_body_bytes=1000)) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"200\r\n" + b"a" * 0x200 + b"\r\n")
        sock.sendall(b"200\r\n")  # the running total now exceeds the limit
        reply = Reader(sock).response()
        assert reply.status == 413
    assert handler.seen == []


def test_chunked_body_is_decoded_for_the_handler() -> None:
    handler = Recorder()
    with serve(handler) as srv:
        reply, closed = exchange(
            srv.port,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        assert reply.status == 200 and closed
    assert handler.seen == ["POST /c 5"]


def test_a_flood_of_bad_requests_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with serve(Recorder()) as srv, caplog.at_level(logging.INFO, logger="peregrine_core"):
        for _ in range(100):
            reply, _ = exchange(srv.port, b"BAD\x01REQUEST\r\n\r\n")
            assert reply.status == 400
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 2
    assert "\x01" not in warnings[0].getMessage()


def test_normal_clients_are_served_promptly_during_slowloris_and_a_flood_of_garbage() -> None:
    """300 slowloris connections and a garbage flood; normal requests keep a low latency."""
    handler = Recorder()
    config = ServerConfig(header_timeout=30.0)
    stop = threading.Event()
    with serve(handler, config=config) as srv:
        loris: list[socket.socket] = []
        for _ in range(300):
            s = connect(srv.port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            loris.append(s)

        def trickle() -> None:
            while not stop.wait(0.2):
                for s in loris:
                    try:
                        s.send(b"X: y\r\n")
                    except OSError:
                        pass

        flood_count = [0]

        def flood() -> None:
            while not stop.is_set():
                try:
                    with connect(srv.port) as s:
                        s.sendall(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
                        s.recv(4096)
                        flood_count[0] += 1
                except OSError:
                    pass

        workers = [threading.Thread(target=trickle), threading.Thread(target=flood)]
        for t in workers:
            t.start()
        latencies = []
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                conn.request("GET", "/normal")
                assert conn.getresponse().read() == b"ok"
                latencies.append(time.perf_counter() - started)
            conn.close()
        finally:
            stop.set()
            for t in workers:
                t.join(TIMEOUT)
            for s in loris:
                s.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"normal requests: {len(latencies)} in 3 s, median {statistics.median(latencies) * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms; garbage connections answered: {flood_count[0]}"
    )
    assert len(latencies) > 100
    assert p99 < 0.5
    assert flood_count[0] > 10
    assert not any("\x00" in s for s in handler.seen)
