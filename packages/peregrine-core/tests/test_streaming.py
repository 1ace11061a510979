"""Streamed response bodies (Response.set_stream, Response.stream) and request bodies spooled
to a temporary file (Request.body_file), over real sockets."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from peregrine_core import ClientDisconnected, Request, Response, Server, ServerConfig
from peregrine_core._config import PollerName
from peregrine_core.testing import serve

from conftest import TIMEOUT, Reader, connect

PIECE = b"0123456789abcdef" * 4096  # 64 KiB


class Source:
    """An iterable body that records how far it was iterated and whether it was closed."""

    def __init__(self, pieces: int, piece: bytes = PIECE, wait: threading.Event | None = None) -> None:
        self.pieces = pieces
        self.piece = piece
        self.wait = wait
        self.produced = 0
        self.closed = threading.Event()
        self.disconnected = False

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.pieces):
            if i == 1 and self.wait is not None and not self.wait.wait(TIMEOUT):
                raise AssertionError("the first piece never reached the client")
            self.produced += len(self.piece)
            yield self.piece

    def close(self) -> None:
        self.closed.set()


class Streamer:
    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}
        self.lock = threading.Lock()
        self.seen: list[Request] = []
        self.files: list[object] = []

    def add(self, path: str, source: Source) -> Source:
        self.sources[path] = source
        return source

    def handle_request(self, req: Request, resp: Response) -> None:
        path = req.path
        length = req.get_header("x-length")
        if path in self.sources:
            resp.add_header("Content-Type", "application/octet-stream")
            resp.set_stream(self.sources[path], None if length is None else int(length))
        elif path == "/fast":
            resp.set_body("fast\n")
        elif path == "/sleep-then-stream":  # detached before its body is produced
            time.sleep(0.05)
            resp.set_stream(self.sources["/sleep-then-stream"])
        elif path == "/write-big":  # the writer fills the window inline: the call is detached
            w = resp.stream()
            for _ in range(64):
                w.write(PIECE)
        elif path == "/write-gone":  # the client leaves while the writer writes
            w = resp.stream()
            try:
                for _ in range(100_000):
                    w.write(PIECE)
            except ClientDisconnected:
                self.seen.append(req)
        elif path == "/write":
            w = resp.stream()
            w.write(b"first,")
            w(b"second,")
            resp.set_stream([b"third"])
        elif path == "/not-bytes":
            resp.set_stream(["text"])  # type: ignore[list-item]
        elif path == "/fails-late":

            def gen() -> Iterator[bytes]:
                for _ in range(20):
                    yield PIECE
                raise RuntimeError("the database went away")

            resp.set_stream(gen())
        elif path == "/fails-early":

            def early() -> Iterator[bytes]:
                raise RuntimeError("nothing to send")
                yield b""  # pragma: no cover

            resp.set_stream(early())
        elif path == "/upload":
            file = req.body_file
            self.files.append(file)
            total = 0
            while chunk := file.read(1 << 16):
                total += len(chunk)
            resp.set_body(f"{total} {req.body_length} {req.scheme} {req.local_addr!r}")
        elif path == "/upload-body":
            body = req.body
            resp.set_body(f"{len(body)} {body[:4]!r} {body[-4:]!r}")
        else:
            resp.status = 404


@pytest.fixture
def streamer() -> Streamer:
    return Streamer()


@pytest.fixture
def server(streamer: Streamer, poller_name: PollerName) -> Iterator[Server]:
    config = ServerConfig(
        write_timeout=1.0, body_buffer_bytes=65_536, max_body_bytes=64 << 20, poller=poller_name
    )
    with serve(streamer, config=config) as srv:
        yield srv


def read_chunked(reader: Reader) -> bytes:
    """The de-chunked body after a response head (strictly framed)."""
    body = bytearray()
    while True:
        while b"\r\n" not in reader.buf:
            assert reader._fill(), "connection closed inside a chunked body"
        line, _, reader.buf = reader.buf.partition(b"\r\n")
        size = int(line, 16)
        while len(reader.buf) < size + 2:
            assert reader._fill(), "connection closed inside a chunk"
        assert reader.buf[size : size + 2] == b"\r\n"
        body += reader.buf[:size]
        reader.buf = reader.buf[size + 2 :]
        if size == 0:
            return bytes(body)


def read_to_eof(reader: Reader) -> bytes:
    while True:
        try:
            if not reader._fill():
                break
        except ConnectionResetError:
            break
    data, reader.buf = reader.buf, b""
    return data


def test_a_small_stream_goes_out_with_a_content_length(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/small", Source(2, b"hello "))
    with connect(server.port) as sock:
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status == 200
        assert reply.header("content-length") == "12"
        assert reply.header("transfer-encoding") is None
        assert reply.body == b"hello hello "
        assert reader.response().body == b"fast\n"  # keep-alive, pipelined, in order
    assert source.closed.wait(TIMEOUT)


def test_a_large_stream_is_chunked_and_arrives_whole(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/big", Source(160))  # 10 MiB
    with connect(server.port) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("transfer-encoding") == "chunked"
        assert reply.header("content-length") is None
        body = read_chunked(reader)
        assert body == PIECE * 160
        assert reader.response().body == b"fast\n"  # the pipelined request after it
    assert source.closed.wait(TIMEOUT)


class Paced:
    """Yields ``piece N;`` for N in 0..count-1, each after the client has received the one
    before (it sets ``received[N - 1]``): a server that holds pieces back deadlocks it."""

    def __init__(self, count: int) -> None:
        self.received = [threading.Event() for _ in range(count)]
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for i in range(len(self.received)):
                if i and not self.received[i - 1].wait(TIMEOUT):
                    raise AssertionError(f"piece {i - 1} never reached the client")
                yield b"piece %d;" % i
        finally:
            self.closed.set()


@pytest.mark.parametrize("offloaded", [False, True], ids=["inline", "on-a-handler-thread"])
def test_pieces_are_sent_as_they_are_produced(server: Server, streamer: Streamer, offloaded: bool) -> None:
    if offloaded:  # a call that blocked puts the worker in offload mode for a while
        streamer.add("/sleep-then-stream", Source(1, b"warm"))
        with connect(server.port) as sock:
            sock.sendall(b"GET /sleep-then-stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            read_to_eof(Reader(sock))
    paced = Paced(4)
    streamer.sources["/paced"] = paced  # type: ignore[assignment]
    with connect(server.port) as sock:
        sock.sendall(b"GET /paced HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("transfer-encoding") == "chunked"
        for i in range(4):
            while b"piece %d;" % i not in reader.buf:
                assert reader._fill(), f"closed before piece {i}"
            paced.received[i].set()
        assert read_chunked(reader) == b"piece 0;piece 1;piece 2;piece 3;"
    assert paced.closed.wait(TIMEOUT)


def test_a_declared_length_is_sent_as_content_length(server: Server, streamer: Streamer) -> None:
    streamer.add("/sized", Source(64))
    size = 64 * len(PIECE)
    with connect(server.port) as sock:
        sock.sendall(b"GET /sized HTTP/1.1\r\nHost: x\r\nX-Length: %d\r\n\r\n" % size)
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("content-length") == str(size)
        assert reply.body == PIECE * 64
        assert reader.response().body == b"fast\n"


def test_a_body_shorter_than_declared_ends_the_connection(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/short", Source(64))
    size = 64 * len(PIECE)
    with connect(server.port) as sock:
        sock.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\nX-Length: %d\r\n\r\n" % (size + 10))
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        while b"\r\n\r\n" not in reader.buf:
            assert reader._fill()
        head, _, reader.buf = reader.buf.partition(b"\r\n\r\n")
        assert b"Content-Length: %d" % (size + 10) in head
        rest = read_to_eof(reader)
        assert rest == PIECE * 64  # cut short: the client can tell; never another response
    assert source.closed.wait(TIMEOUT)


def test_a_body_longer_than_declared_is_cut_at_the_length(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/long", Source(64))
    with connect(server.port) as sock:
        sock.sendall(b"GET /long HTTP/1.1\r\nHost: x\r\nX-Length: 1000000\r\n\r\n")
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("content-length") == "1000000"
        assert reply.body == (PIECE * 64)[:1000000]
        assert reader.closed(), "bytes after the declared length, or a response to /fast"
    assert source.closed.wait(TIMEOUT)
    assert source.produced < 64 * len(PIECE)  # the producer was stopped


def test_a_small_body_of_the_wrong_length_is_a_500(server: Server, streamer: Streamer) -> None:
    streamer.add("/tiny", Source(1, b"abc"))
    with connect(server.port) as sock:
        sock.sendall(b"GET /tiny HTTP/1.1\r\nHost: x\r\nX-Length: 10\r\n\r\n")
        reply = Reader(sock).response()
        assert reply.status == 500


def test_http10_gets_a_close_delimited_body(server: Server, streamer: Streamer) -> None:
    streamer.add("/old", Source(64))
    with connect(server.port) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reader = Reader(sock)
        while b"\r\n\r\n" not in reader.buf:
            assert reader._fill()
        head, _, reader.buf = reader.buf.partition(b"\r\n\r\n")
        assert b"Content-Length" not in head
        assert b"Transfer-Encoding" not in head
        assert b"Connection: close" in head
        assert read_to_eof(reader) == PIECE * 64


def test_head_iterates_nothing_and_closes_the_source(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/head", Source(64))
    with connect(server.port) as sock:
        sock.sendall(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response(head_request=True)
        assert reply.status == 200
        assert reader.response().body == b"fast\n"  # no body bytes came between the two
    assert source.closed.wait(TIMEOUT)
    assert source.produced == 0


def test_a_client_that_does_not_read_holds_the_producer_back(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/endless", Source(100_000))  # 6.25 GiB if nothing held it back
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        produced = source.produced
        time.sleep(0.3)
        assert source.produced == produced  # it waits
        assert produced < 16 * 1024 * 1024  # bounded: socket buffers and two stream windows
        assert not source.closed.is_set()
    # The client went away: the producer is stopped and closed (at the latest when the
    # write timeout, 1 s here, cuts the stalled connection).
    assert source.closed.wait(TIMEOUT)


def test_a_stalled_client_is_cut_off_by_the_write_timeout(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/stall", Source(100_000))
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        assert source.closed.wait(TIMEOUT)  # the connection stays open on this side
        assert 0.8 < time.monotonic() - started < 4.0


def test_a_waiting_stream_does_not_stall_other_clients(server: Server, streamer: Streamer) -> None:
    release = threading.Event()
    source = streamer.add("/waiting", Source(2, b"tick;", wait=release))
    with connect(server.port) as slow:
        slow.sendall(b"GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(slow)
        reader.response()
        while b"tick;" not in reader.buf:
            assert reader._fill()
        # The stream's producer waits for ``release``; others are served meanwhile.
        for _ in range(20):
            started = time.monotonic()
            with connect(server.port) as sock:
                sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
                assert Reader(sock).response().body == b"fast\n"
            assert time.monotonic() - started < 0.5
        release.set()
        assert read_chunked(reader) == b"tick;" * 2
    assert source.closed.wait(TIMEOUT)


def test_the_writer_and_a_following_iterable_make_one_body(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = Reader(sock).response()
        assert reply.body == b"first,second,third"


def test_a_piece_that_is_not_bytes_is_an_error(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /not-bytes HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(sock).response().status == 500


def test_a_producer_that_fails_before_sending_gets_a_500(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /fails-early HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(sock).response().status == 500


def test_a_producer_that_fails_midway_ends_the_connection(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /fails-late HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("transfer-encoding") == "chunked"
        with pytest.raises(AssertionError, match="connection closed"):
            read_chunked(reader)  # no final chunk: the client can tell it is incomplete


def test_client_disconnected_is_a_connection_error() -> None:
    assert issubclass(ClientDisconnected, ConnectionError)


# --- request bodies ------------------------------------------------------------------------


def _spool_files() -> int:
    """Anonymous temporary files this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "(deleted)" in target or target.startswith("/tmp/#"):
            count += 1
    return count


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")


