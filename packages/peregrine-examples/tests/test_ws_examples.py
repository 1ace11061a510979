"""The websocket and echo examples, end to end, with the ``websockets`` library as the client.

The handlers run in-process (``peregrine_core.testing.serve``) for the protocol tests, and as
``python -m peregrine_examples.NAME`` and as ``peregrine-NAME`` for the launch tests, like
the other examples. Every client has a timeout on its opening, its reads and its close.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from peregrine_core import Server
from peregrine_core.testing import serve
from peregrine_examples import echo
from peregrine_examples.echo import Echo
from peregrine_examples.websocket import WebSocketExample
from peregrine_ws import WebSocketConnection

from examples_support import TIMEOUT, console_script, free_port, start, stop

# --- helpers ----------------------------------------------------------------------------


def _client(
    port: int, path: str = "/", *, compression: str | None = "deflate", max_size: int | None = 1 << 20
) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}{path}",
        compression=compression,
        max_size=max_size,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        proxy=None,  # loopback only, whatever the environment says
        ping_interval=None,
    )


def _get(port: int, path: str) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _raw_upgrade(port: int, path: str = "/") -> socket.socket:
    """A socket after a successful handshake, for frames no client library would send."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert head.endswith(b"\r\n\r\n"), "the server sent a frame before the client did"
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _read_close_code(sock: socket.socket) -> int:
    """Read one unmasked server frame, which must be a close frame; return its code."""
    first, second = _recv_exactly(sock, 2)
    assert first == 0x88, f"expected a final close frame, got first byte {first:#x}"
    length = second & 0x7F
    assert length >= 2 and not second & 0x80
    payload = _recv_exactly(sock, length)
    code: int = struct.unpack("!H", payload[:2])[0]
    return code


# --- the websocket example ---------------------------------------------------------------


