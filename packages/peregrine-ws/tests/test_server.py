"""The WebSocket runtime over real sockets: hooks, closing, timers, backpressure, shutdown.

The server side is a ``WebSocketUpgrade`` that adopted one end of a TCP pair on
127.0.0.1, exactly as the core hands it over; the other end is a raw client.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
from websockets.frames import Frame
from websockets.protocol import Protocol, Side

from peregrine_core import Response
from peregrine_ws import (
    BackpressureError,
    BinaryMessage,
    Close,
    ConnectionClosed,
    DeflateConfig,
    Opcode,
    Ping,
    Pong,
    TextMessage,
    WebSocketConfig,
    WebSocketConnection,
    WebSocketUpgrade,
    upgrade,
)

from conftest import TIMEOUT_S, RawClient, adopted, closed, masked, tcp_pair, transport, wait_for, ws_request


class Recorder:
    """A handler that logs every hook call and echoes messages."""

    def __init__(self, config: WebSocketConfig | None = None, *, echo: bool = True) -> None:
        self.websocket_config = config or WebSocketConfig()
        self.echo = echo
        self.log: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.conns: list[WebSocketConnection] = []

    def handle_request(self, req: object, resp: object) -> None:
        pass

    def handle_ws_conn(self, conn: WebSocketConnection) -> None:
        self.conns.append(conn)
        self.log.put(("conn", threading.current_thread().name))

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        self.log.put(("message", message))
        if message == "boom":
            raise RuntimeError("the handler failed")
        if self.echo:
            conn.send(message)

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        self.log.put(("disconn", code, reason))

    def next(self, timeout: float = TIMEOUT_S) -> tuple[Any, ...]:
        return self.log.get(timeout=timeout)

    def drain(self) -> list[tuple[Any, ...]]:
        out = []
        while not self.log.empty():
            out.append(self.log.get_nowait())
        return out

    def conn(self) -> WebSocketConnection:
        wait_for(lambda: bool(self.conns))
        return self.conns[0]


def test_messages_reach_the_hook_and_echo_back() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, _):
        assert handler.next()[0] == "conn"
        client.send_text("héllo")
        client.send_frame(Opcode.BINARY, b"\x00\xff")
        assert client.next_event() == TextMessage("héllo")
        assert client.next_event() == BinaryMessage(b"\x00\xff")
        assert handler.next() == ("message", "héllo")
        assert handler.next() == ("message", b"\x00\xff")


def test_client_close_is_echoed_then_the_server_closes_tcp() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, server):
        client.send_close(1000, "bye")
        close, _ = client.expect_close()
        assert close == Close(1000, "")
        client.expect_eof()
        assert handler.next()[0] == "conn"
        assert handler.next() == ("disconn", 1000, "bye")
        wait_for(closed(server))
        assert handler.conn().close_code == 1000


def test_close_without_a_code_is_echoed_without_one() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, _):
        client.send_close(None)
        close, _ = client.expect_close()
        assert close == Close(1005, "")
        client.expect_eof()
        handler.next()
        assert handler.next() == ("disconn", 1005, "")


def test_early_data_is_delivered_after_handle_ws_conn_and_before_later_data() -> None:
    handler = Recorder()
    early = masked(Opcode.TEXT, b"early") + masked(Opcode.TEXT, b"ear")[:4]
    with adopted(handler, data=early) as (_, client, _):
        client.sock.sendall(masked(Opcode.TEXT, b"ear")[4:])
        client.send_text("later")
        assert handler.next()[0] == "conn"
        assert [handler.next()[1] for _ in range(3)] == ["early", "ear", "later"]


def test_frames_split_across_writes_and_packed_in_one_write() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, _):
        frame = masked(Opcode.TEXT, b"split")
        for i in range(len(frame)):
            client.sock.sendall(frame[i : i + 1])
            time.sleep(0.002)
        client.sock.sendall(b"".join(masked(Opcode.TEXT, b"%d" % i) for i in range(3)))
        events = [client.next_event() for _ in range(4)]
        assert events == [TextMessage(t) for t in ("split", "0", "1", "2")]


def test_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    with adopted(Recorder()) as (_, client, _):
        client.send_frame(Opcode.PING, b"are you there")
        assert client.next_event() == Pong(b"are you there")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"\x81\x02hi", 1002, id="unmasked"),
        pytest.param(masked(Opcode.TEXT, b"\xc3\x28"), 1007, id="invalid utf-8"),
        pytest.param(masked(Opcode.TEXT, b"x", rsv1=True), 1002, id="RSV1 without deflate"),
        pytest.param(masked(0x3, b""), 1002, id="reserved opcode"),
        pytest.param(masked(Opcode.BINARY, b"x" * 11), 1009, id="too big"),
    ],
)
def test_violation_closes_with_its_code_then_drops_tcp(frame: bytes, code: int) -> None:
    handler = Recorder(WebSocketConfig(max_message_bytes=10))
    with adopted(handler) as (_, client, server):
        client.sock.sendall(frame)
        close, before = client.expect_close()
        assert close.code == code
        assert before == []
        client.expect_eof()
        handler.next()
        assert handler.next()[:2] == ("disconn", code)
        # The server half-closed and reads until the client's FIN, then closes.
        assert server.fileno() != -1
        client.sock.shutdown(socket.SHUT_WR)
        wait_for(closed(server), timeout=1.0)


def test_failed_connection_is_closed_after_close_timeout_if_the_client_lingers() -> None:
    handler = Recorder(WebSocketConfig(close_timeout=0.3))
    with adopted(handler) as (_, client, server):
        client.sock.sendall(b"\x81\x02hi")
        assert client.expect_close()[0].code == 1002
        started = time.monotonic()
        wait_for(closed(server), timeout=2.0)
        assert time.monotonic() - started < 1.5


def test_hook_exception_closes_with_1011_and_the_thread_carries_on() -> None:
    handler = Recorder()
    with adopted(handler) as (plugin, client, _):
        client.send_text("boom")
        close, _ = client.expect_close()
        assert close == Close(1011, "internal error")
        client.send_close(1011)
        with tcp_pair() as (server2, client_sock2):
            plugin.adopt(transport(server2), ws_request(), b"")
            client2 = RawClient(client_sock2)
            client2.send_text("still alive")
            assert client2.next_event() == TextMessage("still alive")


def test_handle_ws_frame_gets_opcode_and_payload_bytes() -> None:
    got: queue.Queue[tuple[int, bytes]] = queue.Queue()

    class Legacy:
        def handle_request(self, req: object, resp: object) -> None:
            pass

        def handle_ws_frame(self, conn: WebSocketConnection, opcode: int, payload: bytes) -> None:
            got.put((opcode, payload))

    with adopted(Legacy()) as (_, client, _):
        client.send_text("é")
        client.send_frame(Opcode.BINARY, b"\x01")
        assert got.get(timeout=TIMEOUT_S) == (Opcode.TEXT, "é".encode())
        assert got.get(timeout=TIMEOUT_S) == (Opcode.BINARY, b"\x01")


def test_close_from_another_thread_sends_code_and_reason() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, _):
        conn = handler.conn()
        conn.close(4000, "bye")
        assert conn.closed
        with pytest.raises(ConnectionClosed):
            conn.send("too late")
        conn.close(1000)  # a second close does nothing
        close, _ = client.expect_close()
        assert close == Close(4000, "bye")
        client.send_close(4000)
        client.expect_eof()
        handler.next()
        assert handler.next() == ("disconn", 4000, "")


def test_handle_ws_conn_may_refuse_the_connection() -> None:
    class Refuser(Recorder):
        def handle_ws_conn(self, conn: WebSocketConnection) -> None:
            conn.close(4403, "forbidden")

    with adopted(Refuser()) as (_, client, _):
        close, _ = client.expect_close()
        assert close == Close(4403, "forbidden")
        client.send_close(4403)
        client.expect_eof()


def test_sends_from_many_threads_arrive_whole_and_in_order_per_thread() -> None:
    handler = Recorder(WebSocketConfig(max_send_queue_bytes=16 << 20), echo=False)
    sizes = [10, 200, 70_000, 3]
    with adopted(handler) as (_, client, _):
        conn = handler.conn()

        def sender(tag: int) -> None:
            for i in range(25):
                conn.send(bytes([tag]) * sizes[i % len(sizes)] + b"%d" % i)

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        received: dict[int, list[bytes]] = {t: [] for t in range(4)}
        for _ in range(100):
            event = client.next_event()
            assert isinstance(event, BinaryMessage)
            received[event.data[0]].append(event.data)
        for t in threads:
            t.join(TIMEOUT_S)
        for tag, msgs in received.items():
            assert msgs == [bytes([tag]) * sizes[i % len(sizes)] + b"%d" % i for i in range(25)]


def test_client_that_stops_reading_gets_backpressure_then_1008() -> None:
    config = WebSocketConfig(
        max_send_queue_bytes=65_536, write_timeout=0.5, close_timeout=0.5, ping_interval=None
    )
    handler = Recorder(config, echo=False)

    def shrink(server: socket.socket, client: socket.socket) -> None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    with adopted(handler, before_adopt=shrink) as (_, _client, server):
        conn = handler.conn()
        chunk = b"x" * 16_384
        refusals = 0
        most_queued = 0
        # A producer that keeps sending, backing off when told to.
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                conn.send(chunk)
            except BackpressureError as exc:
                assert exc.limit_bytes == 65_536
                refusals += 1
                time.sleep(0.005)
            except ConnectionClosed:
                break
            most_queued = max(most_queued, conn.queued_bytes)
        assert refusals > 0
        assert most_queued < 65_536 + len(chunk) + 16
        handler.next()
        assert handler.next()[:2] == ("disconn", 1008)
        # The close frame cannot be delivered either: the socket goes after close_timeout.
        wait_for(closed(server), timeout=config.close_timeout + 1.0)


def test_reading_pauses_while_the_send_queue_is_full() -> None:
    config = WebSocketConfig(max_send_queue_bytes=65_536, ping_interval=None)
    handler = Recorder(config)  # echoes every message

    def shrink(server: socket.socket, client: socket.socket) -> None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    with adopted(handler, before_adopt=shrink) as (_, client, _):
        conn = handler.conn()
        msgs = [bytes([i]) * 4096 for i in range(250)]

        def send_all() -> None:
            for m in msgs:
                client.send_frame(Opcode.BINARY, m)

        sender = threading.Thread(target=send_all)
        sender.start()
        time.sleep(0.5)  # the client reads nothing meanwhile
        # Over the mark (so reading is paused), but by less than one message.
        assert 65_536 <= conn.queued_bytes < 65_536 + 4096 + 16
        assert [client.next_event() for _ in msgs] == [BinaryMessage(m) for m in msgs]
        sender.join(TIMEOUT_S)
        assert not conn.closed


def test_missing_pong_closes_with_1011_and_a_late_pong_is_ignored() -> None:
    config = WebSocketConfig(ping_interval=0.1, ping_timeout=0.2)
    handler = Recorder(config)
    with adopted(handler) as (_, client, _):
        ping = client.next_event()
        assert isinstance(ping, Ping)
        close, _ = client.expect_close()
        assert close == Close(1011, "keepalive ping timeout")
        client.send_frame(Opcode.PONG, ping.payload)  # late
        client.send_close(1011)
        client.expect_eof()
        handler.next()
        assert handler.next()[:2] == ("disconn", 1011)


def test_answered_pings_keep_the_connection_open() -> None:
    config = WebSocketConfig(ping_interval=0.05, ping_timeout=0.1)
    handler = Recorder(config)
    with adopted(handler) as (_, client, _):
        pings = 0
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            event = client.next_event()
            assert isinstance(event, Ping)
            client.send_frame(Opcode.PONG, event.payload)
            pings += 1
        assert pings >= 5
        assert not handler.conn().closed


def test_pong_with_another_payload_does_not_answer_the_ping() -> None:
    config = WebSocketConfig(ping_interval=0.1, ping_timeout=0.2)
    with adopted(Recorder(config)) as (_, client, _):
        assert isinstance(client.next_event(), Ping)
        client.send_frame(Opcode.PONG, b"unsolicited")
        close, _ = client.expect_close()
        assert close.code == 1011


def test_no_pings_when_the_interval_is_none() -> None:
    handler = Recorder(WebSocketConfig(ping_interval=None))
    with adopted(handler) as (_, client, _), pytest.raises(TimeoutError):
        client.next_event(timeout=0.5)


def test_close_timeout_drops_a_client_that_never_answers() -> None:
    handler = Recorder(WebSocketConfig(close_timeout=0.3))
    with adopted(handler) as (_, client, server):
        handler.conn().close(1000)
        started = time.monotonic()
        close, _ = client.expect_close()
        assert close.code == 1000
        client.expect_eof()
        assert time.monotonic() - started < 2.0
        handler.next()
        assert handler.next()[:2] == ("disconn", 1000)
        wait_for(closed(server))


def test_eof_without_a_close_frame_is_reported_as_1006() -> None:
    handler = Recorder()
    with adopted(handler) as (_, client, server):
        handler.conn()
        client.sock.shutdown(socket.SHUT_WR)
        handler.next()
        assert handler.next() == ("disconn", 1006, "")
        wait_for(closed(server))


def test_shutdown_sends_1001_and_closes_every_socket() -> None:
    handler = Recorder()
    plugin = WebSocketUpgrade(handler, None)
    with tcp_pair() as (s1, c1), tcp_pair() as (s2, c2):
        plugin.adopt(transport(s1), ws_request(), b"")
        plugin.adopt(transport(s2), ws_request(), b"")
        clients = [RawClient(c1), RawClient(c2)]
        wait_for(lambda: len(handler.conns) == 2)
        stopper = threading.Thread(target=plugin.shutdown, args=(5.0,))
        started = time.monotonic()
        stopper.start()
        for client in clients:
            close, _ = client.expect_close()
            assert close == Close(1001, "server shutting down")
            client.send_close(1001)
            client.expect_eof()
        stopper.join(TIMEOUT_S)
        assert not stopper.is_alive()
        assert time.monotonic() - started < 2.0
        assert s1.fileno() == -1 and s2.fileno() == -1
        codes = sorted(e[1] for e in handler.drain() if e[0] == "disconn")
        assert codes == [1001, 1001]
    assert not [t for t in threading.enumerate() if t.name.startswith("peregrine-ws-")]


def test_shutdown_is_bounded_when_clients_do_not_answer() -> None:
    handler = Recorder()
    plugin = WebSocketUpgrade(handler, None)
    with tcp_pair() as (server, client):
        plugin.adopt(transport(server), ws_request(), b"")
        handler.conn()
        started = time.monotonic()
        plugin.shutdown(0.3)
        assert time.monotonic() - started < 2.0
        assert server.fileno() == -1
        assert RawClient(client).expect_close()[0].code == 1001


def test_adoption_after_shutdown_gets_1001_and_is_closed() -> None:
    handler = Recorder()
    plugin = WebSocketUpgrade(handler, None)
    plugin.shutdown(1.0)
    with tcp_pair() as (server, client):
        plugin.adopt(transport(server), ws_request(), b"")
        assert server.fileno() == -1
        raw = RawClient(client)
        assert raw.expect_close()[0].code == 1001
        raw.expect_eof()
    assert handler.log.empty()


def test_connections_are_spread_over_the_threads() -> None:
    handler = Recorder(WebSocketConfig(threads=2))
    plugin = WebSocketUpgrade(handler, None)
    try:
        with tcp_pair() as (s1, _c1), tcp_pair() as (s2, _c2), tcp_pair() as (s3, _c3):
            for s in (s1, s2, s3):
                plugin.adopt(transport(s), ws_request(), b"")
            names = {handler.next()[1] for _ in range(3)}
            assert names == {"peregrine-ws-0", "peregrine-ws-1"}
    finally:
        plugin.shutdown(1.0)


def test_compressed_messages_flow_both_ways_after_negotiation() -> None:
    handler = Recorder()
    req = ws_request(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"))
    resp = Response()
    assert upgrade(req, resp, deflate=DeflateConfig(min_bytes=0))
    with adopted(handler, request=req, state=resp.upgrade_state) as (_, client, _):
        peer = Protocol(Side.CLIENT, max_size=None)
        peer.extensions = [WsDeflate(False, False, 12, 12)]
        text = "compress me " * 100
        for _ in range(3):
            peer.send_text(text.encode())
        client.sock.sendall(b"".join(peer.data_to_send()))
        frames: list[Frame] = []
        raw = b""
        while len(frames) < 3:
            data = client.sock.recv(65536)
            raw += data
            peer.receive_data(data)
            frames += [e for e in peer.events_received() if isinstance(e, Frame)]
        assert [bytes(f.data).decode() for f in frames] == [text] * 3
        assert raw[0] == 0xC1  # FIN, RSV1 (compressed), text
        assert len(raw) < len(text)  # three messages, compressed with a shared context
        assert [handler.next()[1] for _ in range(4)][1:] == [text] * 3


def test_internal_error_in_decoding_closes_with_1011_and_spares_the_thread() -> None:
    class Broken(Recorder):
        def handle_ws_conn(self, conn: WebSocketConnection) -> None:
            super().handle_ws_conn(conn)
            if len(self.conns) == 1:  # only the first connection hits the bug

                def bug() -> None:
                    raise RuntimeError("a bug")

                pytest.MonkeyPatch().setattr(conn._decoder, "next_event", bug)

    handler = Broken()
    with adopted(handler) as (plugin, client, _):
        client.send_text("x")
        assert client.expect_close()[0] == Close(1011, "internal error")
        client.sock.shutdown(socket.SHUT_WR)
        with tcp_pair() as (server2, client_sock2):
            plugin.adopt(transport(server2), ws_request(), b"")
            client2 = RawClient(client_sock2)
            client2.send_text("ok")
            assert client2.next_event() == TextMessage("ok")
            client2.send_close()
            client2.expect_eof()
