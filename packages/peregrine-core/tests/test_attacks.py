"""Known attacks on Python HTTP servers, end to end through a real server.

Every row of the reference list of parser, smuggling, response-side, log and DoS attacks
(sections 4a and 4b) is a case here. Each malformed input is sent over a raw socket whole,
one byte at a time and at seeded random split points; the server must answer with the
expected status and ``Connection: close``, close the connection, and never hand the
handler a request hidden in the leftover bytes (``/smuggled``, ``/admin``). After that,
every invalid request of the codec corpus (``data/requests/invalid``) is replayed end to
end too. Every wait has a timeout.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peregrine_core import LocalProtocolError, Request, Response, Server, ServerConfig
from peregrine_core._status import status_line
from peregrine_core.testing import serve

from conftest import TIMEOUT, Reader, Reply, connect

H = b"Host: example.com\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
ADMIN = b"GET /admin HTTP/1.1\r\n" + H + b"\r\n"
FORBIDDEN_TARGETS = ("/smuggled", "/admin")


class Recorder:
    """Records every request it is handed; a few paths misbehave on purpose."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    def handle_request(self, req: Request, resp: Response) -> None:
        with self.lock:
            self.seen.append((req.method, req.target, req.body))
        path = req.path
        if path == "/split-value":
            resp.add_header("X-Test", "a\r\nSet-Cookie: evil=1")
        elif path == "/split-name":
            resp.add_header("X-Test\r\nSet-Cookie", "evil=1")
        elif path == "/split-set":
            resp.set_header("Location", "/a\r\n\r\n<html>injected</html>")
        elif path == "/split-lf":
            resp.add_header("X-Test", "a\nSet-Cookie: evil=1")
        elif path == "/split-nul":
            resp.add_header("X-Test", "a\x00b")
        elif path == "/split-unicode":
            resp.add_header("X-Test", "a\u2028Set-Cookie: evil=1")
        elif path == "/status-text":
            resp.status = "200 OK\r\nSet-Cookie: evil=1"  # type: ignore[assignment]
        elif path == "/status":
            resp.status = int(req.query)
        resp.set_body(b"ok")

    def targets(self) -> list[str]:
        with self.lock:
            return [target for _, target, _ in self.seen]

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    """Servers shared by this module's tests, one per configuration, started on demand."""
    with ExitStack() as stack:
        yield {"stack": stack}


def server_for(servers: dict[str, Any], **config: Any) -> tuple[Server, Recorder]:
    key = json.dumps(config, sort_keys=True)
    if key not in servers:
        recorder = Recorder()
        srv = servers["stack"].enter_context(serve(recorder, config=ServerConfig(**config)))
        servers[key] = (srv, recorder)
    srv, recorder = servers[key]
    recorder.clear()
    return srv, recorder


# --- sending ---------------------------------------------------------------------------------


def pieces_of(data: bytes, how: str, seed: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    if len(data) < 2:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(12, len(data) - 1))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class Exchange:
    replies: list[Reply]
    closed: bool
    raw: bytes = b""


def send(port: int, pieces: list[bytes], replies: int, eof: bool = False) -> Exchange:
    """Send the pieces, optionally half-close, read ``replies`` responses, then wait for EOF."""
    with connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed early: read what it said
        if eof:
            sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        got = [reader.response() for _ in range(replies)]
        return Exchange(got, reader.closed(TIMEOUT))


# --- section 4a: request framing and parsing -----------------------------------------------


@dataclass
class Attack:
    id: str
    data: bytes
    statuses: list[int]
    seen: list[str] = field(default_factory=list)
    eof: bool = False  # half-close after sending (the request is truncated)


