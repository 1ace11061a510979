"""WSGIHandler.handle_request on a Request and a Response made by hand (no socket).

These cover what ends up on the ``Response`` for the paths that do not stream: the joined
body, start_response's checks, Content-Length checking, hop-by-hop fields, 500s, close()
and the sendfile region of a file_wrapper.
"""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from peregrine_core import LocalProtocolError, Response
from peregrine_wsgi import FileWrapper, WSGIHandler

from conftest import Closing, make_request

Environ = dict[str, Any]


def run(app: Any, method: str = "GET", target: str = "/") -> Response:
    resp = Response()
    WSGIHandler(app).handle_request(make_request(target, method=method), resp)
    return resp


def answer(status: str, headers: list[tuple[str, str]], body: Any) -> Any:
    def app(environ: Environ, start_response: Any) -> Any:
        start_response(status, headers)
        return body

    return app


def test_a_list_of_bytes_becomes_the_body() -> None:
    resp = run(answer("201 Created", [("Content-Type", "text/plain"), ("X-A", "1")], [b"hel", b"", b"lo"]))
    assert resp.status == 201
    assert resp.body == b"hello"
    assert resp.headers == [("Content-Type", "text/plain"), ("X-A", "1")]


def test_a_tuple_of_bytes_becomes_the_body() -> None:
    assert run(answer("200 OK", [], (b"a", b"b"))).body == b"ab"


def test_a_matching_content_length_is_not_sent_as_a_plain_header() -> None:
    resp = run(answer("200 OK", [("Content-Length", "5")], [b"hello"]))
    assert resp.body == b"hello"
    assert resp.get_header("Content-Length") is None


def test_a_content_length_that_does_not_match_a_list_body_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    resp = run(answer("200 OK", [("Content-Length", "9"), ("X-App", "1")], [b"hello"]))
    assert resp.status == 500
    assert resp.body == b"Internal Server Error\n"
    assert resp.get_header("X-App") is None
    assert "Content-Length 9" in caplog.text and "GET '/'" in caplog.text


def test_a_head_request_may_declare_the_get_length_without_a_body() -> None:
    resp = run(answer("200 OK", [("Content-Length", "5")], [b"hello"]), method="HEAD")
    assert (resp.status, resp.body) == (200, b"hello")  # the server sends no body for HEAD


def test_a_generator_body_that_completes_the_declared_length_is_sent_whole() -> None:
    body = Closing([b"hello", b""])

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "5")])
        return body

    resp = run(app)
    assert resp.body == b"hello"
    assert body.close_calls == 1


def test_a_generator_longer_than_declared_is_a_500() -> None:
    body = Closing([b"hello", b"more"])

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "5")])
        return body

    assert run(app).status == 500
    assert body.close_calls == 1


def test_an_empty_iterable_gives_an_empty_body_and_is_closed() -> None:
    body = Closing([])

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("204 No Content", [])
        return body

    resp = run(app)
    assert (resp.status, resp.body) == (204, b"")
    assert body.close_calls == 1


@pytest.mark.parametrize(
    "name", ["Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade"]
)
def test_hop_by_hop_headers_from_the_app_are_dropped(name: str, caplog: pytest.LogCaptureFixture) -> None:
    resp = run(answer("200 OK", [(name, "x"), ("X-Kept", "1")], [b"ok"]))
    assert resp.status == 200
    assert resp.headers == [("X-Kept", "1")]
    assert "hop-by-hop" in caplog.text


def test_connection_close_from_the_app_closes_the_connection() -> None:
    resp = run(answer("200 OK", [("Connection", "close")], [b"ok"]))
    assert resp.close_connection is True
    assert run(answer("200 OK", [("Connection", "keep-alive")], [b"ok"])).close_connection is False


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200", []),
        (200, []),
        ("20 OK", []),
        ("600 Nope", []),
        ("101 Switching Protocols", []),
        ("200 OK\r\nX: y", []),
        ("200 OK", [("X-A", "a\r\nSet-Cookie: evil=1")]),
        ("200 OK", [("X-A", "a\nb")]),
        ("200 OK", [("X A", "b")]),
        ("200 OK", [("X-A", "\u20ac")]),
        ("200 OK", [("X-A", b"bytes")]),
        ("200 OK", [["X-A", "list"]]),
        ("200 OK", [("Content-Length", "-1")]),
        ("200 OK", [("Content-Length", "1"), ("Content-Length", "2")]),
    ],
)
def test_start_response_refuses_bad_statuses_and_headers(status: Any, headers: Any) -> None:
    seen: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            start_response(status, headers)
        except LocalProtocolError as exc:
            seen.append(exc)
            raise
        return [b"never"]

    resp = run(app)
    assert len(seen) == 1
    assert (resp.status, resp.body) == (500, b"Internal Server Error\n")


