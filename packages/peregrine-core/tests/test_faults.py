"""Operators' fault reports, each replayed against a real server in a subprocess.

Every server here is ``python -m peregrine_core fault_apps:App --host 127.0.0.1 --port 0 ...``
(``fault_apps.py`` sits next to this file); the port is read from its ``listening on`` line,
its log is collected as it runs, and it is stopped by its own PID (its server processes too).
CPU time and thread counts come from ``/proc``. Every wait is bounded.

The scenarios: slow handlers next to fast requests, the handler concurrency bound, SIGTERM
and SIGINT while requests are in flight or under keep-alive load, connections during the
drain, a killed supervisor, running out of file descriptors, and CONNECT.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import select
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Generic, TypeVar

import pytest

from peregrine_core import testing
from peregrine_core._config import PollerName

from conftest import TIMEOUT, Reader, Reply, connect

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fault scenarios read /proc and fork processes"
)

TESTS_DIR: Final = Path(__file__).parent
START_TIMEOUT: Final = 15.0
T = TypeVar("T")


def get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


# --- /proc ------------------------------------------------------------------------------------


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line in /proc/{pid}/status")


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- the server process ---------------------------------------------------------------------


class ServerProcess(testing.ServerProcess):
    """``python -m peregrine_core APP --host 127.0.0.1 --port 0 OPTIONS`` in a subprocess, which
    also remembers the server processes it forked, to kill what is left of them."""

    def __init__(
        self, app: str, options: tuple[str, ...], *, cwd: Path, nofile: int | None, processes: int
    ) -> None:
        super().__init__(
            "peregrine_core",
            [app, "--host", "127.0.0.1", "--port", "0", *options],
            cwd=cwd,
            python_path=[TESTS_DIR],
            nofile=nofile,
            ready_count=processes,
            start_timeout=START_TIMEOUT,
        )
        self.known_children: dict[int, bytes] = {}
        if processes > 1:
            for pid in children_of(self.pid):
                self.known_children[pid] = _cmdline(pid)

    def close(self) -> None:
        """Kill whatever is left: the server processes first, then this one, each by its PID."""
        for pid, cmdline in self.known_children.items():
            if running(pid) and _cmdline(pid) == cmdline:
                os.kill(pid, signal.SIGKILL)
        super().close()


class Launcher:
    """Starts servers for one test and kills what is left of them at its end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[ServerProcess] = []

    def start(self, app: str, *options: str, processes: int = 1, nofile: int | None = None) -> ServerProcess:
        server = ServerProcess(app, options, cwd=self.cwd, nofile=nofile, processes=processes)
        self.started.append(server)
        return server


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        for server in launcher.started:
            server.close()


class Background(Generic[T]):
    """``fn()`` on a thread; ``result()`` returns what it returned or raises what it raised."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value.append(self._fn())
        except BaseException as exc:
            self._error.append(exc)

    def result(self, timeout: float) -> T:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"still running after {timeout} s")
        if self._error:
            raise self._error[0]
        return self._value[0]


# --- clients --------------------------------------------------------------------------------


def parse_response(buf: bytes) -> Reply | None:
    """The response at the start of ``buf`` if it is complete (Content-Length framing)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    _, code, reason = [*lines[0].split(" ", 2), ""][:3]
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    reply = Reply(int(code), reason, headers, b"")
    assert reply.header("transfer-encoding") is None, f"unexpected chunked response {reply}"
    length = int(reply.header("content-length") or 0)
    if len(buf) < end + 4 + length:
        return None
    reply.body = buf[end + 4 : end + 4 + length]
    return reply


