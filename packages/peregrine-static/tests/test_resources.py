"""Resource errors (``EMFILE``, ``ENOMEM``...) answer 503, are never remembered, and large
files are opened only when their turn to be sent comes.

A path that cannot be looked at for lack of resources may well exist: a 404 would be wrong,
and cacheable. These tests make ``os.open``, ``os.stat``, ``os.lstat`` and ``os.scandir``
fail for the served tree only, then check the next request once the failure is gone.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import LARGE, OLD_MTIME_S, body, fetch, serve, write

from peregrine_core import Request, Response, ServerConfig
from peregrine_core.testing import serve as run_server
from peregrine_static import DirServer, FileServer, _resources
from peregrine_static._resources import RESOURCE_ERRNOS, RateLimitedWarning

TIMEOUT_S = 10.0
HAS_PROC_FD = os.path.isdir("/proc/self/fd")


class Failures:
    """Makes chosen ``os`` calls fail with a chosen errno for paths below a directory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, below: Path) -> None:
        self._monkeypatch = monkeypatch
        self._below = str(below)
        self._real: dict[str, Any] = {}

    def fail(self, name: str, code: int, when: Callable[[str], bool] | None = None) -> None:
        real = self._real.setdefault(name, getattr(os, name))

        def failing(path: Any, *args: Any, **kwargs: Any) -> Any:
            text = os.fspath(path) if isinstance(path, str | os.PathLike) else ""
            if text.startswith(self._below) and (when is None or when(text)):
                raise OSError(code, os.strerror(code), text)
            return real(path, *args, **kwargs)

        self._monkeypatch.setattr(os, name, failing)

    def stop(self) -> None:
        """The failures are gone: every call works again."""
        for name, real in self._real.items():
            self._monkeypatch.setattr(os, name, real)


@pytest.fixture
def failures(monkeypatch: pytest.MonkeyPatch, root: Path) -> Failures:
    return Failures(monkeypatch, root)


