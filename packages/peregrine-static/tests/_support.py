"""Helpers shared by the tests: build requests, call a server, read what it answered."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from peregrine_core import Request, Response

DATA_100 = bytes(range(100))
LARGE_BYTES = 200 * 1024
LARGE = (bytes(range(251)) * (LARGE_BYTES // 251 + 1))[:LARGE_BYTES]
OLD_MTIME_S = 1_700_000_000  # 2023-11-14: far enough in the past to be cacheable


def write(path: Path, data: bytes | str, mtime: int = OLD_MTIME_S) -> Path:
    """Write a file and set its modification time (in the past by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (mtime, mtime))
    return path


class Handling(Protocol):
    def handle_request(self, req: Request, resp: Response) -> None: ...


class Serving(Handling, Protocol):
    def serve(self, req: Request, resp: Response) -> bool: ...


Headers = Sequence[tuple[str, str]]


def make_request(target: str, headers: Headers = (), method: str = "GET") -> Request:
    return Request(method, target, "HTTP/1.1", [("Host", "example.test"), *headers])


def serve(server: Serving, target: str, headers: Headers = (), method: str = "GET") -> tuple[bool, Response]:
    """Call ``server.serve`` and return what it said and the response."""
    resp = Response()
    handled = server.serve(make_request(target, headers, method), resp)
    return handled, resp


def fetch(server: Handling, target: str, headers: Headers = (), method: str = "GET") -> Response:
    """Call ``server.handle_request`` (which always answers)."""
    resp = Response()
    server.handle_request(make_request(target, headers, method), resp)
    return resp


def body(resp: Response) -> bytes:
    """The bytes the server would send as the body (opening a file body as the server
    would, just before sending it); closes a file body."""
    if resp.file is not None:
        region = resp.file
        try:
            return os.pread(region.open().fileno(), region.count, region.offset)
        finally:
            region.close()
            resp.file = None
    return bytes(resp.body)


def header_names(resp: Response) -> list[str]:
    return [name.lower() for name, _ in resp.headers]
