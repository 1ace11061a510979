"""Shared helpers for peregrine-core's tests: raw sockets with timeouts, response parsing."""

from __future__ import annotations

import socket
import time

import pytest

from peregrine_core._config import PollerName
from peregrine_core.poller import available_pollers

TIMEOUT = 5.0


@pytest.fixture(params=available_pollers())
def poller_name(request: pytest.FixtureRequest) -> PollerName:
    """Every poller backend this platform has."""
    name: PollerName = request.param
    return name


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


class Reply:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers} {self.body[:60]!r}>"


class Reader:
    """Reads HTTP/1.1 responses from a socket, keeping what follows each one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self, head_request: bool = False) -> Reply:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a full response head: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _, code, reason = lines[0].split(" ", 2)
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        reply = Reply(int(code), reason, headers, b"")
        length = reply.header("content-length")
        if head_request or reply.status in (204, 304) or reply.status < 200 or length is None:
            return reply
        n = int(length)
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed inside a body")
        reply.body, self.buf = self.buf[:n], self.buf[n:]
        return reply

    def closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the peer closes (EOF or reset) within ``timeout`` with nothing more sent."""
        end = time.monotonic() + timeout
        self.sock.settimeout(0.1)
        try:
            while time.monotonic() < end:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    return not self.buf
                if not data:
                    return not self.buf
                self.buf += data
            return False
        finally:
            self.sock.settimeout(TIMEOUT)


def exchange(port: int, data: bytes) -> tuple[Reply, bool]:
    """Send ``data`` on a new connection; return the first response and whether it closed."""
    with connect(port) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        reply = reader.response()
        return reply, reader.closed()
