"""The WebSocket loop when hooks block: handoff, order, bounds, shutdown, transports.

Connections are adopted as the core hands them over (a transport over one end of a TCP
pair on 127.0.0.1); the other ends are raw clients.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from peregrine_core import ServerConfig
from peregrine_core.testing import serve
from peregrine_ws import Close, Opcode, TextMessage, WebSocketConfig, WebSocketConnection, WebSocketUpgrade

from conftest import TIMEOUT_S, CountingTransport, RawClient, masked, tcp_pair, wait_for, ws_request


class Sleepy:
    """Echoes every message; ``sleep <seconds>`` first blocks the hook that long, and
    ``wait`` blocks it until ``release`` is set. Records the hook calls in order."""

    def __init__(self, config: WebSocketConfig | None = None) -> None:
        self.websocket_config = config or WebSocketConfig(ping_interval=None)
        self.log: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.release = threading.Event()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def handle_request(self, req: object, resp: object) -> None:
        pass

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.log.put(("message", message))
            assert isinstance(message, str)
            if message.startswith("sleep"):
                conn.send("working")
                time.sleep(float(message.split()[1]))
            elif message == "wait":
                self.release.wait(TIMEOUT_S * 2)
            conn.send(message)
        finally:
            with self._lock:
                self.running -= 1

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        self.log.put(("disconn", code))

    def drain(self) -> list[tuple[Any, ...]]:
        out = []
        while not self.log.empty():
            out.append(self.log.get_nowait())
        return out


@contextmanager
def clients(
    handler: object, count: int, server_config: ServerConfig | None = None
) -> Iterator[tuple[WebSocketUpgrade, list[RawClient], list[CountingTransport]]]:
    """``count`` connections adopted by one plugin (one WebSocket thread by default)."""
    plugin = WebSocketUpgrade(handler, server_config)
    try:
        with ExitStack() as stack:
            raws: list[RawClient] = []
            transports: list[CountingTransport] = []
            for _ in range(count):
                server, client = stack.enter_context(tcp_pair())
                tr = CountingTransport(server)
                plugin.adopt(tr, ws_request(remote_addr=server.getpeername()), b"", None)
                raws.append(RawClient(client))
                transports.append(tr)
            yield plugin, raws, transports
    finally:
        if isinstance(handler, Sleepy):
            handler.release.set()
        plugin.shutdown(1.0)


def echo_time(client: RawClient, text: str) -> float:
    started = time.monotonic()
    client.send_text(text)
    assert client.next_event() == TextMessage(text)
    return time.monotonic() - started


def test_a_blocking_message_hook_does_not_delay_echoes_to_ten_other_clients() -> None:
    handler = Sleepy()
    with clients(handler, 11) as (_, (sleeper, *others), _):
        for client in others:
            echo_time(client, "warm")
        sleeper.send_text("sleep 0.5")
        assert sleeper.next_event() == TextMessage("working")  # sent while the hook blocks
        delays = [echo_time(client, f"echo {i}") for i, client in enumerate(others)]
        assert max(delays) < 0.05, [round(d * 1000, 1) for d in delays]
        assert sleeper.next_event() == TextMessage("sleep 0.5")


def test_messages_of_a_connection_keep_their_order_when_a_hook_blocks_mid_stream() -> None:
    handler = Sleepy()
    texts = ["a", "b", "sleep 0.2", "c", "d", "sleep 0.1", "e", *[f"n{i}" for i in range(20)]]
    with clients(handler, 2) as (_, (client, other), _):
        # One write: the messages after a blocked one are already in the server's buffer.
        client.sock.sendall(b"".join(masked(Opcode.TEXT, t.encode()) for t in texts))
        assert echo_time(other, "meanwhile") < 0.1
        replies: list[str] = []
        while len(replies) < len(texts):
            event = client.next_event()
            assert isinstance(event, TextMessage)
            if event.data != "working":
                replies.append(event.data)
        assert replies == texts
        delivered = [e[1] for e in handler.drain() if e[0] == "message" and e[1] != "meanwhile"]
        assert delivered == texts


def test_the_disconnection_hook_waits_for_the_blocked_message_hook() -> None:
    handler = Sleepy()
    with clients(handler, 1) as (_, (client,), transports):
        client.send_text("sleep 0.2")
        assert client.next_event() == TextMessage("working")
        client.send_close(1000)
        assert client.expect_close()[0] == Close(1000, "")
        client.expect_eof()
        wait_for(lambda: transports[0].closes == 1)
        wait_for(lambda: not handler.log.empty() and handler.log.queue[-1][0] == "disconn")
        assert handler.drain() == [("message", "sleep 0.2"), ("disconn", 1000)]


def test_hook_calls_off_the_loop_are_bounded_and_no_message_is_dropped() -> None:
    handler = Sleepy()
    config = ServerConfig(handler_threads=2, handler_queue=1)
    with clients(handler, 8, config) as (_, raws, _):
        for client in raws:
            client.send_text("sleep 0.15")
        replies: list[str] = []
        for client in raws:
            seen = [client.next_event(), client.next_event()]
            replies += [e.data for e in seen if isinstance(e, TextMessage)]
        assert sorted(replies) == sorted(["working", "sleep 0.15"] * 8)
        # handler_threads calls off the loop, plus the one the driver runs at a time.
        assert handler.most_running <= 2 + 1


def test_a_stuck_hook_does_not_delay_a_forced_shutdown() -> None:
    handler = Sleepy()
    with clients(handler, 2) as (plugin, (stuck, other), transports):
        stuck.send_text("wait")
        wait_for(lambda: handler.running == 1)
        time.sleep(0.05)
        started = time.monotonic()
        plugin.shutdown(0.0)
        assert time.monotonic() - started < 0.3
        assert [t.closes for t in transports] == [1, 1]
        stuck.expect_eof()
        other.expect_eof()


def test_a_stuck_hook_does_not_hold_a_graceful_shutdown_past_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Sleepy()
    with clients(handler, 2) as (plugin, (stuck, other), transports):
        stuck.send_text("wait")
        wait_for(lambda: handler.running == 1)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="peregrine_ws"):
            stopper = threading.Thread(target=plugin.shutdown, args=(0.5,))
            stopper.start()
            assert other.expect_close()[0] == Close(1001, "server shutting down")
            other.send_close(1001)
            other.expect_eof()
            stopper.join(TIMEOUT_S)
        assert 0.45 < time.monotonic() - started < 0.5 + 0.3
        assert [t.closes for t in transports] == [1, 1]
        assert stuck.expect_close()[0].code == 1001  # its output still flowed
        stuck.expect_eof()
        stuck_addr = transports[0].peername
        assert any(
            "handle_ws_message" in r.getMessage() and str(stuck_addr) in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
        assert ("disconn", 1001) in handler.drain()  # the other connection's


def test_every_way_a_connection_ends_closes_its_transport_exactly_once() -> None:
    class Failing(Sleepy):
        def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
            if message == "boom":
                raise RuntimeError("the hook failed")
            super().handle_ws_message(conn, message)

    handler = Failing(WebSocketConfig(ping_interval=None, close_timeout=0.3))
    with clients(handler, 6) as (plugin, raws, transports):
        closing, eof, violator, failing, blocked, at_shutdown = raws
        closing.send_close(1000)  # the closing handshake
        closing.expect_close()
        eof.sock.shutdown(socket.SHUT_WR)  # 1006
        violator.sock.sendall(b"\x81\x02hi")  # unmasked: 1002, then the close timeout
        failing.send_text("boom")  # 1011, and the client answers
        assert failing.expect_close()[0].code == 1011
        failing.send_close(1011)
        blocked.send_text("sleep 0.2")  # ends while its hook blocks
        assert blocked.next_event() == TextMessage("working")
        blocked.sock.close()
        wait_for(lambda: [t.closes for t in transports[:5]] == [1] * 5)
        assert transports[5].closes == 0
        plugin.shutdown(0.5)
        assert [t.closes for t in transports] == [1] * 6
        at_shutdown.expect_close()
        # Refused after the shutdown: closed at once, once.
        with tcp_pair() as (server, client):
            late = CountingTransport(server)
            plugin.adopt(late, ws_request(), b"", None)
            assert late.closes == 1
            assert RawClient(client).expect_close()[0].code == 1001
    time.sleep(0.3)  # the blocked hook ends: nothing closes twice
    assert [t.closes for t in transports] == [1] * 6


# --- through the real server ---------------------------------------------------------------

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


class Echo:
    def handle_request(self, req: Any, resp: Any) -> None:
        from peregrine_ws import upgrade

        upgrade(req, resp)

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        conn.send(message)


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    sock.sendall(HANDSHAKE)
    return sock


def upgraded(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock``'s handshake is answered ``101`` within ``timeout`` seconds."""
    sock.settimeout(timeout)
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            data = sock.recv(1)
            if not data:
                return False
            head += data
    except TimeoutError:
        return False
    finally:
        sock.settimeout(TIMEOUT_S)
    return head.startswith(b"HTTP/1.1 101 ")


def test_max_connections_bounds_upgraded_websockets() -> None:
    config = ServerConfig(workers=1, max_connections=5, graceful_timeout=1.0)
    with serve(Echo(), config=config) as srv, ExitStack() as stack:
        socks = [stack.enter_context(handshake(srv.port)) for _ in range(5)]
        assert all(upgraded(s, TIMEOUT_S) for s in socks)
        sixth = stack.enter_context(handshake(srv.port))
        assert not upgraded(sixth, 0.5), "a 6th WebSocket was upgraded with max_connections=5"
        first = RawClient(socks[0])
        first.send_close(1000)
        first.expect_close()
        first.expect_eof()
        assert upgraded(sixth, TIMEOUT_S), "the 6th WebSocket was not upgraded after one closed"
        late = RawClient(sixth)
        late.send_text("in")
        assert late.next_event() == TextMessage("in")
