"""Static-file fault reports, replayed against ``python -m peregrine_static`` in a subprocess.

The server serves a fresh directory (``small.txt`` and a large ``big.bin``) on 127.0.0.1,
port 0 (read back from its ``Serving ... on`` line), optionally under a lower
``RLIMIT_NOFILE``, and is stopped by its own PID. CPU time comes from ``/proc``.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from peregrine_core.testing import ServerProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fault scenarios read /proc")

TIMEOUT_S: Final = 5.0
START_TIMEOUT_S: Final = 15.0
MAX_CPU_SHARE: Final = 0.05
SMALL: Final = b"small and always there\n"
BIG_BYTES: Final = 1024 * 1024


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "small.txt").write_bytes(SMALL)
    (root / "big.bin").write_bytes(bytes(range(256)) * (BIG_BYTES // 256))
    return root


def static_server(root: Path, *, nofile: int | None = None) -> ServerProcess:
    """``python -m peregrine_static DIR --host 127.0.0.1 --port 0 --quiet`` in a subprocess."""
    return ServerProcess(
        "peregrine_static",
        [str(root), "--host", "127.0.0.1", "--port", "0", "--quiet"],
        cwd=root.parent,
        nofile=nofile,
        ready=r"on http://127\.0\.0\.1:(\d+)/",
        start_timeout=START_TIMEOUT_S,
    )


@pytest.fixture
def start() -> Iterator[list[ServerProcess]]:
    """Servers started by the test go here; whatever is left of them is killed at the end."""
    servers: list[ServerProcess] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers} {self.body[:40]!r}>"


def parse_response(buf: bytes) -> Reply | None:
    """The response at the start of ``buf`` if it is complete (Content-Length framing)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    if len(buf) < end + 4 + length:
        return None
    return Reply(status, headers, buf[end + 4 : end + 4 + length])


def fetch(port: int, path: str, timeout: float = TIMEOUT_S) -> Reply:
    """One GET on a new connection: the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(get(path))
        buf = b""
        while (reply := parse_response(buf)) is None:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed before a complete response: {buf[:200]!r}")
            buf += data
        return reply


class Outcome:
    """What one connection of :func:`exchange_at_once` got: a response (and the seconds from
    connect() to its last byte), or ``error`` (``delayed`` when it timed out)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reply: Reply | None = None
        self.seconds = 0.0
        self.error = ""

    def __repr__(self) -> str:
        return f"<{self.path}: {self.reply or self.error} after {self.seconds * 1000:.1f} ms>"


def exchange_at_once(port: int, paths: list[str], timeout: float = TIMEOUT_S) -> list[Outcome]:
    """One connection per path, all opened at once, one GET each."""
    sel = selectors.DefaultSelector()
    outcomes = [Outcome(path) for path in paths]
    bufs: dict[socket.socket, bytes] = {}
    for outcome in outcomes:
        sock = socket.socket()
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        assert code in (0, errno.EINPROGRESS), os.strerror(code)
        bufs[sock] = b""
        sel.register(sock, selectors.EVENT_WRITE, outcome)
    started = time.monotonic()
    deadline = started + timeout
    try:
        while sel.get_map() and time.monotonic() < deadline:
            for key, events in sel.select(max(0.0, deadline - time.monotonic())):
                conn, outcome = key.fileobj, key.data
                assert isinstance(conn, socket.socket) and isinstance(outcome, Outcome)
                if events & selectors.EVENT_WRITE:
                    conn.send(get(outcome.path))
                    sel.modify(conn, selectors.EVENT_READ, outcome)
                    continue
                try:
                    data = conn.recv(1 << 20)
                except OSError as exc:
                    data, outcome.error = b"", repr(exc)
                if not data:
                    outcome.error = outcome.error or f"closed before a complete response: {bufs[conn][:80]!r}"
                    sel.unregister(conn)
                    continue
                bufs[conn] += data
                reply = parse_response(bufs[conn])
                if reply is not None:
                    outcome.reply, outcome.seconds = reply, time.monotonic() - started
                    sel.unregister(conn)
    finally:
        sel.close()
        for conn in bufs:
            conn.close()
    for outcome in outcomes:
        if outcome.reply is None and not outcome.error:
            outcome.error = "delayed"
    return outcomes


# --- 12. a slow reader next to fast clients ------------------------------------------------------

FAST_CLIENTS: Final = 20


def slow_read(sock: socket.socket, stop: threading.Event, received: list[int]) -> None:
    """Read 1 KiB every 10 ms until ``stop``."""
    while not stop.is_set():
        data = sock.recv(1024)
        if not data:
            return
        received.append(len(data))
        time.sleep(0.01)


def test_a_slow_reader_of_a_large_file_does_not_delay_other_clients(
    site: Path, start: list[ServerProcess]
) -> None:
    server = static_server(site)
    start.append(server)
    assert fetch(server.port, "/small.txt").body == SMALL  # warm
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(TIMEOUT_S)
    slow.connect(("127.0.0.1", server.port))
    stop = threading.Event()
    received: list[int] = []
    reader = threading.Thread(target=slow_read, args=(slow, stop, received), daemon=True)
    try:
        slow.sendall(get("/big.bin"))
        reader.start()
        time.sleep(0.1)  # the response is under way and its reader far behind
        results = exchange_at_once(server.port, ["/small.txt"] * FAST_CLIENTS)
        still_reading = reader.is_alive() and sum(received) < BIG_BYTES
    finally:
        stop.set()
        reader.join(TIMEOUT_S)
        slow.close()
    assert still_reading, "the slow reader finished early: nothing was tested"
    assert [o.reply.body if o.reply else o.error for o in results] == [SMALL] * FAST_CLIENTS
    seconds = sorted(o.seconds for o in results)
    assert seconds[-1] < 0.1, f"small files took {[round(s * 1000, 1) for s in seconds]} ms"


# --- 13. descriptors held by pipelined responses nobody reads ------------------------------------

NOFILE: Final = 1024
STALLED_CONNECTIONS: Final = 40
PIPELINED: Final = 32
PROBE_ROUNDS: Final = 2


def test_stalled_pipelined_downloads_never_turn_existing_files_into_404(
    site: Path, start: list[ServerProcess]
) -> None:
    server = static_server(site, nofile=NOFILE)
    start.append(server)
    stalled: list[socket.socket] = []
    try:
        for _ in range(STALLED_CONNECTIONS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(TIMEOUT_S)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(get("/big.bin") * PIPELINED)  # never read
            stalled.append(sock)
        time.sleep(0.5)
        outcomes: list[Outcome] = []
        for _ in range(PROBE_ROUNDS):  # at once, so that several need a descriptor together
            outcomes += exchange_at_once(server.port, ["/small.txt", "/big.bin"] * 5, timeout=2.0)
        cpu_before, quiet_from = server.cpu_seconds(), time.monotonic()
        time.sleep(1.5)
        share = (server.cpu_seconds() - cpu_before) / (time.monotonic() - quiet_from)
    finally:
        for sock in stalled:
            sock.close()
    sizes = {"/small.txt": len(SMALL), "/big.bin": BIG_BYTES}
    wrong = [
        o
        for o in outcomes
        if not (
            o.error == "delayed"
            or (o.reply and o.reply.status == 200 and len(o.reply.body) == sizes[o.path])
            or (o.reply and o.reply.status == 503 and "retry-after" in o.reply.headers)
        )
    ]
    assert wrong == [], wrong
    assert share < MAX_CPU_SHARE, f"the server used {share:.0%} of a core with every download stalled"
