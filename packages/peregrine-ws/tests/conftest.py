"""Helpers shared by the tests: feeding inputs every way, a raw client, adopted transports."""

from __future__ import annotations

import itertools
import os
import random
import socket
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from peregrine_core import Request
from peregrine_core.transport import SocketTransport
from peregrine_ws import (
    Close,
    CloseCode,
    DeflateConfig,
    Event,
    FrameDecoder,
    Opcode,
    ProtocolError,
    WebSocketUpgrade,
    build_close_payload,
    build_frame,
)
from peregrine_ws._deflate import DeflateParams, PerMessageDeflate

TIMEOUT_S = 5.0
KEY = b"\x37\xfa\x21\x3d"


def masked(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame, masked with a fixed key."""
    return build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=KEY)


def client_compress(data: bytes) -> bytes:
    """What a client without context takeover sends for ``data`` (RFC 7692 §7.2.1)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflate_state(**overrides: Any) -> PerMessageDeflate:
    """A server's permessage-deflate state with context takeover and 15-bit windows."""
    fields: dict[str, Any] = {
        "server_no_context_takeover": False,
        "client_no_context_takeover": False,
        "server_max_window_bits": 15,
        "client_max_window_bits": 15,
        "config": DeflateConfig(),
        "response": "permessage-deflate",
    }
    fields.update(overrides)
    return PerMessageDeflate(DeflateParams(**fields))


def splits(data: bytes) -> Iterator[list[bytes]]:
    """``data`` whole, one byte at a time, then at random split points."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(len(data))
    for _ in range(8):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
        edges = [0, *cuts, len(data)]
        yield [data[a:b] for a, b in itertools.pairwise(edges)]


Outcome = tuple[list[Event], int | None]


def decode_chunks(chunks: list[bytes], factory: Callable[[], FrameDecoder]) -> Outcome:
    """Feed ``chunks`` in order: the events decoded, and the close code of any error."""
    decoder = factory()
    events: list[Event] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        try:
            while (event := decoder.next_event()) is not None:
                events.append(event)
        except ProtocolError as exc:
            return events, exc.code
    return events, None


def decode_every_way(data: bytes, factory: Callable[[], FrameDecoder] = FrameDecoder) -> Outcome:
    """Decode ``data`` whole, byte by byte and at random splits; all must agree."""
    outcomes = [decode_chunks(chunks, factory) for chunks in splits(data)]
    for outcome in outcomes[1:]:
        assert outcome == outcomes[0]
    return outcomes[0]


class RawClient:
    """A minimal WebSocket client over a blocking socket, built on this package's codec."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(TIMEOUT_S)
        self.sock = sock
        self.decoder = FrameDecoder(client=False, max_message_bytes=None)

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> None:
        frame = build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=os.urandom(4))
        self.sock.sendall(frame)

    def send_text(self, text: str) -> None:
        self.send_frame(Opcode.TEXT, text.encode())

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        self.send_frame(Opcode.CLOSE, build_close_payload(code, reason))

    def next_event(self, timeout: float = TIMEOUT_S) -> Event:
        """The next event from the server; EOFError when the server closed TCP."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.decoder.next_event()
            if event is not None:
                return event
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.decoder.receive_data(data)

    def expect_close(self, timeout: float = TIMEOUT_S) -> tuple[Close, list[Event]]:
        """Read until the server's close frame; also returns the events before it."""
        seen: list[Event] = []
        while True:
            event = self.next_event(timeout)
            if isinstance(event, Close):
                return event, seen
            seen.append(event)

    def expect_eof(self, timeout: float = TIMEOUT_S) -> None:
        """Read (and drop) until the server closes TCP."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return
            except ConnectionResetError:
                return


def ws_request(*headers: tuple[str, str], remote_addr: object = None) -> Request:
    """A GET /ws request as the handshake sees it (the headers a browser would send)."""
    base = [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    names = {name.lower() for name, _ in headers}
    merged = [h for h in base if h[0].lower() not in names] + list(headers)
    return Request("GET", "/ws", "HTTP/1.1", merged, remote_addr=remote_addr)


@contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (server side, client side) TCP pair on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT_S)
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
        server, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def transport(sock: socket.socket) -> SocketTransport:
    """``sock`` as the core hands an upgraded connection over: non-blocking, in a transport."""
    sock.setblocking(False)
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    return SocketTransport(sock, peer)


class CountingTransport:
    """A transport over a socket that counts its ``close()`` calls (the slot released)."""

    supports_sendfile = False

    def __init__(self, sock: socket.socket) -> None:
        self.inner = transport(sock)
        self.closes = 0

    def fileno(self) -> int:
        return self.inner.fileno()

    def recv(self, size: int, /) -> bytes:
        return self.inner.recv(size)

    def send(self, data: bytes | bytearray | memoryview, /) -> int:
        return self.inner.send(data)

    def sendmsg(self, buffers: Sequence[bytes | bytearray | memoryview], /) -> int:
        return self.inner.sendmsg(buffers)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        raise AssertionError("a WebSocket never sends files")

    def shutdown_write(self) -> None:
        self.inner.shutdown_write()

    def close(self) -> None:
        self.closes += 1
        self.inner.close()

    @property
    def peername(self) -> object:
        return self.inner.peername

    @property
    def local_address(self) -> object:
        return self.inner.local_address

    @property
    def scheme(self) -> str:
        return self.inner.scheme


@contextmanager
def adopted(
    handler: object,
    *,
    data: bytes = b"",
    request: Request | None = None,
    before_adopt: Callable[[socket.socket, socket.socket], None] | None = None,
    state: object = None,
) -> Iterator[tuple[WebSocketUpgrade, RawClient, socket.socket]]:
    """A ``WebSocketUpgrade`` that adopted one connection; the client side is raw."""
    plugin = WebSocketUpgrade(handler, None)
    try:
        with tcp_pair() as (server, client):
            if before_adopt is not None:
                before_adopt(server, client)
            req = request or ws_request(remote_addr=server.getpeername())
            plugin.adopt(transport(server), req, data, state)
            yield plugin, RawClient(client), server
    finally:
        plugin.shutdown(2.0)


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Poll ``predicate`` until true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def closed(sock: socket.socket) -> Callable[[], bool]:
    """A predicate for ``wait_for``: ``sock`` has been closed (by the library)."""
    return lambda: sock.fileno() == -1