def post(headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST / " + version + b"\r\n" + H + headers + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"

ATTACKS = [
    Attack(
        "CVE-2024-1135 chunked then gzip",
        post(CHUNKED + b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2024-1135 chunked then identity",
        post(CHUNKED + b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2024-1135 identity, chunked, identity, chunked",
        post(b"Transfer-Encoding: identity, chunked, identity, chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack("CVE-2024-1135 chunked in HTTP/1.0", post(CHUNKED, b"0\r\n\r\n" + SMUGGLED, b"HTTP/1.0"), [400]),
    Attack(
        "CVE-2024-6827 CL with tab-prefixed TE",
        post(b"Content-Length: 5\r\nTransfer-Encoding: \tchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2024-6827 unknown TE", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED), [501]
    ),
    Attack("CVE-2019-16785 bare LF head", b"GET / HTTP/1.1\nHost: example.com\n\n" + SMUGGLED, [400]),
    Attack("CVE-2019-16785 LF-only chunk lines", post(CHUNKED, b"1\nx\n0\n\n" + SMUGGLED), [400]),
    Attack(
        "CVE-2019-16786 gzip, chunked",
        post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [501],
    ),
    Attack(
        "CVE-2019-16786 gzip, chunked with CL",
        post(b"Transfer-Encoding: gzip, chunked\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2019-16789 NEL before chunked",
        post(b"Transfer-Encoding:\x85chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2019-16789 VT in a value", b"GET / HTTP/1.1\r\n" + H + b"foo:\x0bbar\r\n\r\n" + SMUGGLED, [400]
    ),
    Attack(
        "CVE-2019-16789 fold with VT",
        b"GET / HTTP/1.1\r\n" + H + b"foo: bar\r\n\t\x0bbaz\r\n\r\n" + SMUGGLED,
        [400],
    ),
    Attack("CVE-2019-16792 CL list", post(b"Content-Length: %d, 0\r\n" % len(SMUGGLED), SMUGGLED), [400]),
    Attack(
        "CVE-2019-16792 equal CLs",
        post(b"Content-Length: 1\r\nContent-Length: 1\r\n", b"x" + SMUGGLED),
        [400],
    ),
    Attack("CVE-2022-24761 CL +10", post(b"Content-Length: +10\r\n", b"0123456789" + SMUGGLED), [400]),
    Attack("CVE-2022-24761 chunk 0x01", post(CHUNKED, b"0x01\r\nx\r\n0\r\n\r\n" + SMUGGLED), [400]),
    Attack("CVE-2022-24761 chunk +01", post(CHUNKED, b"+01\r\nx\r\n0\r\n\r\n" + SMUGGLED), [400]),
    Attack(
        "CVE-2022-24761 chunk ext control", post(CHUNKED, b"1;a\x01b\r\nx\r\n0\r\n\r\n" + SMUGGLED), [400]
    ),
    Attack(
        "GHSA-753j-mpmx-qq6g TE chunked twice",
        post(CHUNKED + CHUNKED, b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "GHSA-753j-mpmx-qq6g NBSP before chunked",
        post(b"Transfer-Encoding: \xa0chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack("tornado 6.3.3 CL 1_0", post(b"Content-Length: 1_0\r\n", b"0123456789" + SMUGGLED), [400]),
    Attack(
        "tornado 6.3.3 chunk 1_a", post(CHUNKED, b"1_a\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n" + SMUGGLED), [400]
    ),
    Attack(
        "CVE-2023-37276 bare CR hides a TE",
        b"POST / HTTP/1.1\r\n" + H + b"X-Abc: \rxTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        [400],
    ),
    Attack("CVE-2023-47627 CL -5", post(b"Content-Length: -5\r\n", SMUGGLED), [400]),
    Attack("CVE-2023-47627 CL +256", post(b"Content-Length: +256\r\n", SMUGGLED), [400]),
    Attack("CVE-2023-47627 CR in value", b"GET / HTTP/1.1\r\n" + H + b"Foo: abc\rdef\r\n\r\n", [400]),
    Attack("CVE-2023-47627 LF in value", b"GET / HTTP/1.1\r\n" + H + b"Bar: abc\ndef\r\n\r\n", [400]),
    Attack("CVE-2023-47627 NUL in value", b"GET / HTTP/1.1\r\n" + H + b"Baz: abc\x00def\r\n\r\n", [400]),
    Attack("CVE-2023-47627 SP before colon", post(b"Content-Length : 3\r\n", b"abc" + SMUGGLED), [400]),
    Attack("CVE-2023-47627 HTAB before colon", post(b"Content-Length\t: 3\r\n", b"abc" + SMUGGLED), [400]),
    Attack(
        "CVE-2023-47627 chunk 0_2e",
        post(CHUNKED, b"0_2e\r\n" + b"x" * 46 + b"\r\n0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "CVE-2023-47627 obs-fold CL",
        b"POST / HTTP/1.1\r\n" + H + b"X-A: b\r\n\tContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
        [400],
    ),
    Attack("CVE-2023-47627 HTTP/12.3", b"GET / HTTP/12.3\r\n" + H + b"\r\n" + SMUGGLED, [400]),
    Attack(
        "CVE-2023-47641 chunked123 with CL",
        post(b"Transfer-Encoding: chunked123\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
    ),
    Attack("CVE-2024-23829 HTTP/1ö1", b"GET / HTTP/1\xc3\xb61\r\n" + H + b"\r\n", [400]),
    Attack("CVE-2024-23829 Unicode digit", b"GET / HTTP/1.\xf0\x9d\x9f\x99\r\n" + H + b"\r\n", [400]),
    Attack("CVE-2024-23829 GET/:", b"GET/: HTTP/1.1\r\n" + H + b"\r\n", [400]),
    Attack(
        "CVE-2024-23829 '?' in a name", b"GET / HTTP/1.1\r\n" + H + b"Content-Encoding?: x\r\n\r\n", [400]
    ),
    Attack("CVE-2024-52304 LF in chunk ext", post(CHUNKED, b"2;\nxx\r\n4c\r\n0\r\n\r\n" + ADMIN), [400]),
    Attack(
        "Kestrel CVE-2025-55315 CR in chunk ext", post(CHUNKED, b"2;\rxx\r\n4c\r\n0\r\n\r\n" + ADMIN), [400]
    ),
    Attack("CVE-2025-53643 LF in trailer", post(CHUNKED, b"0\r\nbad\ntrailer\r\n\r\n" + SMUGGLED), [400]),
    Attack(
        "CVE-2025-53643 trailer is parsed",
        post(CHUNKED, b"0\r\ntest: trailer\r\n\r\nGET /next HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"),
        [200, 200],
        ["/", "/next"],
    ),
    Attack(
        "CVE-2026-22815 too many trailers",
        post(CHUNKED, b"0\r\n" + b"".join(b"T%d: v\r\n" % i for i in range(101)) + b"\r\n" + SMUGGLED),
        [431],
    ),
    Attack("CVE-2025-43859 xxx__", post(CHUNKED, b"3\r\nxxx__1a\r\n" + SMUGGLED), [400]),
    Attack("CVE-2025-43859 xxx CR _", post(CHUNKED, b"3\r\nxxx\r_0\r\n\r\n" + SMUGGLED), [400]),
    Attack("CVE-2025-43859 xxx _ LF", post(CHUNKED, b"3\r\nxxx_\n0\r\n\r\n" + SMUGGLED), [400]),
    Attack("gunicorn forbidden trailer", post(CHUNKED, b"0\r\nContent-Length: 5\r\n\r\n" + SMUGGLED), [400]),
    Attack("gunicorn authority-form GET", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED, [400]),
    Attack("gunicorn asterisk-form GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED, [400]),
    Attack(
        "gunicorn duplicate Host", b"GET / HTTP/1.1\r\n" + H + b"Host: evil.example\r\n\r\n" + SMUGGLED, [400]
    ),
    Attack("gunicorn 0 CRLF then EOF", post(CHUNKED, b"5\r\nhello\r\n0\r\n"), [400], eof=True),
    Attack(
        "gunicorn #3364 VT after chunked",
        post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
    ),
    Attack(
        "cheroot #275 CL 1 then 5",
        post(b"Content-Length: 1\r\nContent-Length: 5\r\n", b"x" + SMUGGLED),
        [400],
    ),
    Attack("cheroot #714 SP before colon", post(b"Content-Length : 1\r\n", b"x" + SMUGGLED), [400]),
    Attack(
        "CVE-2020-7658 CL then CL 0",
        post(b"Content-Length: %d\r\nContent-Length: 0\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
    ),
    Attack("truncated Content-Length body", post(b"Content-Length: 10\r\n", b"hello"), [400], eof=True),
    Attack(
        "valid request then a smuggling one",
        b"GET /ok HTTP/1.1\r\n" + H + b"\r\n" + post(CHUNKED + CHUNKED, b"0\r\n\r\n" + SMUGGLED),
        [200, 400],
        ["/ok"],
    ),
]


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_refused_and_closes_the_connection(
    servers: dict[str, Any], attack: Attack, how: str
) -> None:
    srv, recorder = server_for(servers)
    ex = send(srv.port, pieces_of(attack.data, how, attack.id), len(attack.statuses), attack.eof)
    assert [r.status for r in ex.replies] == attack.statuses
    assert ex.replies[-1].header("connection") == "close"
    assert ex.closed, "the server must close the connection after refusing a request"
    assert recorder.targets() == attack.seen
    assert not set(recorder.targets()) & set(FORBIDDEN_TARGETS)


def test_invalid_request_filling_the_read_buffer_does_not_serve_the_pipelined_one(
    servers: dict[str, Any],
) -> None:
    # CVE-2024-49768 (waitress): the first request is exactly one read long and invalid;
    # the pipelined one behind it must never be served.
    srv, recorder = server_for(servers, read_buffer_size=1024)
    first = b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-length: -1\r\nX-Pad: "
    first += b"p" * (1024 - len(first) - 4) + b"\r\n\r\n"
    assert len(first) == 1024
    second = b"POST /smuggled HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\n\r\nx"
    for how in ("whole", "first-then-second"):
        pieces = [first + second] if how == "whole" else [first, second]
        ex = send(srv.port, pieces, 1)
        assert [r.status for r in ex.replies] == [400]
        assert ex.replies[0].header("connection") == "close"
        assert ex.closed
        assert recorder.targets() == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_declined_upgrade_request_body_is_read_as_body(servers: dict[str, Any], framing: str) -> None:
    # CVE-2026-69243 (aiohttp): an Upgrade request with a body; the handler does not
    # upgrade, so the body is the body and never the next request.
    srv, recorder = server_for(servers)
    head = b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    if framing == "chunked":
        data = head + CHUNKED + b"\r\n%x\r\n" % len(ADMIN) + ADMIN + b"\r\n0\r\n\r\n"
    else:
        data = head + b"Content-Length: %d\r\n\r\n" % len(ADMIN) + ADMIN
    for how in ("whole", "bytes", "random"):
        recorder.clear()
        with connect(srv.port) as sock:
            for piece in pieces_of(data, how, framing):
                sock.sendall(piece)
            reader = Reader(sock)
            assert reader.response().status == 200
            sock.sendall(b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
            assert reader.response().status == 200
        assert recorder.targets() == ["/ws", "/after"]
        assert recorder.seen[0][2] == ADMIN


def test_pipelined_requests_beyond_the_batch_cap_are_all_answered_in_order(servers: dict[str, Any]) -> None:
    # GHSA-4fvr-rgm6-gqmc (aiohttp): pipelined requests are handled a batch at a time.
    srv, recorder = server_for(servers, max_pipelined_requests=4)
    data = b"".join(b"GET /%d HTTP/1.1\r\n%s\r\n" % (i, H) for i in range(50))
    with connect(srv.port) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        assert [reader.response().status for _ in range(50)] == [200] * 50
    assert recorder.targets() == [f"/{i}" for i in range(50)]


# --- every invalid request of the codec corpus, end to end ---------------------------------

CORPUS = Path(__file__).parent / "data" / "requests" / "invalid"
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")
_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}


def decode_http(text: str) -> bytes:
    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        return _SIMPLE_ESCAPES[esc] if esc in _SIMPLE_ESCAPES else chr(int(esc[1:], 16))

    return _ESCAPE.sub(sub, text.replace("\n", "")).encode("latin-1")


CORPUS_CASES = sorted(p.stem for p in CORPUS.glob("*.http"))


@pytest.mark.parametrize("name", CORPUS_CASES)
def test_invalid_corpus_request_is_refused_end_to_end(servers: dict[str, Any], name: str) -> None:
    meta = json.loads((CORPUS / f"{name}.json").read_text("utf-8"))
    data = decode_http((CORPUS / f"{name}.http").read_text("ascii"))
    srv, recorder = server_for(servers, **meta.get("limits", {}))
    before = [r["target"] for r in meta.get("requests", [])]
    status = meta["status"]
    truncated = status is None
    # A request cut short by EOF is answered 400 by the server once the client half-closes.
    ex = send(srv.port, [data], len(before) + 1, eof=truncated)
    assert [r.status for r in ex.replies] == [200] * len(before) + [400 if truncated else status]
    assert ex.replies[-1].header("connection") == "close"
    assert ex.closed
    assert recorder.targets() == before


# --- section 4b: response side, logs, denial of service -----------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/split-value",
        "/split-name",
        "/split-set",
        "/split-lf",
        "/split-nul",
        "/split-unicode",
        "/status-text",
    ],
)
def test_response_splitting_through_the_response_api_becomes_a_500(
    servers: dict[str, Any], path: str
) -> None:
    # CVE-2020-7695 (uvicorn), CVE-2018-1000164 (gunicorn): a handler-supplied CR/LF/NUL
    # must never reach the wire; the API raises ValueError and the client gets a 500.
    srv, _ = server_for(servers)
    with connect(srv.port) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\n" + H + b"\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before a response"
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 500 ")
    assert b"Set-Cookie" not in raw
    assert b"injected" not in raw
    assert b"X-Test" not in head


def test_response_header_api_refuses_every_line_break_and_control_character() -> None:
    bad_values = ["a\rb", "a\nb", "a\r\nb", "a\x00b", "a\x1bb", "a\x7fb", "a\u2028b", "a\x0bb"]
    for value in bad_values:
        for method in (Response.add_header, Response.set_header):
            with pytest.raises(ValueError):
                method(Response(), "X-Test", value)
    for name in ("X-Test\r\nSet-Cookie", "X Test", "X:Test", "", "X-T\u00e9st", "X\x00"):
        with pytest.raises(LocalProtocolError):
            Response().add_header(name, "v")
    resp = Response()
    resp.add_header("X-Ok", "tab\tand obs-text \xe9")
    assert resp.get_header("x-ok") == "tab\tand obs-text \xe9"


_STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [\t\x20-\x7e]*\r\n")


def test_every_status_line_is_well_formed() -> None:
    # GHSA-mwh4-6h8g-pg8w (aiohttp), CVE-2025-67724 (tornado): a reason phrase with CR/LF.
    # Reason phrases come from the server's own table; there is no way to set one.
    for code in range(100, 600):
        line = status_line(code)
        assert _STATUS_LINE.fullmatch(line), line
        assert line.startswith(b"HTTP/1.1 %d " % code)
    with pytest.raises(ValueError):
        Response().status = 600
    with pytest.raises(ValueError):
        Response().status = "200 OK\r\nX: y"  # type: ignore[assignment]


@pytest.mark.parametrize("code", [200, 299, 418, 599])
def test_status_line_on_the_wire_is_well_formed(servers: dict[str, Any], code: int) -> None:
    srv, _ = server_for(servers)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /status?%d HTTP/1.1\r\n%s\r\n" % (code, H))
        raw = b""
        while b"\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk
            raw += chunk
    first = raw[: raw.index(b"\r\n") + 2]
    assert _STATUS_LINE.fullmatch(first), first
    assert first.startswith(b"HTTP/1.1 %d " % code)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_access_log_never_contains_raw_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    # CVE-2020-7694 (uvicorn): "GET /%1b[31mHello" was percent-decoded into the access log;
    # gh-100001 (CPython http.server): control characters of a garbage request line.
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    with serve(recorder, config=ServerConfig(access_log=True)) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /%1b[31mHello HTTP/1.1\r\n" + H + b"\r\n")
            assert Reader(sock).response().status == 200
        for garbage in (
            b"\x1b[2J\x07GET / HTTP/1.1\r\n\r\n",
            b"GET /\x1b[31m HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Evil: \x1b]0;pwned\x07\r\n\r\n",
            b"\x9b31mGET / HTTP/1.1\r\n\r\n",
        ):
            with connect(srv.port) as sock:
                sock.sendall(garbage)
                reader = Reader(sock)
                assert reader.response().status == 400
                assert reader.closed()
    access = [r.getMessage() for r in caplog.records if r.name == "peregrine_core.access"]
    assert len(access) == 1
    assert "/%1b[31mHello" in access[0]
    for record in caplog.records:
        assert not _CONTROL.search(record.getMessage()), record.getMessage()
    assert recorder.targets() == ["/%1b[31mHello"]


def test_redos_header_value_is_refused_quickly(servers: dict[str, Any]) -> None:
    # CVE-2020-5236 (waitress): "Bad-header: xxxx...\x10" sent a regex into backtracking.
    data = b"GET / HTTP/1.1\r\n" + H + b"Bad-header: " + b"x" * 65536 + b"\x10\r\n\r\n"
    for config, status in (({"max_header_bytes": 131072}, 400), ({}, 431)):
        srv, recorder = server_for(servers, **config)
        started = time.monotonic()
        ex = send(srv.port, [data], 1)
        assert time.monotonic() - started < 2.0
        assert [r.status for r in ex.replies] == [status]
        assert ex.closed
        assert recorder.targets() == []


def test_many_repeated_headers_at_the_maximum_size_are_handled_in_linear_time(
    servers: dict[str, Any],
) -> None:
    # CVE-2024-52804, CVE-2025-67725 (tornado): quadratic handling of repeated headers.
    srv, recorder = server_for(servers, max_header_bytes=2 << 20, max_header_count=200)
    for name in (b"X-Same", b"Cookie", b"Connection"):
        value = b"keep-alive, " * 1500 if name == b"Connection" else b"v" * 18000
        data = b"GET /rep HTTP/1.1\r\n" + H + (name + b": " + value + b"\r\n") * 100 + b"\r\n"
        started = time.monotonic()
        with connect(srv.port) as sock:
            sock.sendall(data)
            assert Reader(sock).response().status == 200
        assert time.monotonic() - started < 2.0
    assert recorder.targets() == ["/rep"] * 3


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counting descriptors needs /proc")
def test_connect_and_close_storm_leaves_no_descriptors_and_no_busy_loop() -> None:
    # CVE-2024-49769, CVE-2022-31015 (waitress): clients closing right after connecting
    # (half-open race) left the loop spinning on select(), or crashed it.
    recorder = Recorder()
    with serve(recorder) as srv:
        baseline = _open_fds()
        for i in range(150):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
            if i % 3 == 0:  # reset instead of a clean close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif i % 3 == 1:
                sock.sendall(b"GET / HTTP/1.1\r\nHo")  # a partial head, then gone
            sock.close()
        deadline = time.monotonic() + TIMEOUT
        while _open_fds() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_fds() <= baseline
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.1, "the server is busy with no client"
        with connect(srv.port) as sock:  # and it still serves
            sock.sendall(b"GET /alive HTTP/1.1\r\n" + H + b"\r\n")
            assert Reader(sock).response().status == 200
    assert recorder.targets() == ["/alive"]


def test_a_flood_of_malformed_requests_logs_a_bounded_number_of_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CVE-2025-47287 (tornado): one log line per malformed part flooded the logs.
    caplog.set_level(logging.WARNING)
    with serve(Recorder(), config=ServerConfig(workers=1)) as srv:
        for _ in range(60):
            ex = send(srv.port, [b"GET / HTTP/1.1\nHost: a\n\n"], 1)
            assert ex.replies[0].status == 400
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "rejected" in r.getMessage()]
    assert 1 <= len(warnings) <= 2


# --- limits and edge cases an HTTP/1.1 probe tries, with the default configuration ----------


def test_default_limits_are_exact_on_the_wire(servers: dict[str, Any]) -> None:
    srv, recorder = server_for(servers)
    config = ServerConfig()

    def request_line(length: int) -> bytes:
        return b"GET /" + b"a" * (length - 14) + b" HTTP/1.1\r\n" + H + b"\r\n"

    def head(size: int) -> bytes:
        prefix = b"GET /h HTTP/1.1\r\n" + H + b"X-Pad: "
        return prefix + b"p" * (size - len(prefix) - 4) + b"\r\n\r\n"

    def fields(count: int) -> bytes:
        return b"GET /f HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(count - 1)) + b"\r\n"

    def body(size: int) -> bytes:
        return b"POST /b HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % size + b"x" * size

    cases = [
        (request_line(config.max_request_line_bytes), 200),
        (request_line(config.max_request_line_bytes + 1), 414),
        (head(config.max_header_bytes), 200),
        (head(config.max_header_bytes + 1), 431),
        (fields(config.max_header_count), 200),
        (fields(config.max_header_count + 1), 431),
        (body(config.max_body_bytes), 200),
        (body(config.max_body_bytes + 1), 413),
    ]
    for data, status in cases:
        with connect(srv.port) as sock:
            sock.sendall(data)
            reader = Reader(sock)
            reply = reader.response()
            assert reply.status == status, data[:60]
            if status != 200:
                assert reply.header("connection") == "close"
                assert reader.closed()
    assert len(recorder.targets()) == 4


def test_absolute_form_target_with_a_different_host_reaches_the_handler_raw(servers: dict[str, Any]) -> None:
    # RFC 9112 §3.2.2: the target's authority wins over Host; the handler sees the raw target.
    srv, recorder = server_for(servers)
    ex = send(
        srv.port,
        [b"GET http://origin.example/p?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n"],
        1,
    )
    assert [r.status for r in ex.replies] == [200]
    assert recorder.targets() == ["http://origin.example/p?x=1"]


def test_extra_crlf_after_a_request_body_is_ignored_on_a_keep_alive_connection() -> None:
    # RFC 9112 §2.2: "some old HTTP/1.0 client implementations generate an extra CRLF after
    # a POST request"; a server SHOULD ignore at least one empty line before a request line.
    # The connection must stay an idle keep-alive one, not a request head timing out.
    recorder = Recorder()
    config = ServerConfig(header_timeout=0.3, keepalive_timeout=5.0)
    with serve(recorder, config=config) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nok\r\n")
        reader = Reader(sock)
        assert reader.response().status == 200
        time.sleep(0.8)  # well past header_timeout, well within keepalive_timeout
        sock.sendall(b"GET /next HTTP/1.1\r\n" + H + b"\r\n")
        assert reader.response().status == 200
    assert recorder.targets() == ["/p", "/next"]
