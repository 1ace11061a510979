"""Through the real server: peregrine_core.testing.serve and the websockets client."""

from __future__ import annotations

import queue
import socket
import threading
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from peregrine_core import Request, Response, ServerConfig
from peregrine_core.testing import serve
from peregrine_ws import (
    DeflateConfig,
    Opcode,
    TextMessage,
    WebSocketConfig,
    WebSocketConnection,
    upgrade,
)

from conftest import TIMEOUT_S, RawClient, masked

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: %s\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n"
)


class Chat:
    """Echoes on /ws (subprotocol "chat", compression offered); plain text elsewhere."""

    def __init__(self) -> None:
        self.log: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.websocket_config = WebSocketConfig()

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path == "/ws":
            self.log.put(("request", req.body))
            upgrade(req, resp, subprotocols=["chat"], deflate=DeflateConfig())
            return  # upgraded, or refused with the status set by upgrade()
        resp.set_body(f"plain {req.path}\n")

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        self.log.put(("message", message))
        conn.send(message)

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        self.log.put(("disconn", code))


CONFIG = ServerConfig(workers=1, graceful_timeout=2.0)


def read_head(sock: socket.socket) -> bytes:
    """Read an HTTP response head (and nothing after it) from ``sock``."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise EOFError(head)
        head += byte
    return head


def read_body(sock: socket.socket, head: bytes) -> bytes:
    """Read the body announced by ``head``'s Content-Length."""
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return body


def test_websockets_client_talks_through_the_server_with_compression() -> None:
    with serve(Chat(), config=CONFIG) as srv:
        uri = f"ws://127.0.0.1:{srv.port}/ws"
        with connect(uri, subprotocols=["chat"], open_timeout=TIMEOUT_S) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            ws.send("hello " * 1000)
            assert ws.recv(timeout=TIMEOUT_S) == "hello " * 1000
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=TIMEOUT_S) == b"\x00\x01"


def test_fragmented_compressed_messages_are_reassembled() -> None:
    with serve(Chat(), config=CONFIG) as srv:
        uri = f"ws://127.0.0.1:{srv.port}/ws"
        with connect(uri, open_timeout=TIMEOUT_S) as ws:
            for _ in range(3):
                ws.send(["frag", "men", "ted " * 50])
                assert ws.recv(timeout=TIMEOUT_S) == "fragmented " + "ted " * 49
                ws.send([b"\x00" * 10, b"\x01" * 70_000])
                assert ws.recv(timeout=TIMEOUT_S) == b"\x00" * 10 + b"\x01" * 70_000


def test_client_without_compression_or_subprotocol_is_served_too() -> None:
    with serve(Chat(), config=CONFIG) as srv:
        uri = f"ws://127.0.0.1:{srv.port}/ws"
        with connect(uri, compression=None, open_timeout=TIMEOUT_S) as ws:
            assert ws.subprotocol is None
            ws.send("plain")
            assert ws.recv(timeout=TIMEOUT_S) == "plain"


def test_frame_sent_with_the_handshake_is_not_lost() -> None:
    handler = Chat()
    with (
        serve(handler, config=CONFIG) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock,
    ):
        sock.sendall(HANDSHAKE % (b"13", 0) + masked(Opcode.TEXT, b"early"))
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n" in head.lower()
        assert b"content-length" not in head.lower()
        client = RawClient(sock)
        assert client.next_event() == TextMessage("early")


def test_upgrade_request_body_is_read_before_the_websocket_stream() -> None:
    handler = Chat()
    with (
        serve(handler, config=CONFIG) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock,
    ):
        sock.sendall(HANDSHAKE % (b"13", 5) + b"hello" + masked(Opcode.TEXT, b"after"))
        assert read_head(sock).startswith(b"HTTP/1.1 101 ")
        assert RawClient(sock).next_event() == TextMessage("after")
    assert handler.log.get(timeout=TIMEOUT_S) == ("request", b"hello")


def test_declined_upgrade_body_is_never_parsed_as_a_request() -> None:
    # CVE-2026-69243: a body smuggled behind a refused upgrade must stay a body.
    smuggled = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        serve(Chat(), config=CONFIG) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock,
    ):
        sock.sendall(HANDSHAKE % (b"8", len(smuggled)) + smuggled)
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 426 ")
        assert b"\r\nsec-websocket-version: 13\r\n" in head.lower()
        assert b"\r\nupgrade: websocket\r\n" in head.lower()
        assert b"\r\nconnection: upgrade, keep-alive\r\n" in head.lower()
        read_body(sock, head)
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert read_body(sock, head) == b"plain /next\n"  # not /admin


def test_plain_get_on_the_websocket_path_gets_400() -> None:
    with (
        serve(Chat(), config=CONFIG) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock,
    ):
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(sock).startswith(b"HTTP/1.1 400 ")


def test_server_shutdown_closes_websockets_with_1001() -> None:
    handler = Chat()
    closed: queue.Queue[int | None] = queue.Queue()

    def client(port: int, ready: threading.Event) -> None:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT_S) as ws:
            ready.set()
            try:
                ws.recv(timeout=TIMEOUT_S * 2)
            except ConnectionClosed as exc:
                closed.put(exc.rcvd.code if exc.rcvd is not None else None)

    with serve(handler, config=CONFIG) as srv:
        ready = threading.Event()
        thread = threading.Thread(target=client, args=(srv.port, ready))
        thread.start()
        assert ready.wait(TIMEOUT_S)
    assert closed.get(timeout=TIMEOUT_S) == 1001
    thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    codes = []
    while not handler.log.empty():
        entry = handler.log.get_nowait()
        if entry[0] == "disconn":
            codes.append(entry[1])
    assert codes == [1001]


@pytest.mark.parametrize("threads", [1, 2])
def test_many_clients_at_once(threads: int) -> None:
    handler = Chat()
    handler.websocket_config = WebSocketConfig(threads=threads)
    with serve(handler, config=CONFIG) as srv:
        uri = f"ws://127.0.0.1:{srv.port}/ws"
        with ExitStack() as stack:
            clients = [stack.enter_context(connect(uri, open_timeout=TIMEOUT_S)) for _ in range(20)]
            for i, ws in enumerate(clients):
                ws.send(f"client {i}")
            for i, ws in enumerate(clients):
                assert ws.recv(timeout=TIMEOUT_S) == f"client {i}"
