"""WSGI applications served over real sockets, checked by ``wsgiref.validate.validator``.

The validator wraps every app (unless a test breaks a rule on purpose): it checks the
environ, start_response's arguments, the body pieces, and that ``close()`` was called on
the iterable before it was garbage collected (an unraisable exception, which the pytest
configuration turns into a failure).
"""

from __future__ import annotations

import gc
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import TIMEOUT, Closing, Reader, connect, exchange, get, serve_app

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


def test_hello_world_list_body_keeps_the_connection_alive() -> None:
    with serve_app(hello) as srv, connect(srv.port) as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(get("/"))
            reply = reader.response()
            assert (reply.status, reply.body, reply.complete) == (200, b"hello\n", True)
            assert reply.header("Content-Length") == "6"
            assert reply.header("Content-Type") == "text/plain"


def test_head_gets_the_get_headers_and_no_body() -> None:
    with serve_app(hello) as srv:
        reply, _ = exchange(srv.port, get("/", method="HEAD"), head_request=True)
    assert reply.status == 200 and reply.header("Content-Length") == "6"


def test_environ_addresses_come_from_the_connection(recorded: dict[str, Any]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        recorded.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with serve_app(app) as srv, connect(srv.port) as sock:
        sock.sendall(get("/x?a=1", "Host: example.test:1234"))
        Reader(sock).response()
        client_port = sock.getsockname()[1]
    assert recorded["REMOTE_ADDR"] == "127.0.0.1"
    assert recorded["REMOTE_PORT"] == str(client_port)
    assert recorded["SERVER_NAME"] == "127.0.0.1"
    assert recorded["SERVER_PORT"] == str(srv.port)
    assert recorded["HTTP_HOST"] == "example.test:1234"
    assert recorded["wsgi.url_scheme"] == "http"
    assert (recorded["PATH_INFO"], recorded["QUERY_STRING"]) == ("/x", "a=1")


def test_underscore_headers_never_reach_the_app(recorded: dict[str, Any]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        recorded.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with serve_app(app) as srv:
        exchange(srv.port, get("/", "X-User: alice", "X_User: admin", "Cookie: a=1", "Cookie: b=2"))
    assert recorded["HTTP_X_USER"] == "alice"
    assert recorded["HTTP_COOKIE"] == "a=1; b=2"


def test_root_path_and_non_ascii_percent_encoded_path(recorded: dict[str, Any]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        recorded.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode("latin-1")]

    with serve_app(app, root_path="/shop") as srv:
        reply, _ = exchange(srv.port, get("/shop/caf%C3%A9?q=%C3%A9"))
    assert reply.body.decode("utf-8") == "/café"
    assert recorded["SCRIPT_NAME"] == "/shop"
    assert recorded["QUERY_STRING"] == "q=%C3%A9"


def test_a_chunked_upload_arrives_de_chunked_in_wsgi_input(recorded: dict[str, Any]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        recorded["length"] = environ["CONTENT_LENGTH"]
        recorded["te"] = environ.get("HTTP_TRANSFER_ENCODING")
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data[::-1]]

    request = (
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, request)
    assert reply.body == b"dlrow olleh"
    assert recorded == {"length": "11", "te": None}


def test_wsgi_input_is_bounded_by_the_body_on_a_keep_alive_connection() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        data = environ["wsgi.input"].read()  # read to the end: must stop at the body's end
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data]

    with serve_app(app, validate=False) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" + get("/next"))
        reader = Reader(sock)
        assert reader.response().body == b"abc"
        assert reader.response().body == b""


def test_a_generator_body_is_streamed_chunked_and_closed() -> None:
    body = Closing([b"one ", b"two ", b"three"], delay_s=0.01)

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/"))
        assert body.closed.wait(TIMEOUT)
    assert (reply.body, reply.complete) == (b"one two three", True)
    assert body.close_calls == 1


def test_a_generator_with_content_length_is_streamed_with_that_length() -> None:
    body = Closing([b"12345", b"67890"], delay_s=0.01)

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return body

    with serve_app(app) as srv:
        reply, closed = exchange(srv.port, get("/"))
        assert body.closed.wait(TIMEOUT)
    assert reply.header("Content-Length") == "10" and reply.header("Transfer-Encoding") is None
    assert (reply.body, reply.complete, closed) == (b"1234567890", True, False)


def test_close_is_called_when_the_client_goes_away_mid_stream() -> None:
    body = Closing([b"x" * 1024], forever=True, delay_s=0.005)

    def app(environ: Environ, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/hello":
            return hello(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body

    with serve_app(app) as srv:
        sock = connect(srv.port)
        sock.sendall(get("/"))
        assert sock.recv(1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset: the next send fails
        assert body.closed.wait(TIMEOUT)
        assert body.close_calls == 1
        assert hello_still_answers(srv.port)


def hello_still_answers(port: int) -> bool:
    reply, _ = exchange(port, get("/hello"))
    return reply.body == b"hello\n"


def test_close_is_called_for_head_without_iterating() -> None:
    body = Closing([b"never sent"])

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return body

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/", method="HEAD"), head_request=True)
        assert body.closed.wait(TIMEOUT)
    assert reply.status == 200 and reply.header("Content-Length") == "10"


def test_head_for_a_generator_that_calls_start_response_late() -> None:
    closed = threading.Event()

    def app(environ: Environ, start_response: Any) -> Any:
        try:
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Late", "1")])
            yield b"part one"
            yield b"part two"
        finally:
            closed.set()

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/", method="HEAD"), head_request=True)
        assert closed.wait(TIMEOUT)
    assert reply.status == 200 and reply.header("X-Late") == "1"


def test_an_exception_before_anything_was_sent_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    with serve_app(app, validate=False) as srv:
        reply, _ = exchange(srv.port, get("/fail"))
    assert reply.status == 500
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"
    assert b"hunter2" not in reply.body and b"Traceback" not in reply.body
    assert "GET '/fail' HTTP/1.1" in caplog.text and "hunter2" in caplog.text


def test_an_exception_mid_stream_closes_the_connection_without_ending_the_body() -> None:
    closed = threading.Event()

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"partial "
            time.sleep(0.05)
            raise RuntimeError("mid-stream failure")
        finally:
            closed.set()

    with serve_app(app) as srv:
        reply, closed_after = exchange(srv.port, get("/"))
        assert closed.wait(TIMEOUT)
    assert reply.status == 200
    assert reply.body == b"partial " and not reply.complete and closed_after


def test_a_short_body_under_content_length_ends_the_connection() -> None:
    body = Closing([b"abc", b"de"], delay_s=0.01)

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return body

    with serve_app(app) as srv, connect(srv.port) as sock:
        sock.sendall(get("/") + get("/second"))
        reader = Reader(sock)
        reply = reader.response()
        assert (reply.body, reply.complete) == (b"abcde", False)
        assert reader.eof and reader.buf == b""
        assert body.closed.wait(TIMEOUT)


def test_a_long_body_over_content_length_is_cut_and_never_parsed_as_a_response() -> None:
    body = Closing([b"abc", b"defgh", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], delay_s=0.01)

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return body

    with serve_app(app) as srv, connect(srv.port) as sock:
        sock.sendall(get("/") + get("/second"))
        reader = Reader(sock)
        reply = reader.response()
        assert (reply.body, reply.complete) == (b"abcde", True)
        assert reader.closed(), f"bytes after the declared length: {reader.buf!r}"
        assert body.closed.wait(TIMEOUT)


def test_the_write_callable_sends_the_head_then_each_piece() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")  # empty: the head is not sent yet
        write(b"written ")
        write(b"pieces ")
        return [b"then ", b"returned"]

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/"))
    assert (reply.body, reply.complete) == (b"written pieces then returned", True)


def test_write_with_content_length_frames_with_that_length() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
        write(b"abcd")
        return Closing([b"efgh"])

    with serve_app(app) as srv:
        reply, closed = exchange(srv.port, get("/"))
    assert reply.header("Content-Length") == "8"
    assert (reply.body, reply.complete, closed) == (b"abcdefgh", True, False)


def test_exc_info_after_the_head_was_sent_re_raises_and_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BaseException] = []
    head_received = threading.Event()

    def app(environ: Environ, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"half a page")
        assert head_received.wait(TIMEOUT)  # the head and the first piece are on the wire
        try:
            raise ValueError("template error")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            except ValueError as exc:
                seen.append(exc)
                raise
        return [b"never"]

    with serve_app(app, validate=False) as srv, connect(srv.port) as sock:
        sock.sendall(get("/"))
        reader = Reader(sock)
        while b"half a page" not in reader.buf:
            assert reader._fill()
        head_received.set()
        reply = reader.response()
        assert reader.closed()
    assert len(seen) == 1 and str(seen[0]) == "template error"
    assert reply.status == 200
    assert (reply.body, reply.complete) == (b"half a page", False)
    assert "template error" in caplog.text and "GET /" in caplog.text


def test_an_exception_after_write_before_anything_went_out_is_a_clean_500() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"buffered, not sent yet")
        raise ValueError("late failure")

    with serve_app(app, validate=False) as srv:
        reply, _ = exchange(srv.port, get("/"))
    assert reply.status in (200, 500)
    if reply.status == 200:  # the head went out already: the body must be seen cut
        assert not reply.complete
    else:
        assert b"buffered" not in reply.body and reply.complete


def test_exc_info_before_the_head_was_sent_replaces_the_status() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise ValueError("template error")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"custom error page"]

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/"))
    assert reply.status == 500 and reply.body == b"custom error page"
    assert reply.header("Content-Type") == "text/plain"


def test_file_wrapper_sends_a_file_from_a_non_zero_offset(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    files: list[Any] = []

    def app(environ: Environ, start_response: Any) -> Any:
        f = path.open("rb")
        f.seek(1000)
        files.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 1024)

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/"))
        assert (reply.body, reply.complete) == (data[1000:], True)
        for _ in range(50):
            if files[0].closed:
                break
            time.sleep(0.02)
    assert files[0].closed


def test_file_wrapper_over_a_pipe_like_object_is_read_in_blocks() -> None:
    import io

    buffer = io.BytesIO(b"0123456789" * 100)

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])
        return environ["wsgi.file_wrapper"](buffer, 64)

    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, get("/"))
    assert (reply.body, reply.complete) == (b"0123456789" * 100, True)
    assert buffer.closed


def test_connection_close_from_the_app_closes_after_the_response() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", "2")]
        )
        return [b"ok"]

    with serve_app(app) as srv:
        reply, closed = exchange(srv.port, get("/"))
    assert reply.body == b"ok" and closed
    assert (reply.header("Connection") or "").lower() == "close"


def test_validator_sees_no_problem_with_a_post_app() -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = stream.read(int(environ["CONTENT_LENGTH"]) - len(first))
        print("logged from the app", file=environ["wsgi.errors"])
        start_response("200 OK", [("Content-Type", environ["CONTENT_TYPE"])])
        return iter([first.upper(), rest])

    request = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/x\r\nContent-Length: 10\r\n\r\nab\ncdefghi"
    with serve_app(app) as srv:
        reply, _ = exchange(srv.port, request)
    gc.collect()
    assert reply.body == b"AB\ncdefghi" and reply.header("Content-Type") == "text/x"