@pytest.fixture(autouse=True)
def fresh_log_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts a new rate-limiting interval, so its first warning is logged."""
    monkeypatch.setattr(_resources, "_warnings", RateLimitedWarning(_resources.log))


def assert_unavailable(resp: Response) -> None:
    headers = dict(resp.headers)
    assert resp.status == 503
    assert headers["Retry-After"] == "1"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.file is None and body(resp).startswith(b"503 Service Unavailable")


# --- 503, never 404, and nothing remembered ---------------------------------------------------


@pytest.mark.parametrize("code", sorted(RESOURCE_ERRNOS), ids=errno.errorcode.get)
def test_open_failing_for_lack_of_resources_answers_503_then_200(
    root: Path, failures: Failures, code: int
) -> None:
    server = DirServer(root)
    failures.fail("open", code)
    for target in ("/large.bin", "/hello.txt"):
        handled, resp = serve(server, target)
        assert handled
        assert_unavailable(resp)
    failures.stop()
    resp = fetch(server, "/large.bin")
    assert resp.status == 200 and body(resp) == LARGE
    resp = fetch(server, "/hello.txt")
    assert resp.status == 200 and body(resp) == b"hello world\n"


def test_the_503_is_logged_as_a_warning_on_the_peregrine_static_logger(
    root: Path, failures: Failures, caplog: pytest.LogCaptureFixture
) -> None:
    failures.fail("open", errno.EMFILE)
    with caplog.at_level(logging.WARNING, logger="peregrine_static"):
        for _ in range(5):
            assert fetch(DirServer(root), "/large.bin").status == 503
    lines = [r for r in caplog.records if r.name == "peregrine_static"]
    assert len(lines) == 1  # the other four wait for the next interval
    assert lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == (
        f"cannot open {root / 'large.bin'}: [Errno {errno.EMFILE}] {os.strerror(errno.EMFILE)}; answered 503"
    )


def test_a_cached_file_that_changed_and_cannot_be_reopened_answers_503(
    root: Path, failures: Failures
) -> None:
    server = DirServer(root)
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"  # now cached
    write(root / "hello.txt", "hello again\n", OLD_MTIME_S + 5)  # the entry must be revalidated
    failures.fail("open", errno.EMFILE)
    assert_unavailable(fetch(server, "/hello.txt"))
    failures.stop()
    resp = fetch(server, "/hello.txt")
    assert resp.status == 200 and body(resp) == b"hello again\n"


def test_a_remembered_path_whose_stat_fails_for_lack_of_memory_answers_503(
    root: Path, failures: Failures
) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    fetch(server, "/hello.txt")
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"  # cached, prepared 200
    failures.fail("stat", errno.ENOMEM)
    assert_unavailable(fetch(server, "/hello.txt"))
    failures.stop()
    resp = fetch(server, "/hello.txt")
    assert resp.status == 200 and body(resp) == b"hello world\n"


def test_a_walk_failing_for_lack_of_memory_answers_503_and_is_not_remembered(
    root: Path, failures: Failures
) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    failures.fail("lstat", errno.ENOMEM)
    assert_unavailable(fetch(server, "/docs/guide.md"))
    assert_unavailable(fetch(server, "/link_in"))
    failures.stop()
    assert body(fetch(server, "/docs/guide.md")) == b"# Guide\n"
    assert body(fetch(server, "/link_in")) == b"hello world\n"


def test_a_symbolic_link_whose_target_cannot_be_looked_at_answers_503(root: Path, failures: Failures) -> None:
    server = DirServer(root)
    # lstat of the link itself works; resolving it (realpath, then stat) does not.
    failures.fail("stat", errno.ENOMEM)
    assert_unavailable(fetch(server, "/link_in"))


def test_a_directory_index_that_cannot_be_opened_answers_503(root: Path, failures: Failures) -> None:
    server = DirServer(root)
    failures.fail("open", errno.ENFILE)
    assert_unavailable(fetch(server, "/docs/"))
    failures.stop()
    assert body(fetch(server, "/docs/")) == b"<h1>docs</h1>\n"


def test_a_directory_listing_that_cannot_be_read_answers_503(root: Path, failures: Failures) -> None:
    server = DirServer(root, listing=True)
    failures.fail("scandir", errno.EMFILE)
    assert_unavailable(fetch(server, "/empty/"))
    failures.stop()
    resp = fetch(server, "/empty/")
    assert resp.status == 200 and b"Index of /empty/" in body(resp)


def test_a_listing_entry_that_cannot_be_looked_at_answers_503_not_a_shorter_listing(
    root: Path, failures: Failures
) -> None:
    write(root / "listed" / "a.txt", "a\n")
    os.symlink("a.txt", root / "listed" / "to_a")
    server = DirServer(root, listing=True)
    failures.fail("lstat", errno.ENOMEM, when=lambda path: path.endswith("to_a"))
    assert_unavailable(fetch(server, "/listed/"))
    failures.stop()
    page = body(fetch(server, "/listed/"))
    assert b'href="./a.txt"' in page and b'href="./to_a"' in page


def test_a_precompressed_variant_that_cannot_be_opened_answers_503(root: Path, failures: Failures) -> None:
    server = DirServer(root)
    failures.fail("open", errno.EMFILE, when=lambda path: path.endswith(".gz"))
    assert_unavailable(fetch(server, "/app.js", [("Accept-Encoding", "gzip")]))
    failures.stop()
    resp = fetch(server, "/app.js", [("Accept-Encoding", "gzip")])
    assert resp.status == 200 and body(resp) == b"\x1f\x8b gzip bytes"


def test_a_sibling_lookup_failing_for_lack_of_memory_is_not_remembered_as_no_sibling(
    root: Path, failures: Failures
) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    failures.fail("lstat", errno.ENOMEM, when=lambda path: path.endswith((".gz", ".br")))
    assert body(fetch(server, "/app.js")) == b"console.log('identity');\n"  # no coding asked for
    failures.stop()
    assert body(fetch(server, "/app.js")) == b"console.log('identity');\n"  # prepared 200 now
    resp = fetch(server, "/app.js", [("Accept-Encoding", "gzip")])
    assert dict(resp.headers).get("Content-Encoding") == "gzip"


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES, errno.ELOOP])
def test_open_failing_because_the_file_is_not_there_still_answers_404(
    root: Path, failures: Failures, code: int
) -> None:
    server = DirServer(root)
    failures.fail("open", code)
    handled, resp = serve(server, "/large.bin")
    assert not handled and resp.status == 200 and not resp.headers  # untouched
    assert fetch(server, "/large.bin").status == 404


def test_a_missing_file_still_answers_404(root: Path) -> None:
    resp = fetch(DirServer(root), "/nope.txt")
    assert resp.status == 404 and body(resp) == b"404 Not Found\n"


def test_file_server_answers_503_when_the_file_cannot_be_opened_or_stat_ed(
    root: Path, failures: Failures
) -> None:
    server = FileServer(root / "large.bin")
    failures.fail("open", errno.EMFILE)
    assert_unavailable(fetch(server, "/"))
    failures.stop()
    failures.fail("stat", errno.ENOMEM)
    assert_unavailable(fetch(server, "/"))
    failures.stop()
    resp = fetch(server, "/")
    assert resp.status == 200 and body(resp) == LARGE


# --- the rate-limited warning -------------------------------------------------------------------


def test_warnings_are_limited_to_one_per_interval_and_count_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    logger = logging.getLogger("peregrine_static.test")
    limited = RateLimitedWarning(logger, 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="peregrine_static.test"):
        assert limited.warning("cannot open %s", "/a")
        for _ in range(41):
            now[0] += 0.2
            assert not limited.warning("cannot open %s", "/b")
        now[0] = 110.0
        assert limited.warning("cannot open %s", "/x")
        now[0] = 125.0
        assert limited.warning("cannot open %s", "/y")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot open /a",
        "cannot open /x (and 41 more)",
        "cannot open /y",
    ]


# --- large files are opened when sent -----------------------------------------------------------


def _descriptors_of(path: Path) -> int:
    """How many descriptors of this process point at ``path``."""
    target = os.path.realpath(path)
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == target:
                count += 1
        except OSError:
            pass  # closed meanwhile
    return count


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc to count descriptors")
def test_the_handler_leaves_no_descriptor_open_for_a_large_file(root: Path) -> None:
    resp = fetch(DirServer(root), "/large.bin")
    assert resp.file is not None and resp.file.file is None  # an opener, not an open file
    assert _descriptors_of(root / "large.bin") == 0
    assert body(resp) == LARGE
    assert _descriptors_of(root / "large.bin") == 0


def test_the_opener_refuses_a_file_changed_after_the_headers(root: Path) -> None:
    for change in ("rewrite", "replace", "symlink"):
        path = write(root / "large.bin", LARGE)
        resp = fetch(DirServer(root), "/large.bin")
        assert resp.file is not None
        if change == "rewrite":  # same size, another modification time: another version
            write(path, LARGE[::-1], OLD_MTIME_S + 7)
        elif change == "replace":
            write(root / "new.bin", LARGE)
            os.replace(root / "new.bin", path)
        else:  # a symbolic link swapped in: O_NOFOLLOW refuses it
            os.replace(path, root / "moved.bin")
            os.symlink(root / "moved.bin", path)
        with pytest.raises(OSError):
            resp.file.open()
        resp.file.close()
        if change == "symlink":
            os.unlink(path)


def test_the_opener_failing_for_lack_of_descriptors_is_logged(
    root: Path, failures: Failures, caplog: pytest.LogCaptureFixture
) -> None:
    resp = fetch(DirServer(root), "/large.bin")
    assert resp.file is not None
    failures.fail("open", errno.EMFILE)
    with caplog.at_level(logging.WARNING, logger="peregrine_static"), pytest.raises(OSError):
        resp.file.open()
    assert [r.getMessage().rpartition("; ")[2] for r in caplog.records] == ["closed the connection"]


# --- through the real server --------------------------------------------------------------------

BIG_BYTES = 2 * 1024 * 1024  # far more than the memory cache takes, 32 times more than fits in buffers
PIPELINED = 32


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, bytes]:
    data = (bytes(range(256)) * (BIG_BYTES // 256))[:BIG_BYTES]
    directory = tmp_path / "big"
    path = write(directory / "big.bin", data)
    return path, data


class Counting:
    """Wraps a handler and counts the requests it answered."""

    def __init__(self, inner: DirServer) -> None:
        self.inner = inner
        self.handled = 0
        self._lock = threading.Lock()

    def handle_request(self, req: Request, resp: Response) -> None:
        self.inner.handle_request(req, resp)
        with self._lock:
            self.handled += 1

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.handled < count:
            assert time.monotonic() < deadline, f"only {self.handled} of {count} requests handled"
            time.sleep(0.01)


def _slow_reader(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # fills up fast
    sock.settimeout(TIMEOUT_S)
    sock.connect(("127.0.0.1", port))
    return sock


class _Responses:
    """Reads responses with a ``Content-Length`` off a socket, one after the other."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def next(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self._file.readline()
        if not status_line:
            raise EOFError("connection closed before a response")
        status = int(status_line.split()[1])
        headers = {}
        while (line := self._file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        data = b""
        while len(data) < length and (chunk := self._file.read(length - len(data))):
            data += chunk
        return status, headers, data

    def close(self) -> None:
        self._file.close()


@pytest.mark.skipif(not HAS_PROC_FD, reason="needs /proc to count descriptors")
def test_pipelined_large_files_hold_one_descriptor_while_the_client_does_not_read(
    big: tuple[Path, bytes],
) -> None:
    path, data = big
    counting = Counting(DirServer(path.parent))
    with run_server(counting, config=ServerConfig(workers=1)) as srv:
        sock = _slow_reader(srv.port)
        responses = _Responses(sock)
        try:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED)
            counting.wait_for(PIPELINED)
            time.sleep(0.3)  # the server fills the socket, then waits for the client to read
            assert _descriptors_of(path) <= 1
            for _ in range(PIPELINED):
                status, headers, received = responses.next()
                assert status == 200 and headers["content-length"] == str(BIG_BYTES)
                assert received == data
        finally:
            responses.close()
            sock.close()
        deadline = time.monotonic() + TIMEOUT_S
        while _descriptors_of(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _descriptors_of(path) == 0


def test_a_file_replaced_before_its_turn_to_be_sent_closes_the_connection(big: tuple[Path, bytes]) -> None:
    path, _ = big
    huge_bytes = 64 * 1024 * 1024  # sparse: more than any socket buffers hold
    with (path.parent / "huge.bin").open("wb") as f:
        f.truncate(huge_bytes)
    counting = Counting(DirServer(path.parent))
    with run_server(counting, config=ServerConfig(workers=1)) as srv:
        sock = _slow_reader(srv.port)
        responses = _Responses(sock)
        try:
            sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            counting.wait_for(2)  # the second head is computed from the first version
            time.sleep(0.1)  # the server is stuck in the first body, the client not reading
            replacement = write(path.parent / "next.bin", b"X" * BIG_BYTES, OLD_MTIME_S + 1)
            os.replace(replacement, path)
            status, _, received = responses.next()
            assert status == 200 and received == bytes(huge_bytes)
            status, headers, received = responses.next()
            assert status == 200 and headers["content-length"] == str(BIG_BYTES)
            assert received == b""  # the connection closed: no byte of the other version
            assert sock.recv(1) == b""
        finally:
            responses.close()
            sock.close()


# --- out of descriptors, in a process of its own -------------------------------------------------

# The server with at most 64 descriptors. SIGUSR1 makes it take every descriptor left (as a
# leak elsewhere in the process would), SIGUSR2 gives them back; each prints when done.
_LIMITED_SERVER = """
import os, resource, signal, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
def take(signum, frame):
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("took", len(held), flush=True)
def give_back(signum, frame):
    while held:
        os.close(held.pop())
    print("gave back", flush=True)
signal.signal(signal.SIGUSR1, take)
signal.signal(signal.SIGUSR2, give_back)
from peregrine_static._cli import main
sys.exit(main(sys.argv[1:]))
"""


_LIMITED_ARGS = ("--host", "127.0.0.1", "--port", "0", "--workers", "1", "-q")


class LimitedServer:
    """``python -m peregrine_static`` in a process limited to 64 descriptors, on 127.0.0.1."""

    def __init__(self, root: Path, tmp_path: Path) -> None:
        self._out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with self._out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LIMITED_SERVER, str(root), *_LIMITED_ARGS],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        line = self.wait_for_line(0)
        self.port = int(line.rstrip().rstrip("/").rsplit(":", 1)[1])

    def wait_for_line(self, index: int) -> str:
        """Line ``index`` of what the process printed, once it is there."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            lines = self._out.read_text().splitlines(keepends=True)
            if len(lines) > index and lines[index].endswith("\n"):
                return lines[index]
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, "the server printed nothing in time"
            time.sleep(0.02)

    def signal(self, signum: int, line: int) -> str:
        self.proc.send_signal(signum)  # this process, by its own PID
        return self.wait_for_line(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT_S)


@pytest.fixture
def limited_server(root: Path, tmp_path: Path) -> Iterator[LimitedServer]:
    if not hasattr(signal, "SIGUSR1"):
        pytest.skip("needs resource.setrlimit and SIGUSR1")
    server = LimitedServer(root, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _status(sock: socket.socket) -> int | None:
    """The status of the next response on ``sock``, or ``None`` if none came (reset, timeout)."""
    try:
        status, _, _ = _Responses(sock).next()
    except (OSError, EOFError):
        return None
    return status


def _ask_all(conns: list[socket.socket], targets: list[str]) -> list[int | None]:
    """Send one GET on each connection; the statuses of those answered within a second."""
    for sock, target in zip(conns, targets, strict=True):
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(1.0)  # accepted connections are answered; the others wait, paused, in the backlog
    answered, _, _ = select.select(conns, [], [], 0)
    return [_status(sock) if sock in answered else None for sock in conns]


def test_a_server_out_of_descriptors_never_answers_404_for_an_existing_file(
    limited_server: LimitedServer,
) -> None:
    port = limited_server.port
    targets = ["/large.bin", "/docs/guide.md"] * 40  # more connections than descriptors
    conns = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) for _ in targets]
    try:
        statuses = _ask_all(conns, targets)
        assert 404 not in statuses
        assert set(statuses) <= {200, 503, None}
        accepted = [(sock, t) for sock, t, status in zip(conns, targets, statuses, strict=True) if status]
        assert accepted, "no connection was served"

        # Now no descriptor is left for opening a file, as with a leak elsewhere.
        assert limited_server.signal(signal.SIGUSR1, 1).startswith("took ")
        statuses = _ask_all([sock for sock, _ in accepted], [t for _, t in accepted])
        assert 404 not in statuses
        assert set(statuses) <= {200, 503}  # the small file may come from memory
        assert 503 in [s for s, (_, t) in zip(statuses, accepted, strict=True) if t == "/large.bin"]

        assert limited_server.signal(signal.SIGUSR2, 2) == "gave back\n"
        statuses = _ask_all([sock for sock, _ in accepted], [t for _, t in accepted])
        assert statuses == [200] * len(accepted)  # nothing bad was remembered
    finally:
        for sock in conns:
            sock.close()
    assert "answered 503" in limited_server.err.read_text()