def test_a_status_without_reason_phrase_text_is_accepted() -> None:
    assert run(answer("404 ", [], [b""])).status == 404


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"x"]

    assert run(app).status == 500


def test_exc_info_before_anything_was_sent_replaces_status_and_headers() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"sorry"]

    resp = run(app)
    assert (resp.status, resp.body) == (503, b"sorry")
    assert resp.headers == [("X-Second", "1")]


def test_an_exception_from_the_app_is_a_plain_500_logged_with_the_request_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-App", "1")])
        raise KeyError("secret detail")

    resp = run(app, target="/boom?x=1")
    assert resp.status == 500
    assert resp.get_header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.get_header("X-App") is None
    assert b"secret" not in resp.body and b"Traceback" not in resp.body
    record = next(r for r in caplog.records if r.name == "peregrine_wsgi")
    assert "GET '/boom?x=1' HTTP/1.1" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_an_exception_while_pulling_the_first_piece_closes_the_iterable() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Any:
            raise ValueError("no body")

        def close(self) -> None:
            closed.append(True)

    assert run(answer("200 OK", [], Body())).status == 500
    assert closed == [True]


def test_a_str_body_piece_is_an_error_not_a_guess() -> None:
    assert run(answer("200 OK", [], ["text"])).status == 500
    assert run(answer("200 OK", [], iter(["text"]))).status == 500


def test_returning_without_calling_start_response_is_an_error() -> None:
    assert run(lambda environ, start_response: [b"x"]).status == 500


def test_a_list_subclass_with_close_is_closed() -> None:
    closed: list[bool] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(True)

    resp = run(answer("200 OK", [], Body([b"a", b"b"])))
    assert resp.body == b"ab"
    assert closed == [True]


def test_a_file_wrapper_over_a_regular_file_is_sent_from_its_current_offset(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(100)))
    f = path.open("rb")
    f.read(10)  # the application already consumed a prefix

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f, 4096)

    resp = run(app)
    assert resp.file is not None
    assert (resp.file.offset, resp.file.count) == (10, 90)
    assert not f.closed
    resp.file.close()  # what the server does once the body is sent
    assert f.closed


def test_a_file_wrapper_respects_a_shorter_declared_content_length(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(100))
    f = path.open("rb")
    f.seek(50)
    resp = run(answer("200 OK", [("Content-Length", "20")], FileWrapper(f)))
    assert resp.file is not None
    assert (resp.file.offset, resp.file.count) == (50, 20)
    resp.file.close()


def test_a_file_wrapper_with_a_longer_declared_length_than_the_file_is_a_500(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(10))
    f = path.open("rb")
    resp = run(answer("200 OK", [("Content-Length", "20")], FileWrapper(f)))
    assert resp.status == 500 and resp.file is None
    assert f.closed


def test_a_file_wrapper_over_a_non_file_is_streamed() -> None:
    buffer = io.BytesIO(b"x" * 10)
    resp = run(answer("200 OK", [("Content-Length", "10")], FileWrapper(buffer, 3)))
    assert resp.file is None and resp.streaming
    assert not buffer.closed  # the server closes it once the body is sent


def test_the_handler_refuses_a_non_callable_app() -> None:
    with pytest.raises(TypeError):
        WSGIHandler("not an app")  # type: ignore[arg-type]


def test_hop_by_hop_warnings_are_logged_once_per_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="peregrine_wsgi")
    calls: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        calls.append(1)
        start_response("200 OK", [("Keep-Alive", f"timeout={len(calls)}")])  # a new head each time
        return [b""]

    handler = WSGIHandler(app)
    for _ in range(3):
        handler.handle_request(make_request(), Response())
    levels = [r.levelno for r in caplog.records if "hop-by-hop" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_repeated_head_is_applied_the_same_way_each_time() -> None:
    handler = WSGIHandler(
        answer(
            "200 OK",
            [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", "2")],
            [b"ok"],
        )
    )
    for _ in range(3):  # the first call checks the head, the next ones find it memoized
        resp = Response()
        handler.handle_request(make_request(), resp)
        assert (resp.status, resp.body, resp.close_connection) == (200, b"ok", True)
        assert resp.headers == [("Content-Type", "text/plain")]


def test_a_memoized_head_still_has_its_content_length_checked() -> None:
    handler = WSGIHandler(answer("200 OK", [("Content-Length", "3")], [b"abc"]))
    mismatch = WSGIHandler(answer("200 OK", [("Content-Length", "3")], [b"abcd"]))
    resp = Response()
    handler.handle_request(make_request(), resp)
    assert resp.body == b"abc"
    resp = Response()
    mismatch.handle_request(make_request(), resp)
    assert resp.status == 500