class _Exchange:
    def __init__(self, request: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.request = request
        self.started = time.monotonic()
        self.buf = b""
        self.reply: Reply | None = None
        self.seconds = 0.0
        self.error = ""


def exchange_at_once(port: int, requests: list[bytes], timeout: float = TIMEOUT) -> list[tuple[Reply, float]]:
    """Open one connection per request, all at once, and send each request on its own.

    Returns each response with the seconds from its connect() to its last byte, in the
    order of ``requests``; fails if any connection did not get a complete response.
    """
    sel = selectors.DefaultSelector()
    exchanges = [_Exchange(r) for r in requests]
    for ex in exchanges:
        code = ex.sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            ex.error = f"connect: {os.strerror(code)}"
            continue
        sel.register(ex.sock, selectors.EVENT_WRITE, ex)
    deadline = time.monotonic() + timeout
    try:
        while sel.get_map() and time.monotonic() < deadline:
            for key, events in sel.select(max(0.0, deadline - time.monotonic())):
                ex = key.data
                if events & selectors.EVENT_WRITE:
                    code = ex.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        ex.error = f"connect: {os.strerror(code)}"
                        sel.unregister(ex.sock)
                        continue
                    assert ex.sock.send(ex.request) == len(ex.request)
                    sel.modify(ex.sock, selectors.EVENT_READ, ex)
                    continue
                try:
                    data = ex.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, ex.error = b"", f"{exc!r} before a complete response"
                if not data:
                    ex.error = ex.error or f"EOF before a complete response (had {ex.buf!r})"
                    sel.unregister(ex.sock)
                    continue
                ex.buf += data
                reply = parse_response(ex.buf)
                if reply is not None:
                    ex.reply, ex.seconds = reply, time.monotonic() - ex.started
                    sel.unregister(ex.sock)
    finally:
        sel.close()
        for ex in exchanges:
            ex.sock.close()
    failed = [
        (i, ex.error or f"no response within {timeout} s") for i, ex in enumerate(exchanges) if not ex.reply
    ]
    assert not failed, f"{len(failed)} of {len(exchanges)} requests failed: {failed[:5]}"
    return [(ex.reply, ex.seconds) for ex in exchanges if ex.reply is not None]


class Ending:
    """How one connection ended: its response (if any), when it came, and what followed."""

    def __init__(self, reply: Reply | None, received_at: float, end: str) -> None:
        self.reply = reply
        self.received_at = received_at
        self.end = end

    def __repr__(self) -> str:
        return f"<Ending {self.reply} at {self.received_at:.3f} then {self.end}>"


def read_to_the_end(sock: socket.socket, timeout: float = TIMEOUT) -> Ending:
    """Read one response, then wait for the peer to close: ``eof``, ``reset`` or worse."""
    sock.settimeout(timeout)
    reader = Reader(sock)
    try:
        reply = reader.response()
    except ConnectionResetError:
        return Ending(None, time.monotonic(), "reset before a complete response")
    except ConnectionError as exc:
        return Ending(None, time.monotonic(), f"closed before a complete response: {exc}")
    except TimeoutError:
        return Ending(None, time.monotonic(), f"no response within {timeout} s")
    received_at = time.monotonic()
    rest = reader.buf
    try:
        while data := sock.recv(65536):
            rest += data
    except ConnectionResetError:
        return Ending(reply, received_at, "reset")
    except TimeoutError:
        return Ending(reply, received_at, f"still open {timeout} s later")
    return Ending(reply, received_at, f"more bytes {rest[:80]!r}" if rest else "eof")


def what_happens_to(sock: socket.socket) -> str:
    """Send a request on an accepted connection and say what became of it."""
    try:
        sock.sendall(get("/fast"))
    except OSError as exc:
        return f"the request could not be sent: {exc!r}"
    ending = read_to_the_end(sock, timeout=2.0)
    return f"answered {ending.reply.status}" if ending.reply else ending.end


# --- 1. slow handlers next to fast requests ----------------------------------------------------

FAST_CLIENTS: Final = 20
SLOW_CLIENTS: Final = 4


@pytest.mark.parametrize(
    ("options", "processes", "bound_s"),
    [
        pytest.param((), 1, 0.020, id="default"),
        pytest.param(("--workers", "4"), 1, 0.020, id="four-workers"),
        pytest.param(("--processes", "2"), 2, 0.100, id="two-processes"),
    ],
)
def test_slow_handlers_do_not_delay_fast_requests_on_other_connections(
    launcher: Launcher, poller_name: PollerName, options: tuple[str, ...], processes: int, bound_s: float
) -> None:
    server = launcher.start("fault_apps:App", "--poller", poller_name, *options, processes=processes)
    exchange_at_once(server.port, [get("/warm")] * 4)
    slow = Background(lambda: exchange_at_once(server.port, [get("/slow")] * SLOW_CLIENTS))
    server.wait_for_log("handler entered /slow")
    time.sleep(0.05)
    fast = exchange_at_once(server.port, [get(f"/fast{i}") for i in range(FAST_CLIENTS)])
    slow_replies = slow.result(TIMEOUT)
    seconds = sorted(s for _, s in fast)
    assert seconds[-1] < bound_s, f"fast requests took {[round(s * 1000, 1) for s in seconds]} ms"
    assert sorted(r.body for r, _ in fast) == sorted(b"fast /fast%d" % i for i in range(FAST_CLIENTS))
    assert [(r.status, r.body) for r, _ in slow_replies] == [(200, b"slow")] * SLOW_CLIENTS


# --- 2. the handler concurrency bound ------------------------------------------------------------

HANDLER_THREADS: Final = 2
HANDLER_QUEUE: Final = 2
# main (accepting) + one worker + the handler threads, and a little room for helpers
THREAD_BOUND: Final = 1 + 1 + HANDLER_THREADS + 4


def test_requests_beyond_the_handler_threads_and_queue_get_503_with_retry_after(launcher: Launcher) -> None:
    server = launcher.start(
        "fault_apps:App",
        *("--workers", "1", "--handler-threads", str(HANDLER_THREADS), "--handler-queue", str(HANDLER_QUEUE)),
    )
    exchange_at_once(server.port, [get("/warm")])
    burst = Background(lambda: exchange_at_once(server.port, [get("/slow")] * 8))
    server.wait_for_log("handler entered /slow")
    time.sleep(0.2)
    threads_under_load = thread_count(server.pid)
    results = burst.result(TIMEOUT)

    statuses = sorted(r.status for r, _ in results)
    timeline = sorted((round(s, 3), r.status) for r, s in results)
    assert statuses == [200] * 4 + [503] * 4, timeline
    refused = [(r, s) for r, s in results if r.status == 503]
    for reply, seconds in refused:
        retry_after = reply.header("retry-after")
        assert retry_after is not None and retry_after.isdigit(), reply
        assert seconds < 0.4, f"a 503 took {seconds:.3f} s: it must not wait for a handler thread"
    served = sorted(s for r, s in results if r.status == 200)
    assert served[1] < 0.9, f"the first two ran at once: {served}"
    assert served[2] >= 0.9, f"the queued two waited for a handler thread: {served}"
    assert threads_under_load <= THREAD_BOUND, f"{threads_under_load} threads for 8 requests"


# --- 3. SIGTERM with requests queued behind a slow one -------------------------------------------


@pytest.mark.parametrize(
    "options",
    [pytest.param((), id="behind-a-busy-handler"), pytest.param(("--handler-threads", "1"), id="queued")],
)
def test_sigterm_answers_every_request_already_sent_and_resets_none(
    launcher: Launcher, options: tuple[str, ...]
) -> None:
    server = launcher.start("fault_apps:App", "--workers", "1", *options)
    socks = [connect(server.port) for _ in range(5)]
    try:
        socks[0].sendall(get("/sleep1"))
        server.wait_for_log("handler entered /sleep1")
        for i, sock in enumerate(socks[1:], 1):
            sock.sendall(get(f"/fast{i}"))
        sent_at = time.monotonic()
        readers = [Background(functools.partial(read_to_the_end, sock)) for sock in socks]
        time.sleep(max(0.0, sent_at + 0.5 - time.monotonic()))
        signalled_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        endings = [r.result(TIMEOUT + 1) for r in readers]
    finally:
        for sock in socks:
            sock.close()
    expected = [b"sleep1"] + [b"fast /fast%d" % i for i in range(1, 5)]
    assert [e.reply.body if e.reply else e.end for e in endings] == expected, endings
    assert endings[0].received_at > signalled_at, "the slow request was answered before SIGTERM"
    for ending in endings:
        assert ending.reply is not None
        if ending.received_at > signalled_at:
            assert ending.reply.header("connection") == "close", ending
    assert [e.end for e in endings] == ["eof"] * 5, endings
    assert server.exit_code_within(TIMEOUT) == 0, server.log


# --- 4. a stuck handler and SIGINT ----------------------------------------------------------------

GRACEFUL_TIMEOUT_S: Final = 2.0


def test_a_stuck_handler_is_named_in_the_log_and_does_not_hold_the_exit_past_the_graceful_timeout(
    launcher: Launcher,
) -> None:
    server = launcher.start("fault_apps:App", "--graceful-timeout", str(GRACEFUL_TIMEOUT_S))
    with connect(server.port) as sock:
        sock.sendall(get("/stuck"))
        server.wait_for_log("handler entered /stuck")
        server.send_signal(signal.SIGINT)
        server.exit_code_within(GRACEFUL_TIMEOUT_S + 1.0)
    assert re.search(r"GET /stuck\b", server.log), server.log


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_sigint_stops_at_once_without_a_traceback(launcher: Launcher, workers: int) -> None:
    server = launcher.start("fault_apps:App", "--workers", str(workers))
    with connect(server.port) as idle, connect(server.port) as stuck:
        idle.sendall(get("/fast"))
        assert Reader(idle).response().status == 200
        stuck.sendall(get("/stuck"))
        server.wait_for_log("handler entered /stuck")
        server.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert server.proc.poll() is None, "the first SIGINT must wait for the request in flight"
        server.send_signal(signal.SIGINT)
        server.exit_code_within(1.0)
    assert "Traceback" not in server.log, server.log
    assert "ValueError" not in server.log, server.log


# --- 5. SIGTERM under keep-alive load ---------------------------------------------------------------

LOAD_CLIENTS: Final = 64
LOAD_SECONDS: Final = 1.0


class LoadRecord:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = 0
        self.refused = 0
        self.closed_before_sending = 0
        self.failures: list[str] = []

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def keep_alive_client(port: int, until: float, record: LoadRecord) -> None:
    """GET / back to back on keep-alive connections until ``until``; reconnect when closed."""
    request = get("/")
    while time.monotonic() < until:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        except ConnectionRefusedError:
            with record.lock:
                record.refused += 1
            return
        with sock:
            reader = Reader(sock)
            while time.monotonic() < until:
                # A close that came before the request is sent is clean: look for it first.
                if select.select([sock], [], [], 0)[0]:
                    try:
                        peeked = sock.recv(1, socket.MSG_PEEK)
                    except ConnectionResetError:
                        return record.fail("reset while idle")
                    if peeked:
                        return record.fail(f"unsolicited bytes while idle: {peeked!r}")
                    with record.lock:
                        record.closed_before_sending += 1
                    break
                try:
                    sock.sendall(request)
                except OSError as exc:
                    return record.fail(f"sending failed: {exc!r}")
                try:
                    reply = reader.response()
                except ConnectionResetError:
                    return record.fail("reset after a request was written")
                except ConnectionError:
                    return record.fail("EOF after a request was written, without a response")
                except TimeoutError:
                    return record.fail("no response to a request within the timeout")
                with record.lock:
                    record.answered += 1
                if reply.status != 200:
                    return record.fail(f"answered {reply}")
                if reply.header("connection") == "close":
                    if not reader.closed():
                        return record.fail("still open after Connection: close")
                    break


def test_sigterm_under_keep_alive_load_loses_no_request_that_was_sent(
    launcher: Launcher, poller_name: PollerName
) -> None:
    server = launcher.start("fault_apps:App", "--poller", poller_name)
    record = LoadRecord()
    until = time.monotonic() + LOAD_SECONDS
    clients = [
        threading.Thread(target=keep_alive_client, args=(server.port, until, record), daemon=True)
        for _ in range(LOAD_CLIENTS)
    ]
    for t in clients:
        t.start()
    time.sleep(LOAD_SECONDS / 2)
    answered_before = record.answered
    server.send_signal(signal.SIGTERM)
    for t in clients:
        t.join(LOAD_SECONDS + TIMEOUT)
    assert not any(t.is_alive() for t in clients), "a client is stuck"
    assert answered_before >= LOAD_CLIENTS, "the load never got going"
    assert record.failures == [], (
        f"{len(record.failures)} failures ({record.answered} answered, {record.refused} refused, "
        f"{record.closed_before_sending} closed before sending): {record.failures[:10]}"
    )
    assert server.exit_code_within(TIMEOUT) == 0, server.log


# --- 6. connections during the drain --------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("--processes", "1"), id="one-process"),
        pytest.param(("--processes", "2"), id="two-processes"),
        pytest.param(("--processes", "2", "--reuse-port"), id="two-processes-reuse-port"),
    ],
)
def test_connections_during_the_drain_are_refused_not_accepted_and_reset(
    launcher: Launcher, options: tuple[str, ...]
) -> None:
    server = launcher.start("fault_apps:App", *options, processes=int(options[1]))
    with connect(server.port) as busy:
        busy.sendall(get("/sleep1"))
        server.wait_for_log("handler entered /sleep1")
        signalled_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # Every server process says when its listener is closed (on a loaded machine that
        # can take longer than the half second this test otherwise gives it).
        server.wait_for_log("stopped accepting connections", count=int(options[1]), timeout=TIMEOUT)
        time.sleep(max(0.0, signalled_at + 0.5 - time.monotonic()))
        assert server.proc.poll() is None, "the drain is over already: nothing would be tested"
        try:
            late = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        except ConnectionRefusedError:
            pass
        else:
            with late:
                fate = what_happens_to(late)
            pytest.fail(f"a connection 0.5 s after SIGTERM was accepted ({fate}) instead of refused")
        ending = read_to_the_end(busy)
    assert ending.reply is not None and ending.reply.body == b"sleep1", ending
    assert server.exit_code_within(TIMEOUT) == 0, server.log


