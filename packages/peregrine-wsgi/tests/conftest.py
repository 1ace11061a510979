"""Shared helpers: WSGI apps served by a real server on 127.0.0.1, and a raw HTTP reader.

The reader understands ``Content-Length`` and chunked bodies and says whether a body was
complete, so the tests can tell a truncated response (connection closed early) from a
mis-framed one (extra bytes the client would parse as the next response).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.validate import validator

import pytest

from peregrine_core import Request, Server, ServerConfig
from peregrine_core.testing import serve
from peregrine_wsgi import WSGIHandler

TIMEOUT = 5.0

Environ = dict[str, Any]


@contextmanager
def serve_app(app: Any, *, validate: bool = True, **options: Any) -> Iterator[Server]:
    """Serve ``app`` (wrapped in ``wsgiref.validate.validator`` unless told otherwise)."""
    handler = WSGIHandler(validator(app) if validate else app, **options)
    with serve(handler, config=ServerConfig(workers=1), stop_timeout=10.0) as server:
        yield server


def make_request(
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
    body: bytes = b"",
    remote_addr: object = ("203.0.113.7", 40000),
) -> Request:
    if headers is None:
        headers = [("Host", "example.test")]
    return Request(method, target, "HTTP/1.1", headers, body, remote_addr)


class Closing:
    """An iterable over ``pieces`` that records ``close()`` (and fails on a second call)."""

    def __init__(self, pieces: Iterable[bytes], *, forever: bool = False, delay_s: float = 0.0) -> None:
        self.pieces = list(pieces)
        self.forever = forever
        self.delay_s = delay_s
        self.closed = threading.Event()
        self.close_calls = 0
        self.yielded = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            for piece in self.pieces:
                if self.delay_s:
                    time.sleep(self.delay_s)
                self.yielded += 1
                yield piece
            if not self.forever:
                return

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


class Reply:
    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.headers = headers
        self.body = b""
        self.complete = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers} {self.body[:80]!r} complete={self.complete}>"


class Reader:
    """Reads HTTP/1.1 responses from a socket, keeping the bytes that follow each one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n and self._fill():
            pass
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self, head_request: bool = False) -> Reply:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a full response head: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        reply = Reply(status, headers)
        if head_request or status in (204, 304) or status < 200:
            reply.complete = True
            return reply
        length = reply.header("Content-Length")
        if length is not None:
            reply.body = self._take(int(length))
            reply.complete = len(reply.body) == int(length)
        elif (reply.header("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                line = self._line()
                if line is None:
                    return reply
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    reply.complete = self._line() == b""
                    return reply
                chunk = self._take(size + 2)
                reply.body += chunk[:size]
                if len(chunk) < size + 2:
                    return reply
        else:  # close-delimited
            while self._fill():
                pass
            reply.body, self.buf = self.buf, b""
            reply.complete = True
        return reply

    def closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the peer closes within ``timeout`` with nothing more sent."""
        end = time.monotonic() + timeout
        self.sock.settimeout(0.1)
        try:
            while time.monotonic() < end:
                try:
                    if not self._fill():
                        return not self.buf
                except TimeoutError:
                    continue
            return False
        finally:
            self.sock.settimeout(TIMEOUT)


def exchange(port: int, data: bytes, head_request: bool = False) -> tuple[Reply, bool]:
    """Send ``data`` on a new connection; return the first response and whether the
    connection then closed with nothing more on it."""
    with connect(port) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        reply = reader.response(head_request)
        return reply, reader.closed(timeout=1.0)


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    if not any(h.lower().startswith("host:") for h in headers):
        headers = ("Host: test", *headers)
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


@pytest.fixture
def recorded() -> dict[str, Any]:
    """A dict a test app stores what it saw in."""
    return {}
