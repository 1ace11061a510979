"""WebSocket fault reports, replayed against a real server in a subprocess.

The server is ``python -m peregrine_core ws_fault_apps:Echo --host 127.0.0.1 --port 0 ...``
(``ws_fault_apps.py`` sits next to this file), optionally under a lower ``RLIMIT_NOFILE``;
its port is read from its ``listening on`` line and it is stopped by its own PID. CPU time
comes from ``/proc``. The clients are this package's ``RawClient`` after a raw handshake.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from peregrine_core.testing import ServerProcess
from peregrine_ws import TextMessage

from conftest import TIMEOUT_S, RawClient

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fault scenarios read /proc")

TESTS_DIR: Final = Path(__file__).parent
START_TIMEOUT_S: Final = 15.0
MAX_CPU_SHARE: Final = 0.05
HANDSHAKE: Final = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


class Launcher:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[ServerProcess] = []

    def start(self, app: str, *options: str, nofile: int | None = None) -> ServerProcess:
        """``python -m peregrine_core APP --host 127.0.0.1 --port 0 OPTIONS`` in a subprocess."""
        server = ServerProcess(
            "peregrine_core",
            [app, "--host", "127.0.0.1", "--port", "0", *options],
            cwd=self.cwd,
            python_path=[TESTS_DIR],
            nofile=nofile,
            start_timeout=START_TIMEOUT_S,
        )
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


class WsClients:
    """Many WebSocket clients: handshakes sent at once, answers read without blocking.

    ``waiting`` holds the connections whose handshake is not answered yet, ``upgraded`` the
    ``RawClient`` of each one answered ``101``; any other answer, or a close without one, is
    kept in ``failures``.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.waiting: list[socket.socket] = []
        self.upgraded: list[RawClient] = []
        self.failures: list[str] = []
        self._bufs: dict[socket.socket, bytes] = {}

    def dial(self, count: int) -> None:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
            sock.sendall(HANDSHAKE)
            sock.setblocking(False)
            self.waiting.append(sock)

    def collect(self, timeout: float, *, until: int | None = None, settle: float | None = None) -> None:
        """Read answers for at most ``timeout`` s, less once ``until`` clients are upgraded or
        nothing new came for ``settle`` s."""
        sel = selectors.DefaultSelector()
        for sock in self.waiting:
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        try:
            while self.waiting and (until is None or len(self.upgraded) < until):
                now = time.monotonic()
                if now >= deadline or (settle is not None and now - last_progress >= settle):
                    break
                for key, _ in sel.select(min(deadline - now, 0.05)):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    try:
                        data = conn.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        data = b""
                        self.failures.append(f"reset while waiting for the handshake: {exc!r}")
                    buf = self._bufs.pop(conn, b"") + data
                    if data and b"\r\n\r\n" not in buf:
                        self._bufs[conn] = buf
                        continue
                    sel.unregister(conn)
                    self.waiting.remove(conn)
                    last_progress = time.monotonic()
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 101 "):
                        self.failures.append(
                            f"handshake answered {head[:40]!r}" if data else "closed unanswered"
                        )
                        conn.close()
                        continue
                    client = RawClient(conn)
                    client.decoder.receive_data(rest)
                    self.upgraded.append(client)
        finally:
            sel.close()

    def close_one(self) -> None:
        """Close the oldest upgraded client with a closing handshake."""
        client = self.upgraded.pop(0)
        client.send_close()
        client.expect_close()
        client.expect_eof()
        client.sock.close()

    def close_all(self) -> None:
        for sock in [*self.waiting, *(c.sock for c in self.upgraded)]:
            sock.close()
        self.waiting, self.upgraded = [], []


@pytest.fixture
def clients() -> Iterator[list[WsClients]]:
    made: list[WsClients] = []
    try:
        yield made
    finally:
        for group in made:
            group.close_all()


def echoes(client: RawClient, text: str) -> bool:
    client.send_text(text)
    return client.next_event() == TextMessage(text)


# --- 10. at the descriptor limit, and max_connections -------------------------------------------

NOFILE: Final = 256
CLIENTS_AT_LIMIT: Final = 246
# 246 sockets can still fit under 256 descriptors; 10 more make sure some must wait.
CLIENTS_BEYOND_LIMIT: Final = 10


def test_websockets_at_the_descriptor_limit_leave_the_server_idle_and_it_recovers(
    launcher: Launcher, clients: list[WsClients]
) -> None:
    server = launcher.start("ws_fault_apps:Echo", nofile=NOFILE)
    crowd = WsClients(server.port)
    clients.append(crowd)
    crowd.dial(CLIENTS_AT_LIMIT + CLIENTS_BEYOND_LIMIT)
    crowd.collect(timeout=5.0, settle=0.5)
    assert crowd.upgraded, "no client was upgraded"
    assert echoes(crowd.upgraded[0], "first") and echoes(crowd.upgraded[-1], "last")
    assert crowd.waiting, f"all {len(crowd.upgraded)} were upgraded: the limit was never reached"
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    time.sleep(1.5)
    share = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
    assert share < MAX_CPU_SHARE, (
        f"the server used {share:.0%} of a core, idle with {len(crowd.upgraded)} WebSockets open "
        f"and {len(crowd.waiting)} waiting"
    )
    upgraded = len(crowd.upgraded)
    for _ in range(10):
        crowd.close_one()
    crowd.collect(timeout=TIMEOUT_S, until=upgraded - 10 + 1)
    assert len(crowd.upgraded) > upgraded - 10, "no waiting client got in after 10 closed"
    assert echoes(crowd.upgraded[-1], "let in")
    assert crowd.failures == [], crowd.failures[:5]


MAX_CONNECTIONS: Final = 50


def test_max_connections_bounds_upgraded_websockets_too(launcher: Launcher, clients: list[WsClients]) -> None:
    server = launcher.start("ws_fault_apps:Echo", "--max-connections", str(MAX_CONNECTIONS))
    full = WsClients(server.port)
    late = WsClients(server.port)
    clients += [full, late]
    full.dial(MAX_CONNECTIONS)
    full.collect(timeout=TIMEOUT_S)
    assert len(full.upgraded) == MAX_CONNECTIONS, full.failures
    late.dial(1)
    late.collect(timeout=0.5)
    assert late.upgraded == [], f"a WebSocket beyond max_connections={MAX_CONNECTIONS} was upgraded"
    full.close_one()
    late.collect(timeout=TIMEOUT_S)
    assert len(late.upgraded) == 1, f"not upgraded after one closed: {late.failures}"
    assert echoes(late.upgraded[0], "in at last")


# --- 11. a slow hook and the other connections --------------------------------------------------


def test_a_slow_message_hook_does_not_delay_echoes_to_other_clients(
    launcher: Launcher, clients: list[WsClients]
) -> None:
    server = launcher.start("ws_fault_apps:Echo")
    group = WsClients(server.port)
    clients.append(group)
    group.dial(11)
    group.collect(timeout=TIMEOUT_S)
    assert len(group.upgraded) == 11, group.failures
    sleeper, *others = group.upgraded
    for client in others:
        assert echoes(client, "warm")
    sleeper.send_text("sleep")
    time.sleep(0.05)  # the hook is asleep now
    delays = []
    for i, client in enumerate(others):
        sent = time.monotonic()
        assert echoes(client, f"echo {i}")
        delays.append(time.monotonic() - sent)
    assert max(delays) < 0.05, f"echoes took {[round(d * 1000, 1) for d in delays]} ms"
    assert sleeper.next_event() == TextMessage("sleep")
