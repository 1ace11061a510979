"""``SocketTransport``: a connection's socket operations behind the ``Transport`` interface.

Tested over a real socket pair: the transport's side is non-blocking, as the server's
connections are; the peer's side blocks with a timeout.
"""

from __future__ import annotations

import select
import socket
import tempfile
from collections.abc import Iterator

import pytest

from peregrine_core.transport import SocketTransport, Transport

TIMEOUT = 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(TIMEOUT)
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _wait_readable(sock: socket.socket) -> None:
    readable, _, _ = select.select([sock], [], [], TIMEOUT)
    assert readable, "nothing arrived within the timeout"


def test_a_socket_transport_is_a_transport(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    assert isinstance(SocketTransport(ours), Transport)


def test_fileno_and_peername_are_those_given(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    transport = SocketTransport(ours, ("127.0.0.1", 4321))
    assert transport.fileno() == ours.fileno()
    assert transport.peername == ("127.0.0.1", 4321)
    assert transport.socket is ours


def test_recv_returns_what_the_peer_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    transport = SocketTransport(ours)
    peer.sendall(b"hello")
    _wait_readable(ours)
    assert transport.recv(100) == b"hello"


def test_recv_with_nothing_to_read_raises_blocking_io_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    with pytest.raises(BlockingIOError):
        SocketTransport(ours).recv(100)


def test_recv_at_the_peers_end_of_output_returns_empty_bytes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    peer.shutdown(socket.SHUT_WR)
    _wait_readable(ours)
    assert SocketTransport(ours).recv(100) == b""


def test_send_writes_to_the_peer(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    assert SocketTransport(ours).send(b"abc") == 3
    assert _recv_exactly(peer, 3) == b"abc"


def test_sendmsg_writes_the_buffers_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    sent = SocketTransport(ours).sendmsg([b"head ", bytearray(b"and "), memoryview(b"body")])
    assert sent == len(b"head and body")
    assert _recv_exactly(peer, sent) == b"head and body"


def test_sendfile_writes_a_region_of_a_file(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789")
        f.flush()
        sent = SocketTransport(ours).sendfile(f.fileno(), 2, 5)
        assert sent == 5
        assert _recv_exactly(peer, 5) == b"23456"


def test_sendfile_at_the_end_of_the_file_returns_zero(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    with tempfile.TemporaryFile() as f:
        f.write(b"abc")
        f.flush()
        assert SocketTransport(ours).sendfile(f.fileno(), 3, 10) == 0


def test_shutdown_write_sends_end_of_output_and_reading_goes_on(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    transport = SocketTransport(ours)
    transport.send(b"last")
    transport.shutdown_write()
    assert _recv_exactly(peer, 5) == b"last"  # then EOF
    peer.sendall(b"still heard")
    _wait_readable(ours)
    assert transport.recv(100) == b"still heard"


def test_close_closes_the_socket_and_calls_on_close_once(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    calls: list[int] = []
    transport = SocketTransport(ours, on_close=lambda: calls.append(1))
    transport.close()
    assert calls == [1]
    assert ours.fileno() == -1
    assert transport.fileno() == -1
    assert peer.recv(1) == b""  # the peer sees the end of the connection


def test_close_twice_calls_on_close_exactly_once(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    calls: list[int] = []
    transport = SocketTransport(ours, on_close=lambda: calls.append(1))
    transport.close()
    transport.close()
    assert calls == [1]
    assert transport.on_close is None


def test_close_without_on_close_is_fine_twice(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    transport = SocketTransport(ours)
    transport.close()
    transport.close()
    assert ours.fileno() == -1


def test_on_close_is_called_even_when_closing_the_socket_fails() -> None:
    class FailingSocket(socket.socket):
        def close(self) -> None:
            super().close()
            raise OSError("close failed")

    a, b = socket.socketpair()
    sock = FailingSocket(a.family, a.type, a.proto, fileno=a.detach())
    calls: list[int] = []
    transport = SocketTransport(sock, on_close=lambda: calls.append(1))
    try:
        with pytest.raises(OSError, match="close failed"):
            transport.close()
        assert calls == [1]
        transport.close()  # closed already: nothing more
        assert calls == [1]
    finally:
        b.close()
