"""The server end to end, driven by real clients over loopback."""

from __future__ import annotations

import http.client
import logging
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from peregrine_core import Request, Response, Server, ServerConfig, Status
from peregrine_core._config import PollerName
from peregrine_core.testing import serve

from conftest import TIMEOUT, Reader, connect, exchange


class Echo:
    """Answers with the method, path, query and body it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def handle_request(self, req: Request, resp: Response) -> None:
        with self.lock:
            self.seen.append(f"{req.method} {req.target}")
        if req.path == "/boom":
            raise RuntimeError("handler failure")
        if req.path == "/sleep":
            time.sleep(float(req.query or "1"))
        if req.path == "/status":
            resp.status = int(req.query)
        if req.path == "/big":
            resp.set_body(b"0123456789abcdef" * (int(req.query) // 16))
            return
        resp.add_header("Content-Type", "text/plain")
        resp.set_body(f"{req.method} {req.path} {req.query} {len(req.body)}\n")


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def server(echo: Echo) -> Iterator[Server]:
    with serve(echo, config=ServerConfig(keepalive_timeout=5.0)) as srv:
        yield srv


def test_get_has_content_length_date_and_keep_alive(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    conn.request("GET", "/hello?x=1")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b"GET /hello x=1 0\n"
    assert resp.getheader("Content-Length") == "17"
    assert resp.getheader("Date", "").endswith(" GMT")
    assert resp.getheader("Connection") is None  # HTTP/1.1 persists by default (RFC 9112 §9.3)
    assert resp.getheader("Keep-Alive") is None
    # the same connection serves a second request
    conn.request("POST", "/p", body=b"abc")
    resp = conn.getresponse()
    assert resp.read() == b"POST /p  3\n"
    conn.close()


def test_curl_gets_the_response(server: Server) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (CI installs it)")
    out = subprocess.run(
        [curl, "-sS", "-i", f"http://127.0.0.1:{server.port}/c?u=1"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert out.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.stdout.endswith(b"\r\n\r\nGET /c u=1 0\n")


def test_every_poller_backend_serves_keep_alive_and_pipelined_requests(poller_name: PollerName) -> None:
    with serve(Echo(), config=ServerConfig(poller=poller_name)) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().body == b"GET /a  0\n"
        assert reader.response().body == b"GET /b  0\n"
        sock.sendall(b"GET /big?65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(reader.response().body) == 65536


def test_http10_closes_unless_keep_alive_is_asked(server: Server) -> None:
    reply, closed = exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert reply.status == 200 and reply.header("connection") == "close" and closed
    with connect(server.port) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            reply = reader.response()
            assert reply.header("connection") == "keep-alive"
            assert reply.header("keep-alive") == "timeout=5"


def test_http11_connection_close_is_honoured(server: Server) -> None:
    reply, closed = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.status == 200 and reply.header("connection") == "close" and closed


def test_request_arriving_one_byte_at_a_time_is_served(server: Server) -> None:
    data = b"POST /slow?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    with connect(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(0.001)
        assert Reader(sock).response().body == b"POST /slow q=1 5\n"


def test_pipelined_requests_are_answered_in_order_and_trailing_bytes_kept(server: Server, echo: Echo) -> None:
    many = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(100))
    with connect(server.port) as sock:
        sock.sendall(many + b"GET /last HTTP/1.1\r\nHo")
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(100)]
        assert bodies == [b"GET /%d  0\n" % i for i in range(100)]
        time.sleep(0.05)
        sock.sendall(b"st: x\r\n\r\n")
        assert reader.response().body == b"GET /last  0\n"


class Stamps:
    """Records each request's ``received_at`` and when its handler began."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}

    def handle_request(self, req: Request, resp: Response) -> None:
        self.seen[req.path] = (req.received_at, time.monotonic())
        if req.path == "/slow":
            time.sleep(0.3)