class RecordingExample(WebSocketExample):
    """The websocket example, keeping what its hooks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str | bytes] = []
        self.disconnects: list[tuple[int, str]] = []

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        self.messages.append(message)
        super().handle_ws_message(conn, message)

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        super().handle_ws_disconn(conn, code, reason)
        self.disconnects.append((code, reason))


@pytest.fixture
def page_server() -> Iterator[tuple[Server, RecordingExample]]:
    handler = RecordingExample()
    with serve(handler) as srv:
        yield srv, handler


def test_websocket_example_serves_its_page_stylesheet_and_script(
    page_server: tuple[Server, RecordingExample],
) -> None:
    srv, _ = page_server
    status, ctype, page = _get(srv.port, "/")
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert b'href="main.css"' in page and b'src="main.js"' in page
    status, ctype, css = _get(srv.port, "/main.css")
    assert (status, ctype) == (200, "text/css; charset=utf-8") and b"linear-gradient" in css
    status, ctype, script = _get(srv.port, "/main.js")
    assert (status, ctype) == (200, "text/javascript; charset=utf-8")
    # The page connects to its own host, never a hard-coded one.
    assert b'location.host + "/ws"' in script
    assert b"localhost" not in script and b"3000" not in script
    assert _get(srv.port, "/missing.js")[0] == 404


def test_websocket_example_answers_hello_client_to_each_message_and_closes_cleanly(
    page_server: tuple[Server, RecordingExample],
) -> None:
    srv, handler = page_server
    with _client(srv.port, "/ws") as ws:
        for _ in range(3):
            ws.send("Hello server!")
            assert ws.recv(timeout=TIMEOUT) == "Hello client!"
        ws.close(1000, "done")
        assert ws.close_code == 1000
    _wait_for(lambda: handler.disconnects == [(1000, "done")], "the server to see the close")
    assert handler.messages == ["Hello server!"] * 3


def test_websocket_example_answers_binary_and_fragmented_messages_once_each_with_text(
    page_server: tuple[Server, RecordingExample],
) -> None:
    srv, handler = page_server
    with _client(srv.port, "/ws") as ws:
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=TIMEOUT) == "Hello client!"
        ws.send(["Hel", "lo ", "server!"])  # one text message in three frames
        assert ws.recv(timeout=TIMEOUT) == "Hello client!"
        assert ws.ping(b"are you there").wait(TIMEOUT)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # one reply per message, nothing for the ping
    _wait_for(lambda: len(handler.disconnects) == 1, "the server to see the close")
    assert handler.messages == [b"\x00\xffbinary", "Hello server!"]


def test_websocket_example_upgrades_on_ws_with_a_query_too(
    page_server: tuple[Server, RecordingExample],
) -> None:
    srv, _ = page_server
    with _client(srv.port, "/ws?room=1") as ws:
        ws.send("Hello server!")
        assert ws.recv(timeout=TIMEOUT) == "Hello client!"


@pytest.mark.parametrize("path", ["/ws/", "/wsx", "/WS", "/x/ws", "/"])
def test_websocket_example_upgrades_on_no_other_path(
    page_server: tuple[Server, RecordingExample], path: str
) -> None:
    srv, _ = page_server
    with pytest.raises(InvalidStatus) as info, _client(srv.port, path):
        pass
    assert info.value.response.status_code in (200, 404)  # the page, or no such file


def test_websocket_example_refuses_a_plain_get_on_ws_with_400(
    page_server: tuple[Server, RecordingExample],
) -> None:
    srv, _ = page_server
    status, _, body = _get(srv.port, "/ws")
    assert status == 400 and b"Upgrade: websocket" in body


def test_websocket_example_logs_connects_messages_and_disconnects(
    page_server: tuple[Server, RecordingExample], caplog: pytest.LogCaptureFixture
) -> None:
    srv, handler = page_server
    caplog.set_level(logging.INFO, logger="peregrine_examples")
    with _client(srv.port, "/ws") as ws:
        port = ws.local_address[1]
        ws.send("Hello server!\x1b[31m")
        ws.recv(timeout=TIMEOUT)
    _wait_for(lambda: len(handler.disconnects) == 1, "the server to see the close")
    lines = [r.getMessage() for r in caplog.records if r.name == "peregrine_examples.websocket"]
    assert lines == [
        f"WebSocket connected: 127.0.0.1:{port}",
        f"WebSocket message from 127.0.0.1:{port}: 'Hello server!\\x1b[31m'",  # escaped
        f"WebSocket disconnected: 127.0.0.1:{port} (code 1000, reason '')",
    ]


# --- the echo example --------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[Server]:
    with serve(Echo()) as srv:
        yield srv


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_echo_sends_text_back_as_text_and_binary_as_binary(
    echo_server: Server, compression: str | None
) -> None:
    with _client(echo_server.port, compression=compression) as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (extensions is not None) == (compression is not None)
        messages: list[str | bytes] = [
            "",
            "héllo ☃",
            "x" * 70_000,
            b"",
            b"\x00\x01\xfe\xff",
            bytes(range(256)) * 300,
        ]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message  # same type and content


def test_echo_reassembles_a_fragmented_message_into_one(echo_server: Server) -> None:
    with _client(echo_server.port) as ws:
        ws.send([b"one ", b"two ", b"three"])
        assert ws.recv(timeout=TIMEOUT) == b"one two three"
        ws.send(["é", "t", "é"])  # fragments of one text message
        assert ws.recv(timeout=TIMEOUT) == "été"


def test_echo_answers_a_ping_with_its_payload_and_echoes_nothing_for_it(echo_server: Server) -> None:
    with _client(echo_server.port) as ws:
        assert ws.ping(b"payload").wait(TIMEOUT)  # set only by a pong with that payload
        ws.send("after the ping")
        assert ws.recv(timeout=TIMEOUT) == "after the ping"


def test_echo_answers_a_close_with_the_same_code(echo_server: Server) -> None:
    with _client(echo_server.port) as ws:
        ws.close(4001, "bye")
        assert ws.close_code == 4001
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_echo_accepts_messages_far_above_the_default_1_mib_limit(echo_server: Server) -> None:
    message = os.urandom(5 * 1024 * 1024)
    with _client(echo_server.port, max_size=None, compression=None) as ws:
        ws.send(message)
        assert ws.recv(timeout=TIMEOUT) == message


def test_echo_refuses_a_message_over_64_mib_from_its_header_with_1009(echo_server: Server) -> None:
    sock = _raw_upgrade(echo_server.port)
    try:
        # A masked binary frame announcing 64 MiB + 1 bytes; no payload follows.
        sock.sendall(b"\x82\xff" + struct.pack("!Q", echo.MAX_MESSAGE_BYTES + 1) + b"mask")
        assert _read_close_code(sock) == 1009
    finally:
        sock.close()


def test_echo_answers_a_plain_http_request_with_400(echo_server: Server) -> None:
    status, _, body = _get(echo_server.port, "/")
    assert status == 400 and b"WebSocket" in body


# --- launching ---------------------------------------------------------------------------


def _exchange(name: str, port: int) -> None:
    path = "/ws" if name == "websocket" else "/"
    with _client(port, path) as ws:
        ws.send("Hello server!")
        expected = "Hello client!" if name == "websocket" else "Hello server!"
        assert ws.recv(timeout=TIMEOUT) == expected


@pytest.mark.parametrize("name", ["websocket", "echo"])
def test_ws_example_runs_as_a_module_and_prints_where_it_listens(name: str) -> None:
    port = free_port()
    proc, line = start(
        [sys.executable, "-m", f"peregrine_examples.{name}", "--host", "127.0.0.1", "--port", str(port)]
    )
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        _exchange(name, port)
    finally:
        code, log = stop(proc)
    assert code == 0, log
    assert "WebSocket connected: " in log and "WebSocket disconnected: " in log


@pytest.mark.parametrize("name", ["websocket", "echo"])
def test_ws_example_runs_as_a_console_script(name: str) -> None:
    script = console_script(f"peregrine-{name}")
    port = free_port()
    proc, line = start([script, "--host", "127.0.0.1", "--port", str(port)])
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        _exchange(name, port)
    finally:
        code, log = stop(proc)
    assert code == 0, log