@needs_proc
def test_a_large_upload_is_spooled_and_its_file_removed(server: Server, streamer: Streamer) -> None:
    size = 5 * 1024 * 1024 + 7  # over body_buffer_bytes (64 KiB in this server)
    before = _spool_files()
    with connect(server.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(PIECE)):
            sock.sendall(PIECE)
        sock.sendall(b"x" * (size % len(PIECE)))
        reply = Reader(sock).response()
        total, length, scheme, local = reply.body.decode().split(" ", 3)
        assert int(total) == int(length) == size
        assert scheme == "http"
        assert local == repr(("127.0.0.1", server.port))
    assert streamer.files and streamer.files[0].closed  # type: ignore[attr-defined]
    assert _spool_files() == before


@needs_proc
def test_a_chunked_upload_is_spooled_and_de_chunked(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /upload-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(40):
            sock.sendall(b"%x\r\n%s\r\n" % (len(PIECE), bytes([65 + i % 26]) * len(PIECE)))
        sock.sendall(b"0\r\n\r\n")
        reply = Reader(sock).response()
        assert reply.body == b"%d %r %r" % (40 * len(PIECE), b"AAAA", bytes([65 + 39 % 26]) * 4)


@needs_proc
def test_an_upload_cut_off_leaves_no_file(server: Server) -> None:
    before = _spool_files()
    with connect(server.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        for _ in range(10):
            sock.sendall(PIECE)
        deadline = time.monotonic() + TIMEOUT
        while _spool_files() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _spool_files() == before + 1  # the body is arriving into a file
    deadline = time.monotonic() + TIMEOUT
    while _spool_files() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _spool_files() == before


def test_expect_continue_is_answered_before_a_spooled_body(server: Server) -> None:
    size = 1024 * 1024
    with connect(server.port) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % size
        )
        reader = Reader(sock)
        assert reader.response().status == 100
        sock.sendall(b"y" * size)
        assert reader.response().body.startswith(b"%d %d " % (size, size))


def test_a_body_over_the_limit_gets_413_and_no_continue(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
            % (65 << 20)
        )
        assert Reader(sock).response().status == 413


def test_local_addr_and_scheme_of_a_hand_built_request() -> None:
    req = Request("GET", "/", "HTTP/1.1", [])
    assert req.local_addr is None
    assert req.scheme == "http"
    assert req.body_file.read() == b""
    assert req.body_length == 0


def test_a_call_detached_before_its_body_streams_it_whole(server: Server, streamer: Streamer) -> None:
    source = streamer.add("/sleep-then-stream", Source(64))
    with connect(server.port) as sock:
        sock.sendall(b"GET /sleep-then-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("transfer-encoding") == "chunked"
        assert read_chunked(reader) == PIECE * 64
        assert reader.response().body == b"fast\n"
    assert source.closed.wait(TIMEOUT)


def test_streams_during_offload_mode_arrive_whole(server: Server, streamer: Streamer) -> None:
    # After a call blocked, calls start on handler threads for a while: bodies streamed
    # from there arrive as well, on several connections at once.
    streamer.add("/sleep-then-stream", Source(1, b"warm"))
    with connect(server.port) as sock:
        sock.sendall(b"GET /sleep-then-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert (read_chunked(reader) if reply.header("transfer-encoding") else reply.body) == b"warm"
    sources = [streamer.add(f"/offloaded{i}", Source(32)) for i in range(4)]
    socks = [connect(server.port) for _ in sources]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"GET /offloaded%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        for sock in socks:
            reader = Reader(sock)
            reply = reader.response()
            body = read_chunked(reader) if reply.header("transfer-encoding") else reply.body
            assert body == PIECE * 32
    finally:
        for sock in socks:
            sock.close()
    for source in sources:
        assert source.closed.wait(TIMEOUT)


def test_a_writer_that_fills_the_window_is_sent_whole(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /write-big HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reply = reader.response()
        assert reply.header("transfer-encoding") == "chunked"
        assert read_chunked(reader) == PIECE * 64
        assert reader.response().body == b"fast\n"


def test_a_writer_learns_that_its_client_is_gone(server: Server, streamer: Streamer) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /write-gone HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reader.response()
        reader._fill()
    deadline = time.monotonic() + TIMEOUT
    while not streamer.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.path for r in streamer.seen] == ["/write-gone"]


def test_the_access_log_counts_a_streamed_body(streamer: Streamer, caplog: pytest.LogCaptureFixture) -> None:
    streamer.add("/logged", Source(8))
    with (
        caplog.at_level(logging.INFO, logger="peregrine_core.access"),
        serve(streamer, config=ServerConfig(access_log=True)) as srv,
        connect(srv.port) as sock,
    ):
        sock.sendall(b"GET /logged HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        reader.response()
        assert read_chunked(reader) == PIECE * 8
    lines = [r.getMessage() for r in caplog.records if r.name == "peregrine_core.access"]
    assert any(f'"GET /logged HTTP/1.1" 200 {8 * len(PIECE)} ' in line for line in lines), lines