def test_requests_read_in_one_pass_share_a_received_at_taken_after_the_reads() -> None:
    stamps = Stamps()
    # handoff_delay 1 s: the slow call keeps the loop while the other requests arrive.
    with (
        serve(stamps, config=ServerConfig(workers=1, handoff_delay=1.0)) as srv,
        connect(srv.port) as slow,
        connect(srv.port) as a,
        connect(srv.port) as b,
    ):
        for sock in (a, b):  # both connections are with the worker before the test starts
            sock.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
            assert Reader(sock).response().status == 200
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # the worker is busy in the slow handler now
        sent_before = time.monotonic()
        a.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a2 HTTP/1.1\r\nHost: x\r\n\r\n")
        b.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        sent_after = time.monotonic()
        for sock, count in ((slow, 1), (a, 2), (b, 1)):
            reader = Reader(sock)
            for _ in range(count):
                assert reader.response().status == 200
    received_a, began_a = stamps.seen["/a"]
    # Both connections became readable during the slow handler: read in the same pass,
    # pipelined requests included, then answered; the stamp follows every one of those reads.
    assert stamps.seen["/a2"][0] == received_a == stamps.seen["/b"][0]
    assert sent_after <= received_a <= began_a
    assert sent_before <= received_a
    assert stamps.seen["/slow"][0] < sent_before


