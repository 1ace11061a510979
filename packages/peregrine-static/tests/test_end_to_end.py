"""Through the real server on 127.0.0.1: big downloads, ranges, validators, HEAD, attacks.

The 200 MB file is written once per module (each MiB different, so an offset error changes
the digest) and must come back byte for byte, whole and reassembled from ranges, while the
process's memory stays far below the file's size (it goes out with ``os.sendfile``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from _support import OLD_MTIME_S, write

from peregrine_core import Request, Response, ServerConfig
from peregrine_core.testing import serve
from peregrine_static import DirServer

TIMEOUT_S = 30.0
MIB = 1024 * 1024
BIG_BYTES = 200 * MIB
CHUNK_BYTES = MIB


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 200 MB file of pseudo-random MiB blocks, and its sha256."""
    directory = tmp_path_factory.mktemp("big")
    path = directory / "big.bin"
    digest = hashlib.sha256()
    seed = os.urandom(CHUNK_BYTES)
    with path.open("wb") as f:
        for i in range(BIG_BYTES // CHUNK_BYTES):
            block = i.to_bytes(8, "big") + seed[8:]
            digest.update(block)
            f.write(block)
    return directory, digest.hexdigest()


class Recorder:
    """Wraps a DirServer and remembers how each response carried its body."""

    def __init__(self, inner: DirServer) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.bodies: list[tuple[str, bool, int]] = []

    def handle_request(self, req: Request, resp: Response) -> None:
        self.inner.handle_request(req, resp)
        with self.lock:
            self.bodies.append((req.path, resp.file is not None, len(resp.body)))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's resident size every few milliseconds; keeps the maximum."""

    def __init__(self) -> None:
        self.peak = self.start = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)


def _download(
    conn: http.client.HTTPConnection, target: str, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, str, int]:
    conn.request("GET", target, headers=headers or {})
    resp = conn.getresponse()
    digest = hashlib.sha256()
    total = 0
    while chunk := resp.read(CHUNK_BYTES):
        digest.update(chunk)
        total += len(chunk)
    return resp, digest.hexdigest(), total


@pytest.fixture
def big_server(big_file: tuple[Path, str]) -> Iterator[tuple[int, Recorder]]:
    directory, _ = big_file
    recorder = Recorder(DirServer(directory))
    with serve(recorder, config=ServerConfig(workers=1)) as srv:
        yield srv.port, recorder


def test_big_file_downloads_intact_without_being_read_into_memory(
    big_file: tuple[Path, str], big_server: tuple[int, Recorder]
) -> None:
    _, expected = big_file
    port, recorder = big_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to measure memory")
    with PeakRss() as rss:
        resp, digest, total = _download(conn, "/big.bin")
    conn.close()
    assert resp.status == 200
    assert resp.getheader("Content-Length") == str(BIG_BYTES)
    assert total == BIG_BYTES
    assert digest == expected
    assert recorder.bodies == [("/big.bin", True, 0)]  # a file region, no bytes body
    # Reading the file into memory would add 200 MB at the peak.
    assert rss.peak - rss.start < 50 * MIB


def test_big_file_reassembled_from_ranges_matches(
    big_file: tuple[Path, str], big_server: tuple[int, Recorder]
) -> None:
    _, expected = big_file
    port, _ = big_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    conn.request("HEAD", "/big.bin")
    head = conn.getresponse()
    head.read()
    etag = head.getheader("ETag")
    assert etag is not None
    digest = hashlib.sha256()
    piece = 37 * MIB + 12345  # not aligned with anything
    start = 0
    while start < BIG_BYTES:
        end = min(start + piece, BIG_BYTES) - 1
        # Last piece as a suffix range, the others as int-ranges, all guarded by If-Range.
        spec = f"-{BIG_BYTES - start}" if end == BIG_BYTES - 1 else f"{start}-{end}"
        conn.request("GET", "/big.bin", headers={"Range": f"bytes={spec}", "If-Range": etag})
        resp = conn.getresponse()
        assert resp.status == 206
        assert resp.getheader("Content-Range") == f"bytes {start}-{end}/{BIG_BYTES}"
        received = 0
        while chunk := resp.read(CHUNK_BYTES):
            digest.update(chunk)
            received += len(chunk)
        assert received == end - start + 1
        start = end + 1
    conn.close()
    assert digest.hexdigest() == expected


