"""The environ built from a Request made by hand (no server, no socket)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from peregrine_wsgi import ErrorStream, FileWrapper, WSGIHandler
from peregrine_wsgi._environ import _after_fork_in_child

from conftest import make_request


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return []


def environ_of(target: str = "/", headers: list[tuple[str, str]] | None = None, **kw: Any) -> dict[str, Any]:
    options = {k: kw.pop(k) for k in ("root_path", "multiprocess") if k in kw}
    return WSGIHandler(_app, **options).environ(make_request(target, headers, **kw))


def test_environ_holds_every_key_pep_3333_requires() -> None:
    env = environ_of("/a/b?x=1&y=%20", [("Host", "example.test:8080"), ("Accept", "*/*")])
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.test:8080"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert isinstance(env["wsgi.errors"], ErrorStream)
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/a/b?x=1&y=%20"
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_remote_address_and_port_come_from_the_request() -> None:
    env = environ_of(remote_addr=("203.0.113.7", 40000))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "40000")


def test_server_name_and_port_without_a_local_address_come_from_host() -> None:
    env = environ_of(headers=[("Host", "example.test:8080")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "8080")
    env = environ_of(headers=[("Host", "[::1]:81")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("::1", "81")
    env = environ_of(headers=[("Host", "example.test")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "80")
    env = environ_of(headers=[])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "80")


def test_percent_encoded_utf8_path_is_decoded_to_latin1_bytes_as_unicode() -> None:
    env = environ_of("/caf%C3%A9/%E2%82%AC?q=%C3%A9")
    assert env["PATH_INFO"] == "/café/€".encode().decode("latin-1")
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/€"
    assert env["QUERY_STRING"] == "q=%C3%A9"


def test_encoded_slash_and_invalid_utf8_survive_as_bytes() -> None:
    env = environ_of("/a%2Fb/%FF")
    assert env["PATH_INFO"] == "/a/b/\xff"


def test_root_path_is_script_name_and_is_stripped_from_path_info() -> None:
    env = environ_of("/app/users/7", root_path="/app/")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/users/7")
    env = environ_of("/app", root_path="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "")


def test_root_path_is_stripped_only_at_a_segment_boundary() -> None:
    env = environ_of("/application/x", root_path="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/application/x")


def test_a_path_a_proxy_already_stripped_is_kept_whole() -> None:
    env = environ_of("/users/7", root_path="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/users/7")


def test_non_ascii_root_path_matches_the_decoded_path() -> None:
    env = environ_of("/caf%C3%A9/x", root_path="/café")
    assert env["SCRIPT_NAME"] == "/café".encode().decode("latin-1")
    assert env["PATH_INFO"] == "/x"


@pytest.mark.parametrize("bad", ["app", "/a?b", "/a#b"])
def test_root_path_must_be_a_path(bad: str) -> None:
    with pytest.raises(ValueError, match="root_path"):
        WSGIHandler(_app, root_path=bad)


def test_header_names_with_underscores_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="peregrine_wsgi")
    env = environ_of(
        headers=[("Host", "h"), ("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "127.0.0.1")]
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "X_Forwarded_For" in caplog.text


def test_an_underscore_header_alone_never_becomes_an_http_key() -> None:
    env = environ_of(headers=[("Host", "h"), ("Remote_User", "admin")])
    assert not [k for k in env if "REMOTE_USER" in k]


def test_repeated_headers_are_joined_with_commas_and_cookies_with_semicolons() -> None:
    env = environ_of(
        headers=[
            ("Host", "h"),
            ("Accept", "text/html"),
            ("Cookie", "a=1"),
            ("accept", "application/json"),
            ("Cookie", "b=2"),
        ]
    )
    assert env["HTTP_ACCEPT"] == "text/html,application/json"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_content_type_and_length_have_cgi_keys_not_http_keys() -> None:
    env = environ_of(
        headers=[("Host", "h"), ("Content-Type", "text/plain"), ("Content-Length", "5")],
        method="POST",
        body=b"hello",
    )
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "5")
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.input"].read() == b"hello"


def test_content_length_is_the_decoded_body_length_for_chunked_uploads() -> None:
    env = environ_of(
        headers=[("Host", "h"), ("Transfer-Encoding", "chunked")], method="POST", body=b"0123456789"
    )
    assert env["CONTENT_LENGTH"] == "10"
    assert "HTTP_TRANSFER_ENCODING" not in env


def test_an_empty_body_sent_with_content_length_zero_says_zero() -> None:
    env = environ_of(headers=[("Host", "h"), ("Content-Length", "0")], method="POST")
    assert env["CONTENT_LENGTH"] == "0"
    assert env["wsgi.input"].read() == b""


def test_each_request_gets_its_own_environ() -> None:
    handler = WSGIHandler(_app)
    first = handler.environ(make_request("/one"))
    first["PATH_INFO"] = "changed"
    first["extra"] = 1
    second = handler.environ(make_request("/two"))
    assert second["PATH_INFO"] == "/two" and "extra" not in second


def test_multiprocess_can_be_set_explicitly() -> None:
    assert environ_of(multiprocess=True)["wsgi.multiprocess"] is True


def test_a_fork_marks_automatic_handlers_multiprocess_but_not_explicit_ones() -> None:
    auto = WSGIHandler(_app)
    explicit = WSGIHandler(_app, multiprocess=False)
    _after_fork_in_child()  # what os.register_at_fork runs in a forked child
    assert auto.environ(make_request())["wsgi.multiprocess"] is True
    assert explicit.environ(make_request())["wsgi.multiprocess"] is False


def test_wsgi_errors_logs_whole_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="peregrine_wsgi.errors")
    stream = environ_of()["wsgi.errors"]
    stream.write("first part, ")
    stream.write("end\nsecond\n")
    stream.writelines(["third", "\n"])
    stream.write("unterminated")
    stream.flush()
    messages = [r.getMessage() for r in caplog.records if r.name == "peregrine_wsgi.errors"]
    assert messages == ["first part, end", "second", "third", "unterminated"]


def test_wsgi_errors_refuses_bytes() -> None:
    with pytest.raises(TypeError):
        environ_of()["wsgi.errors"].write(b"x")