# --- 7. kill -9 of the supervisor ------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [pytest.param((), id="shared-listener"), pytest.param(("--reuse-port",), id="reuse-port")],
)
def test_killing_the_supervisor_leaves_no_server_process_and_frees_the_port(
    launcher: Launcher, options: tuple[str, ...]
) -> None:
    server = launcher.start("fault_apps:App", "--processes", "2", *options, processes=2)
    children = list(server.known_children)
    assert len(children) == 2, f"expected two server processes, found {children}"
    server.send_signal(signal.SIGKILL)
    server.exit_code_within(TIMEOUT)
    deadline = time.monotonic() + 3.0
    while any(running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [pid for pid in children if running(pid)]
    assert left == [], f"server processes {left} outlived their supervisor by 3 s"
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", server.port))
        again.listen()


# --- 8. out of file descriptors ----------------------------------------------------------------------

NOFILE: Final = 128
PRESSURE_SECONDS: Final = 3.0
MAX_CPU_SHARE: Final = 0.05


def test_out_of_file_descriptors_the_server_does_not_spin_and_recovers(
    launcher: Launcher, poller_name: PollerName
) -> None:
    server = launcher.start("fault_apps:App", "--poller", poller_name, nofile=NOFILE)
    with connect(server.port) as sock:
        # The handler keeps the descriptors for the pressure phase, then gives them back.
        sock.sendall(get(f"/leak?hold={PRESSURE_SECONDS + 0.2}"))
        leaked = Reader(sock).response().body
    assert leaked.endswith(b"Too many open files"), f"the process never ran out: {leaked!r}"
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    connects = 0
    while time.monotonic() - started < PRESSURE_SECONDS:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            connects += 1
        except OSError:
            pass
        time.sleep(0.005)
    share = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
    assert connects > 100, "the pressure never built up"
    assert share < MAX_CPU_SHARE, f"the server used {share:.0%} of a core while out of descriptors"
    server.wait_for_log("released [0-9]+ descriptors")
    with connect(server.port) as fresh:
        fresh.sendall(get("/after"))
        assert Reader(fresh).response().body == b"fast /after"


# --- 9. CONNECT ------------------------------------------------------------------------------------------

CONNECT_THEN_GET: Final = (
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
)


def test_connect_answered_2xx_by_the_handler_gets_an_error_and_the_connection_closes(
    launcher: Launcher,
) -> None:
    server = launcher.start("fault_apps:Hello")
    with connect(server.port) as sock:
        sock.sendall(CONNECT_THEN_GET)
        reader = Reader(sock)
        reply = reader.response()
        assert reply.status in (500, 501), reply
        assert reader.closed(timeout=2.0), f"not closed, or more was sent: {reader.buf!r}"


def test_a_handler_refusing_connect_itself_sends_its_own_status(launcher: Launcher) -> None:
    server = launcher.start("fault_apps:RefusesConnect")
    with connect(server.port) as sock:
        sock.sendall(CONNECT_THEN_GET)
        reply = Reader(sock).response()
    assert (reply.status, reply.body) == (405, b"no tunnels here")


# --- memory under large bodies -------------------------------------------------------------------


GIB = 1 << 30


def warm_up(port: int) -> None:
    """One request answered: the server's code paths are loaded before RSS is measured."""
    with connect(port) as sock:
        sock.sendall(get("/warm", "Connection: close"))
        assert Reader(sock).response().status == 200


def test_rss_stays_flat_while_a_1_gib_upload_arrives(launcher: Launcher) -> None:
    server = launcher.start("fault_apps:App", "--max-body-bytes", str(GIB + 1))
    warm_up(server.port)
    before = server.rss_bytes()
    piece = b"u" * (1 << 20)
    with (
        testing.RssSampler(server) as rss,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
        for _ in range(GIB // len(piece)):
            sock.sendall(piece)
        reply = b""
        while b"received" not in reply:
            data = sock.recv(4096)
            assert data, reply
            reply += data
    assert reply.endswith(b"received %d" % GIB)
    assert rss.peak - before < 48 << 20, f"RSS grew by {(rss.peak - before) >> 20} MiB"


def test_rss_stays_flat_while_a_1_gib_stream_is_sent(launcher: Launcher) -> None:
    server = launcher.start("fault_apps:App")
    warm_up(server.port)
    before = server.rss_bytes()
    buf = bytearray(1 << 20)
    received = 0
    with (
        testing.RssSampler(server) as rss,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        sock.sendall(b"GET /download?mb=1024 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while n := sock.recv_into(buf):
            received += n
    assert received > GIB  # the body, its chunk framing and the head
    assert rss.peak - before < 48 << 20, f"RSS grew by {(rss.peak - before) >> 20} MiB"