@pytest.fixture
def site(root: Path) -> Iterator[int]:
    with serve(DirServer(root, listing=True), config=ServerConfig(workers=1)) as srv:
        yield srv.port


def _get(
    port: int, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def test_conditional_and_range_answers_over_the_wire(site: int) -> None:
    status, headers, data = _get(site, "/data100.bin")
    assert status == 200 and data == bytes(range(100))
    etag = headers["etag"]
    status, headers, data = _get(site, "/data100.bin", {"If-None-Match": etag})
    assert status == 304 and data == b"" and "content-length" not in headers
    assert headers["etag"] == etag
    status, headers, data = _get(site, "/data100.bin", {"Range": "bytes=90-"})
    assert status == 206 and data == bytes(range(90, 100))
    assert headers["content-range"] == "bytes 90-99/100" and headers["content-length"] == "10"
    status, headers, data = _get(site, "/data100.bin", {"Range": "bytes=100-"})
    assert status == 416 and headers["content-range"] == "bytes */100" and data == b""
    status, headers, data = _get(site, "/data100.bin", {"Range": "bytes=0-1,5-6"})
    assert status == 200 and len(data) == 100


def test_head_over_the_wire_has_length_and_no_body(site: int) -> None:
    for target, length in (("/data100.bin", 100), ("/large.bin", 200 * 1024)):
        status, headers, data = _get(site, target, method="HEAD")
        assert status == 200
        assert headers["content-length"] == str(length)
        assert data == b""


def test_one_connection_carries_mixed_answers_in_order(site: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", site, timeout=TIMEOUT_S)
    try:
        expected = [
            ("GET", "/hello.txt", {}, 200, b"hello world\n"),
            ("HEAD", "/large.bin", {}, 200, b""),
            ("GET", "/hello.txt", {"If-Modified-Since": "Tue, 14 Nov 2023 22:13:20 GMT"}, 304, b""),
            ("GET", "/large.bin", {"Range": "bytes=-3"}, 206, None),
            ("GET", "/docs", {}, 301, b"301 Moved Permanently\n"),
            ("POST", "/hello.txt", {}, 405, b"405 Method Not Allowed\n"),
            ("GET", "/nope", {}, 404, b"404 Not Found\n"),
            ("GET", "/data100.bin", {"Range": "bytes=1-2"}, 206, b"\x01\x02"),
            ("GET", "/hello.txt", {}, 200, b"hello world\n"),
        ]
        for method, target, headers, status, data in expected:
            conn.request(method, target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == status, (method, target)
            if data is not None:
                assert body == data, (method, target)
            else:
                assert len(body) == 3
    finally:
        conn.close()


def test_precompressed_variant_over_the_wire(site: int) -> None:
    status, headers, data = _get(site, "/app.js", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert data == b"\x1f\x8b gzip bytes"


def _raw(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        b"/../outside/secret.txt",
        b"/%2e%2e/outside/secret.txt",
        b"/..%2foutside%2fsecret.txt",
        b"/..\\outside\\secret.txt",
        b"/hello.txt%00",
        b"/link_out",
        b"/dir_out/secret.txt",
        b"//evil.com/..%2f..%2f/docs",
        b"/\\evil.com/%2e%2e%2f",
        b"/.git/config",
    ],
)
def test_attacks_over_the_wire_get_a_plain_404_or_a_protocol_error(site: int, target: bytes) -> None:
    answer = _raw(site, target)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request")
    assert b"secret" not in answer
    assert b"\r\nLocation:" not in answer


def test_open_redirect_probe_over_the_wire_stays_local(site: int) -> None:
    answer = _raw(site, b"//evil.com")
    assert answer.startswith(b"HTTP/1.1 301")
    assert b"\r\nLocation: /evil.com/\r\n" in answer


def test_file_changed_on_disk_is_served_fresh_over_the_wire(root: Path, site: int) -> None:
    path = write(root / "live.txt", "one", OLD_MTIME_S)
    assert _get(site, "/live.txt")[2] == b"one"
    write(path, "two", OLD_MTIME_S + 1)
    assert _get(site, "/live.txt")[2] == b"two"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
def test_no_file_descriptor_leaks_across_every_kind_of_answer(site: int) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    requests = [
        ("GET", "/large.bin", {}),
        ("HEAD", "/large.bin", {}),
        ("GET", "/large.bin", {"Range": "bytes=10-20"}),
        ("GET", "/large.bin", {"Range": "bytes=999999999-"}),
        ("GET", "/large.bin", {"If-None-Match": "*"}),
        ("GET", "/large.bin", {"If-Match": '"nope"'}),
        ("POST", "/large.bin", {}),
        ("GET", "/hello.txt", {}),
        ("GET", "/nope", {}),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", site, timeout=TIMEOUT_S)
    try:
        conn.request("GET", "/hello.txt")
        conn.getresponse().read()
        before = open_fds()
        for _ in range(30):
            for method, target, headers in requests:
                conn.request(method, target, headers=headers)
                conn.getresponse().read()
        after = open_fds()
    finally:
        conn.close()
    assert after <= before + 2  # leaks would show 30 per kind; allow a close still in flight


def test_a_1_gb_download_keeps_memory_flat_and_other_clients_served(tmp_path: Path) -> None:
    """A sparse 1 GiB file streamed to a client that reads slowly, while others are served."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to measure memory")
    size = 1024 * MIB
    with (tmp_path / "huge.bin").open("wb") as f:
        f.truncate(size)  # sparse: no disk space used
    write(tmp_path / "small.txt", b"small", mtime=OLD_MTIME_S)
    with serve(DirServer(tmp_path), config=ServerConfig(workers=1)) as srv, PeakRss() as rss:
        received = [0]

        def slow_download() -> None:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
                sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while data := sock.recv(4 * MIB):
                    received[0] += len(data)

        downloader = threading.Thread(target=slow_download)
        downloader.start()
        latencies: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT_S)
        while downloader.is_alive() and len(latencies) < 2000:
            started = time.perf_counter()
            conn.request("GET", "/small.txt")
            assert conn.getresponse().read() == b"small"
            latencies.append(time.perf_counter() - started)
        conn.close()
        downloader.join(120)
    assert not downloader.is_alive()
    head_bytes = received[0] - size
    assert 0 < head_bytes < 1024, "the whole file (and its head) arrived"
    assert len(latencies) >= 20, "other clients were served during the download"
    latencies.sort()
    median_ms = latencies[len(latencies) // 2] * 1000
    growth_mib = (rss.peak - rss.start) / MIB
    print(f"1 GiB download: {len(latencies)} requests served meanwhile, median {median_ms:.2f} ms")
    print(f"peak RSS growth {growth_mib:.1f} MiB")
    assert latencies[len(latencies) // 2] < 0.05
    assert rss.peak - rss.start < 50 * MIB


def test_a_change_made_before_a_request_was_sent_is_always_served(root: Path) -> None:
    """Under load, requests share a ``stat`` only when it began after they were received:
    a client that changes the file and then asks for it never gets the old content."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(port: int) -> None:  # keeps the remembered stat fresh, from other connections
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
            while not stop.is_set():
                conn.request("GET", "/hello.txt")
                conn.getresponse().read()
            conn.close()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    with serve(DirServer(root, path_cache_seconds=3600), config=ServerConfig(workers=1)) as srv:
        threads = [threading.Thread(target=hammer, args=(srv.port,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT_S)
        try:
            for i in range(150):
                content = f"version {i:04d}\n"  # same size each time; the time tells them apart
                write(root / "hello.txt", content, OLD_MTIME_S + 10 + i)
                conn.request("GET", "/hello.txt")
                assert conn.getresponse().read() == content.encode()
        finally:
            conn.close()
            stop.set()
            for thread in threads:
                thread.join(TIMEOUT_S)
    assert not errors