@pytest.mark.parametrize(
    ("head", "rest"),
    [
        (b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", b"cde"),
        (b"POST /late HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", b"cde\r\n0\r\n\r\n"),
    ],
)
def test_a_body_that_arrives_later_moves_received_at_to_its_last_byte(head: bytes, rest: bytes) -> None:
    stamps = Stamps()
    with serve(stamps, config=ServerConfig(workers=1)) as srv, connect(srv.port) as sock:
        sock.sendall(head)
        time.sleep(0.2)  # the head is parsed; the body is not complete
        sent = time.monotonic()
        sock.sendall(rest)
        assert Reader(sock).response().status == 200
    received, began = stamps.seen["/late"]
    assert sent <= received <= began


def test_a_request_built_by_hand_was_received_when_it_was_made() -> None:
    before = time.monotonic()
    req = Request("GET", "/", "HTTP/1.1", [("Host", "x")])
    assert before <= req.received_at <= time.monotonic()
    assert Request("GET", "/", "HTTP/1.1", [], received_at=5.0).received_at == 5.0


def test_pipelining_client_that_does_not_read_is_paused_not_buffered() -> None:
    # A client that pipelines requests and never reads must not make the server queue a
    # response for each: once a batch cannot be sent the server stops reading, so the
    # client's sends block after the kernel buffers fill (~10 MB here), not after 50 MB.
    with serve(Echo()) as srv, connect(srv.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        request = b"GET /big?4096 HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (b"p" * 1000)
        sock.settimeout(1.0)
        sent = 0
        try:
            for _ in range(50_000):
                sock.sendall(request)
                sent += 1
        except TimeoutError:
            pass
        sock.settimeout(TIMEOUT)
        assert sent < 50_000, "the server kept reading although nobody read its responses"
        reader = Reader(sock)
        for _ in range(sent):
            assert len(reader.response().body) == 4096


def test_large_response_reaches_a_slow_reader_intact() -> None:
    size = 50 * 1024 * 1024
    with serve(Echo()) as srv, connect(srv.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.sendall(b"GET /big?%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert b"Content-Length: %d\r\n" % size in head
        received = 0
        chunk = b"0123456789abcdef" * 4096
        pauses = 0
        while received < size:
            data = sock.recv(min(65536, size - received))
            assert data, "connection closed early"
            assert data == chunk[received % 65536 : received % 65536 + len(data)] or data in chunk * 2
            received += len(data)
            if pauses < 20 and received > pauses * 2_000_000:
                time.sleep(0.05)  # a slow reader: the server must wait, not drop it
                pauses += 1
        assert received == size


def test_handler_exception_gives_500_and_the_server_keeps_serving(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="peregrine_core.server"), connect(server.port) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.response().status == 500
        assert reader.response().body == b"GET /ok  0\n"
    assert any(r.exc_info and "handler failure" in str(r.exc_info[1]) for r in caplog.records)


def test_response_splitting_through_a_header_value_is_impossible() -> None:
    class Splitter:
        def handle_request(self, req: Request, resp: Response) -> None:
            resp.add_header("X-Bad", "a\r\nSet-Cookie: evil=1")

    with serve(Splitter()) as srv:
        reply, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 500
        assert reply.header("set-cookie") is None


@pytest.mark.parametrize(
    ("version", "extra", "connection"),
    [
        (b"HTTP/1.1", b"", "Upgrade, keep-alive"),
        (b"HTTP/1.1", b"Connection: close\r\n", "Upgrade, close"),
        (b"HTTP/1.0", b"", "Upgrade, close"),
    ],
)
def test_an_upgrade_header_added_by_a_handler_is_listed_in_connection(
    version: bytes, extra: bytes, connection: str
) -> None:
    class UpgradeRequired:
        def handle_request(self, req: Request, resp: Response) -> None:
            resp.status = 426
            resp.add_header("Upgrade", "websocket")
            resp.set_body(b"use websocket\n")

    with serve(UpgradeRequired()) as srv:
        reply, closed = exchange(srv.port, b"GET / %s\r\nHost: x\r\n%s\r\n" % (version, extra))
        assert reply.status == 426 and reply.body == b"use websocket\n"
        assert reply.header("upgrade") == "websocket"
        assert reply.header("connection") == connection
        assert closed == connection.endswith("close")


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_and_no_content_length(server: Server, status: int) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            b"GET /status?%d HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n" % status
        )
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status == status and reply.header("content-length") is None
        assert reader.response().body == b"GET /after  0\n"


def test_head_gets_the_get_headers_and_no_body(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"HEAD /big?1024 HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response(head_request=True)
        assert reply.header("content-length") == "1024"
        assert reader.response().body == b"GET /next  0\n"


def test_client_half_closing_after_its_request_still_gets_the_response(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        assert reader.response().body == b"GET /half  0\n"
        assert reader.closed()


def test_expect_100_continue_is_answered_before_the_body(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        interim = reader.response()
        assert interim.status == 100
        sock.sendall(b"data")
        assert reader.response().body == b"PUT /up  4\n"


def test_malformed_request_gets_400_and_the_connection_closes(server: Server, echo: Echo) -> None:
    reply, closed = exchange(server.port, b"GARBAGE\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 400 and reply.header("connection") == "close" and closed
    assert not any("smuggled" in s for s in echo.seen)


def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    with serve(Echo(), config=ServerConfig(keepalive_timeout=0.5)) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().header("connection") is None
        started = time.monotonic()
        assert reader.closed(timeout=3.0)
        assert 0.3 < time.monotonic() - started < 2.0


def test_request_arriving_just_before_the_idle_timeout_is_served() -> None:
    with serve(Echo(), config=ServerConfig(keepalive_timeout=1.0)) as srv, connect(srv.port) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader.response()
        time.sleep(0.7)
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.response().body == b"GET /again  0\n"


def test_header_deadline_is_absolute_so_a_trickling_client_gets_408() -> None:
    config = ServerConfig(header_timeout=1.0)
    with serve(Echo(), config=config) as srv, connect(srv.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(50):  # one header line every 0.1 s, until the server answers
            sock.sendall(b"X-A: b\r\n")
            if select.select([sock], [], [], 0.1)[0]:
                break
        answered = time.monotonic() - started
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status == 408 and reply.header("connection") == "close"
        assert 0.9 < answered < 1.6
        assert reader.closed()


def test_client_that_stops_reading_is_dropped_after_the_write_timeout() -> None:
    with serve(Echo(), config=ServerConfig(write_timeout=0.5)) as srv, connect(srv.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /big?%d HTTP/1.1\r\nHost: x\r\n\r\n" % (20 * 1024 * 1024))
        time.sleep(2.0)
        received = 0
        sock.settimeout(2.0)
        with pytest.raises((ConnectionError, OSError)):
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionResetError("closed")
                received += len(data)
        assert received < 20 * 1024 * 1024


def test_max_requests_per_connection_closes_after_the_last(echo: Echo) -> None:
    with serve(echo, config=ServerConfig(max_requests_per_connection=3)) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        reader = Reader(sock)
        assert [reader.response().header("connection") for _ in range(3)] == [None, None, "close"]
        assert reader.closed()
    assert len(echo.seen) == 3


def test_max_connections_pauses_accepting_until_one_closes() -> None:
    with serve(Echo(), config=ServerConfig(max_connections=2)) as srv:
        a, b = connect(srv.port), connect(srv.port)
        for s in (a, b):
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            Reader(s).response()
        c = connect(srv.port)  # completes in the kernel's backlog
        c.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.recv(1)
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.2, "accepting at the limit must not spin"
        a.close()
        c.settimeout(TIMEOUT)
        assert Reader(c).response().body == b"GET /third  0\n"
        b.close()
        c.close()


def test_idle_server_uses_no_cpu() -> None:
    with serve(Echo()) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        Reader(sock).response()
        cpu = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - cpu < 0.05


def test_accept_survives_running_out_of_file_descriptors(caplog: pytest.LogCaptureFixture) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hog: list[int] = []
    with serve(Echo()) as srv:
        client = socket.socket()
        client.settimeout(TIMEOUT)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            with caplog.at_level(logging.WARNING, logger="peregrine_core.server"):
                try:
                    while True:
                        hog.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    pass
                # every descriptor is taken: the server cannot accept this connection
                client.connect(("127.0.0.1", srv.port))
                time.sleep(0.3)
                for fd in hog:
                    os.close(fd)
                hog.clear()
                client.sendall(b"GET /after-emfile HTTP/1.1\r\nHost: x\r\n\r\n")
                assert Reader(client).response().body == b"GET /after-emfile  0\n"
        finally:
            for fd in hog:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            client.close()
    assert any("accept() failed" in r.getMessage() for r in caplog.records)


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def handle_request(self, req: Request, resp: Response) -> None:
        with self.lock:
            n = self.count
            self.count = n + 1
        resp.set_body(b"counter=%d\n" % n)


def test_concurrent_keep_alive_clients_are_each_counted_exactly_once() -> None:
    counter = Counter()
    threads, per_thread = 8, 150
    seen: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    with serve(counter, config=ServerConfig(workers=2)) as srv:

        def client() -> None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
                for _ in range(per_thread):
                    conn.request("GET", "/")
                    body = conn.getresponse().read()
                    with lock:
                        seen.append(int(body.split(b"=")[1]))
                conn.close()
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=client) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
    assert not errors
    total = threads * per_thread
    assert counter.count == total
    assert sorted(seen) == list(range(total))


def test_status_enum_has_reason_phrases(server: Server) -> None:
    assert int(Status.NOT_FOUND) == 404 and Status.NOT_FOUND.phrase == "Not Found"
    reply, _ = exchange(server.port, b"GET /status?418 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (reply.status, reply.reason) == (418, "I'm a Teapot")


@pytest.mark.parametrize(
    "data",
    [
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        b"GET /p HTTP/1.1\r\nHost: x\r\n",
    ],
)
def test_a_request_cut_short_by_eof_is_never_handled_and_gets_400(
    server: Server, echo: Echo, data: bytes
) -> None:
    with connect(server.port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        assert reader.response().status == 400
        assert reader.closed()
    assert echo.seen == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [(413, "Content Too Large"), (416, "Range Not Satisfiable"), (422, "Unprocessable Content"), (299, "")],
)
def test_reason_phrases_are_rfc_9110s(server: Server, status: int, reason: str) -> None:
    reply, _ = exchange(server.port, b"GET /status?%d HTTP/1.1\r\nHost: x\r\n\r\n" % status)
    assert (reply.status, reply.reason) == (status, reason)


def test_a_body_arriving_in_pieces_then_a_pipelined_request_are_both_served(server: Server) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, arrives over many reads
    with connect(server.port) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1000])
        time.sleep(0.05)
        sock.sendall(body[1000:] + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().body == b"POST /up  %d\n" % len(body)
        assert reader.response().body == b"GET /next  0\n"
