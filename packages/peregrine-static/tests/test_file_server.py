"""``FileServer``: one file for every path, with validators, ranges and a Content-Type."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _support import DATA_100, LARGE, OLD_MTIME_S, body, fetch, serve, write

from peregrine_core import ConfigError, Request, Response
from peregrine_static import FileServer


def test_serves_the_file_for_any_path(root: Path) -> None:
    server = FileServer(root / "hello.txt")
    for target in ("/", "/anything", "/a/b/c?x=1", "*"):
        resp = fetch(server, target)
        assert resp.status == 200
        assert resp.get_header("Content-Type") == "text/plain; charset=utf-8"
        assert resp.get_header("Vary") is None
        assert body(resp) == b"hello world\n"


def test_content_type_can_be_given(root: Path) -> None:
    server = FileServer(root / "noext", content_type="text/x-custom")
    resp = fetch(server, "/")
    assert resp.get_header("Content-Type") == "text/x-custom"
    body(resp)


def test_content_type_defaults_to_the_target_name(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias.bin"
    alias.symlink_to(root / "style.css")
    server = FileServer(alias)
    assert server.path == str(root / "style.css")
    resp = fetch(server, "/")
    assert resp.get_header("Content-Type") == "text/css; charset=utf-8"
    body(resp)


def test_ranges_and_conditionals_work(root: Path) -> None:
    server = FileServer(root / "data100.bin")
    ranged = fetch(server, "/", headers=[("Range", "bytes=-10")])
    assert ranged.status == 206 and body(ranged) == DATA_100[90:]
    unsatisfiable = fetch(server, "/", headers=[("Range", "bytes=100-")])
    assert unsatisfiable.status == 416
    assert unsatisfiable.get_header("Content-Range") == "bytes */100"
    etag = ranged.get_header("ETag")
    assert etag is not None
    assert fetch(server, "/", headers=[("If-None-Match", etag)]).status == 304


def test_large_file_is_a_file_region(root: Path) -> None:
    resp = fetch(FileServer(root / "large.bin"), "/")
    assert resp.file is not None and resp.body == b""
    assert body(resp) == LARGE


def test_head_and_405(root: Path) -> None:
    server = FileServer(root / "hello.txt")
    head = fetch(server, "/", method="HEAD")
    assert head.status == 200 and head.content_length == 12
    post = fetch(server, "/", method="POST")
    assert post.status == 405 and post.get_header("Allow") == "GET, HEAD"


def test_missing_file_after_start_is_declined_then_404(root: Path) -> None:
    server = FileServer(root / "hello.txt")
    (root / "hello.txt").unlink()
    handled, resp = serve(server, "/")
    assert handled is False and resp.headers == []
    assert fetch(server, "/").status == 404


def test_replaced_file_is_picked_up(root: Path) -> None:
    server = FileServer(root / "hello.txt")
    assert body(fetch(server, "/")) == b"hello world\n"
    write(root / "new.txt", "new content\n", OLD_MTIME_S + 1)
    os.replace(root / "new.txt", root / "hello.txt")
    assert body(fetch(server, "/")) == b"new content\n"


def test_one_stat_answers_for_the_requests_received_before_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    server = FileServer(root / "hello.txt")
    monkeypatch.setattr(os, "stat", counting_stat)
    received = time.monotonic()  # three requests received in one pass, before any check
    for _ in range(3):
        resp = Response()
        req = Request("GET", "/", "HTTP/1.1", [("Host", "x")], received_at=received)
        assert server.serve(req, resp) is True and body(resp) == b"hello world\n"
    assert calls == [str(root / "hello.txt")]
    write(root / "hello.txt", "HELLO WORLD\n", OLD_MTIME_S + 3)  # then a change, then a request
    assert body(fetch(server, "/")) == b"HELLO WORLD\n"
    assert calls.count(str(root / "hello.txt")) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content_type": "not a type"}, "content_type"),
        ({"content_type": "text/html\r\nX-Evil: 1"}, "content_type"),
        ({"content_type": 5}, "content_type"),
        ({"content_type": "text/plain; charset=\u20ac"}, "content_type"),
        ({"cache_control": "a\nb"}, "cache_control"),
        ({"cache_max_file_bytes": -1}, "cache_max_file_bytes"),
    ],
)
def test_bad_options_raise_config_error(root: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FileServer(root / "hello.txt", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["missing.txt", "docs"])
def test_path_must_be_an_existing_regular_file(root: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not an existing regular file"):
        FileServer(root / name)
