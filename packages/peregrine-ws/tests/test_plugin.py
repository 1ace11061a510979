"""The plugin as the core sees it: entry point, configuration, pollers, memory, abuse."""

from __future__ import annotations

import gc
import socket
import struct
import threading
import tracemalloc
from importlib.metadata import entry_points

import pytest

from peregrine_core import ConfigError, Response, ServerConfig
from peregrine_core.plugins import UPGRADES_GROUP, UpgradeHandler, load
from peregrine_core.poller import available_pollers
from peregrine_ws import (
    Close,
    DeflateConfig,
    Opcode,
    Pong,
    TextMessage,
    WebSocketConfig,
    WebSocketConnection,
    WebSocketUpgrade,
    upgrade,
)

from conftest import RawClient, adopted, closed, masked, tcp_pair, transport, wait_for, ws_request


class Echo:
    def __init__(self) -> None:
        self.open: list[WebSocketConnection] = []
        self.ended: list[int] = []

    def handle_request(self, req: object, resp: object) -> None:
        pass

    def handle_ws_conn(self, conn: WebSocketConnection) -> None:
        self.open.append(conn)

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        conn.send(message)

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        self.ended.append(code)


def test_websocket_entry_point_loads_the_plugin() -> None:
    names = [ep.name for ep in entry_points(group=UPGRADES_GROUP)]
    assert "websocket" in names
    assert load(UPGRADES_GROUP, "websocket") is WebSocketUpgrade
    plugin = WebSocketUpgrade(Echo(), ServerConfig())
    assert isinstance(plugin, UpgradeHandler)
    plugin.shutdown(0.1)


def test_handler_config_must_be_a_websocket_config() -> None:
    class Wrong(Echo):
        websocket_config = {"threads": 2}

    with pytest.raises(ConfigError, match="websocket_config"):
        WebSocketUpgrade(Wrong(), None)


def test_handler_config_is_used() -> None:
    class Tuned(Echo):
        websocket_config = WebSocketConfig(threads=3)

    assert WebSocketUpgrade(Tuned(), None).config.threads == 3


def test_no_thread_is_started_before_the_first_connection() -> None:
    before = {t.name for t in threading.enumerate()}
    plugin = WebSocketUpgrade(Echo(), None)
    assert {t.name for t in threading.enumerate()} == before
    plugin.shutdown(0.1)


@pytest.mark.parametrize("poller", available_pollers())
def test_echo_ping_and_close_on_every_poller(poller: str) -> None:
    handler = Echo()
    plugin = WebSocketUpgrade(handler, ServerConfig(poller=poller))  # type: ignore[arg-type]
    try:
        with tcp_pair() as (server, client_sock):
            plugin.adopt(transport(server), ws_request(), b"")
            client = RawClient(client_sock)
            client.send_text("hi")
            client.send_frame(Opcode.PING, b"p")
            assert client.next_event() == TextMessage("hi")
            assert client.next_event() == Pong(b"p")
            client.send_close(1000)
            assert client.expect_close()[0] == Close(1000, "")
            client.expect_eof()
            wait_for(lambda: handler.ended == [1000])
    finally:
        plugin.shutdown(1.0)


def test_abrupt_disconnects_mid_frame_are_reported_and_harmless() -> None:
    handler = Echo()
    plugin = WebSocketUpgrade(handler, None)
    reset = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST
    try:
        frame = masked(Opcode.BINARY, b"x" * 1000)
        for cut in (1, 2, 5, 500):
            with socket.create_server(("127.0.0.1", 0)) as listener:
                client = socket.create_connection(listener.getsockname(), timeout=5)
                server, _ = listener.accept()
            plugin.adopt(transport(server), ws_request(), b"")
            client.sendall(frame[:cut])
            if cut % 2:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
            client.close()
            wait_for(closed(server))
        wait_for(lambda: handler.ended == [1006] * 4)
        with tcp_pair() as (server, client_sock):
            plugin.adopt(transport(server), ws_request(), b"")
            raw = RawClient(client_sock)
            raw.send_text("still serving")
            assert raw.next_event() == TextMessage("still serving")
    finally:
        plugin.shutdown(1.0)


def test_idle_connections_hold_little_memory_even_with_deflate() -> None:
    handler = Echo()
    offer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
    count = 100
    pairs = [socket.socketpair() for _ in range(count)]
    plugin = WebSocketUpgrade(handler, None)
    try:
        gc.collect()
        tracemalloc.start()
        for server, _ in pairs:
            req = ws_request(offer)
            resp = Response()
            assert upgrade(req, resp, deflate=DeflateConfig())
            plugin.adopt(transport(server), req, b"", resp.upgrade_state)
        wait_for(lambda: len(handler.open) == count)
        gc.collect()
        per_connection = tracemalloc.get_traced_memory()[0] / count
        tracemalloc.stop()
        # No zlib state before the first compressed message: a few KiB of Python objects.
        assert per_connection < 8 * 1024
        assert all(conn._deflate is not None for conn in handler.open)
    finally:
        tracemalloc.stop()
        plugin.shutdown(1.0)
        for server, client in pairs:
            server.close()
            client.close()


def test_adopt_accepts_a_memoryview_of_early_data() -> None:
    handler = Echo()
    data = memoryview(masked(Opcode.TEXT, b"early"))
    with adopted(handler, data=data) as (_, client, _):  # type: ignore[arg-type]
        assert client.next_event() == TextMessage("early")
