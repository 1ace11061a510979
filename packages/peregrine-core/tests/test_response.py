"""Response: header validation (no response splitting), managed headers, bodies."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from peregrine_core import HeaderBlock, LocalProtocolError, Response, Status


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-A", "a\r\nSet-Cookie: x=1"),
        ("X-A", "a\nb"),
        ("X-A", "a\rb"),
        ("X-A", "a\x00b"),
        ("X-A", "a\x1bb"),
        ("X-A", "a\x7fb"),
        ("X-A", "snow\u2603"),
        ("X-A\r\nB", "v"),
        ("X A", "v"),
        ("X:A", "v"),
        ("", "v"),
        ("Bad\x00", "v"),
    ],
)
def test_headers_with_control_characters_or_bad_names_are_refused(name: str, value: str) -> None:
    resp = Response()
    with pytest.raises(ValueError):
        resp.add_header(name, value)
    assert resp.headers == []


@pytest.mark.parametrize(
    "name", ["Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "keep-alive"]
)
def test_framing_headers_belong_to_the_server(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="set by the server"):
        Response().add_header(name, "1")


def test_headers_keep_order_and_repeats_and_accept_tabs_and_latin1() -> None:
    resp = Response()
    resp.add_header("Set-Cookie", "a=1")
    resp.add_header("Set-Cookie", "b=2")
    resp.add_header("X-Tab", "a\tb")
    resp.add_header("X-Latin", "caf\xe9")
    resp.add_header("X-Int", 42)
    assert resp.headers == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Tab", "a\tb"),
        ("X-Latin", "caf\xe9"),
        ("X-Int", "42"),
    ]
    resp.set_header("set-cookie", "c=3")
    assert resp.get_header("SET-COOKIE") == "c=3"
    assert len(resp.headers) == 4


@pytest.mark.parametrize("status", [99, 600, -1, True, "200", 200.0])
def test_status_must_be_an_integer_in_range(status: object) -> None:
    resp = Response()
    with pytest.raises(LocalProtocolError):
        resp.status = status  # type: ignore[assignment]
    assert resp.status == 200


def test_status_accepts_the_enum() -> None:
    resp = Response()
    resp.status = Status.CREATED
    assert resp.status == 201 and type(resp.status) is int


def test_set_body_encodes_str_as_utf8_and_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    resp = Response()
    f = open(path, "rb")  # noqa: SIM115 - the response owns it
    resp.set_file(f, 2, 5)
    assert resp.content_length == 5
    resp.set_body("é")
    assert f.closed and resp.file is None
    assert resp.body == b"\xc3\xa9" and resp.content_length == 2


def test_set_file_defaults_to_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    resp = Response()
    with open(path, "rb") as f:
        resp.set_file(f, 30)
        assert resp.content_length == 70
    with pytest.raises(LocalProtocolError):
        resp.set_file(io.BytesIO(b""), -1, 1)
    fd = os.open(path, os.O_RDONLY)
    os.close(fd)


def test_upgrade_sets_101_and_drops_the_body() -> None:
    resp = Response()
    resp.set_body("x")
    resp.upgrade("websocket")
    assert (resp.status, resp.upgrade_protocol, resp.body) == (101, "websocket", b"")
    with pytest.raises(LocalProtocolError):
        resp.upgrade("web socket")


def test_a_header_block_is_checked_once_and_added_in_order() -> None:
    block = HeaderBlock([("Content-Type", "text/plain"), ("ETag", '"x"'), ("Date", "Mon"), ("X-N", 3)])
    assert block.fields == [("Content-Type", "text/plain"), ("ETag", '"x"'), ("Date", "Mon"), ("X-N", "3")]
    resp = Response()
    resp.add_header("First", "1")
    resp.add_headers(block)
    resp.add_header("Last", "2")
    assert [name for name, _ in resp.headers] == ["First", "Content-Type", "ETag", "Date", "X-N", "Last"]
    assert resp._has_date  # the server will not add a second Date


@pytest.mark.parametrize("fields", [[("X-A", "a\r\nb")], [("Content-Length", "1")], [("Bad Name", "v")]])
def test_a_header_block_refuses_what_add_header_refuses(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(LocalProtocolError):
        HeaderBlock(fields)


def test_repeated_headers_come_from_the_checked_cache_with_their_flags() -> None:
    for _ in range(3):
        resp = Response()
        resp.add_header("Content-Type", "text/plain")
        resp.add_header("Date", "Sun, 06 Nov 1994 08:49:37 GMT")
        resp.add_header("Upgrade", "websocket")
        assert resp.headers == [
            ("Content-Type", "text/plain"),
            ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("Upgrade", "websocket"),
        ]
        assert resp._has_date and resp._has_upgrade
    # A value seen and accepted before does not let a different, bad one through.
    with pytest.raises(LocalProtocolError):
        Response().add_header("Content-Type", "text/plain\r\nX-Injected: 1")
    with pytest.raises(LocalProtocolError):
        Response().add_header("Content-Type", ["text/plain"])  # type: ignore[arg-type]


def test_the_checked_header_cache_stays_bounded() -> None:
    from peregrine_core import _response

    for i in range(5 * _response._CHECKED_MAX_ENTRIES):
        Response().add_header("ETag", f'"{i}"')
    assert 0 < len(_response._CHECKED) <= _response._CHECKED_MAX_ENTRIES
    Response().add_header("X-Long", "v" * 600)
    assert all(len(line) <= _response._CHECKED_MAX_CHARS for line in _response._CHECKED.values())


def test_an_upgrade_header_cannot_be_added_once_upgrade_is_called() -> None:
    resp = Response()
    resp.add_header("Upgrade", "h2c")  # dropped by upgrade(): the server sends its own
    resp.upgrade("websocket")
    assert resp.get_header("Upgrade") is None
    with pytest.raises(LocalProtocolError, match="upgrade"):
        resp.add_header("Upgrade", "websocket")
    with pytest.raises(LocalProtocolError, match="upgrade"):
        resp.add_headers(HeaderBlock([("Upgrade", "websocket")]))
