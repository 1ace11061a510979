"""``DirServer``'s memory of where a request path led (``path_cache_seconds``).

A remembered path costs one ``stat`` instead of the walk, and is served only when that
``stat`` shows the very file the walk found. So changes to a file's content, a file replaced
or removed, and a directory swapped for a link to somewhere else are all seen at once; only
which unchanged file a path names may lag, by at most ``path_cache_seconds``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from _support import OLD_MTIME_S, body, fetch, make_request, serve, write

from peregrine_core import ConfigError, Request, Response
from peregrine_static import DirServer, _dir_server


@pytest.fixture
def lstat_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``lstat`` the path walk makes."""
    calls: list[str] = []
    real_lstat = os.lstat

    def counting_lstat(path: str) -> os.stat_result:
        calls.append(path)
        return real_lstat(path)

    monkeypatch.setattr(os, "lstat", counting_lstat)  # the walk calls os.lstat
    return calls


def test_a_remembered_path_skips_the_walk(root: Path, lstat_calls: list[str]) -> None:
    server = DirServer(root)
    assert body(fetch(server, "/docs/guide.md")) == b"# Guide\n"
    assert [p for p in lstat_calls if p.endswith(("docs", "guide.md"))] == [
        str(root / "docs"),
        str(root / "docs" / "guide.md"),
    ]  # one per segment
    for _ in range(3):
        assert body(fetch(server, "/docs/guide.md")) == b"# Guide\n"
    assert body(fetch(server, "/docs/guide.md")) == b"# Guide\n"
    calls_for_guide = [p for p in lstat_calls if p.endswith("guide.md")]
    assert len(calls_for_guide) == 1


def test_with_zero_seconds_every_request_walks(root: Path, lstat_calls: list[str]) -> None:
    server = DirServer(root, path_cache_seconds=0)
    for _ in range(3):
        assert body(fetch(server, "/docs/guide.md")) == b"# Guide\n"
    assert len([p for p in lstat_calls if p.endswith("guide.md")]) == 3


def test_the_walk_is_redone_once_the_time_is_up(root: Path, lstat_calls: list[str]) -> None:
    server = DirServer(root, path_cache_seconds=0.05)
    fetch(server, "/hello.txt")
    fetch(server, "/hello.txt")
    assert len([p for p in lstat_calls if p.endswith("hello.txt")]) == 1
    time.sleep(0.1)
    fetch(server, "/hello.txt")
    assert len([p for p in lstat_calls if p.endswith("hello.txt")]) == 2


def test_a_file_changed_in_place_is_served_new_at_once(root: Path) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"
    write(root / "hello.txt", "changed, and longer\n", OLD_MTIME_S + 5)
    resp = fetch(server, "/hello.txt")
    assert body(resp) == b"changed, and longer\n"
    assert resp.get_header("Content-Length") is None  # framed by the server from the body
    assert resp.get_header("ETag") == f'"{len(b"changed, and longer") + 1:x}-{(OLD_MTIME_S + 5) * 10**9:x}"'


def test_a_file_replaced_by_rename_is_served_new_at_once(root: Path) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"
    write(root / "new.tmp", "hello world\n")  # same size and time, another inode
    os.replace(root / "new.tmp", root / "hello.txt")
    (root / "hello.txt").write_bytes(b"HELLO WORLD\n")
    os.utime(root / "hello.txt", (OLD_MTIME_S, OLD_MTIME_S))
    assert body(fetch(server, "/hello.txt")) == b"HELLO WORLD\n"


def test_a_removed_file_is_declined_at_once(root: Path) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    assert serve(server, "/hello.txt")[0] is True
    (root / "hello.txt").unlink()
    handled, resp = serve(server, "/hello.txt")
    assert handled is False and resp.status == 200 and resp.headers == []


def test_a_directory_swapped_for_a_link_outside_is_refused_at_once(root: Path, outside: Path) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    write(root / "sub" / "secret.txt", "public copy\n")
    assert body(fetch(server, "/sub/secret.txt")) == b"public copy\n"
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside)  # outside/secret.txt: same name, another file
    handled, _ = serve(server, "/sub/secret.txt")
    assert handled is False
    handled, _ = serve(DirServer(root, follow_symlinks="never", path_cache_seconds=3600), "/sub/secret.txt")
    assert handled is False


def test_the_index_file_is_remembered_for_the_directory_path(root: Path, lstat_calls: list[str]) -> None:
    server = DirServer(root)
    assert body(fetch(server, "/")) == b"<h1>home</h1>\n"
    assert body(fetch(server, "/")) == b"<h1>home</h1>\n"
    assert len([p for p in lstat_calls if p.endswith("index.html")]) == 1
    (root / "index.html").unlink()
    assert serve(server, "/")[0] is False  # no index, no listing: declined at once


def test_other_methods_still_get_405_for_a_remembered_path(root: Path) -> None:
    server = DirServer(root)
    fetch(server, "/hello.txt")
    handled, resp = serve(server, "/hello.txt", method="DELETE")
    assert handled is True and resp.status == 405


def test_the_memory_stays_bounded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dir_server, "_RESOLVED_MAX_ENTRIES", 8)
    server = DirServer(root)
    for i in range(40):
        fetch(server, f"/hello.txt?{i}")  # the query is not part of the path
        fetch(server, "/" + "./" * i + "hello.txt")
    assert len(server._resolved) <= 8
    long_path = "/" + "./" * 600 + "hello.txt"
    assert body(fetch(server, long_path)) == b"hello world\n"
    assert long_path not in server._resolved


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "1"])
def test_path_cache_seconds_must_be_a_sane_number(root: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="path_cache_seconds"):
        DirServer(root, path_cache_seconds=value)  # type: ignore[arg-type]


# --- the prepared plain 200 ------------------------------------------------------------------


def _answer(resp: Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return resp.status, resp.headers, body(resp)


def _warm(server: DirServer, target: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
    """Walk, then serve from the remembered path until the plain 200 is prepared."""
    for _ in range(3):
        fetch(server, target, headers)
    assert server._resolved[make_request(target).path].prepared is not None


@pytest.mark.parametrize("precompressed", [True, False])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("target", ["/hello.txt", "/", "/docs/guide.md"])
def test_the_prepared_answer_is_the_full_answer(
    root: Path, precompressed: bool, method: str, target: str
) -> None:
    server = DirServer(root, precompressed=precompressed)
    _warm(server, target)
    fresh = DirServer(root, precompressed=precompressed, path_cache_seconds=0)  # walks, never prepares
    for headers in ((), (("Accept-Encoding", "gzip, deflate, br"),), (("X-Other", "1"),)):
        expected = _answer(fetch(fresh, target, headers, method))
        assert _answer(fetch(server, target, headers, method)) == expected


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((("If-None-Match", "*"),), 304),
        ((("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),), 304),
        ((("If-Match", '"nope"'),), 412),
        ((("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"),), 412),
        ((("Range", "bytes=0-4"),), 206),
        ((("Range", "bytes=0-4"), ("If-Range", '"nope"')), 200),
        ((("Range", "bytes=900-"),), 416),
    ],
)
def test_conditional_and_range_requests_are_still_evaluated(
    root: Path, headers: tuple[tuple[str, str], ...], status: int
) -> None:
    server = DirServer(root)
    _warm(server, "/hello.txt")
    resp = fetch(server, "/hello.txt", headers)
    assert resp.status == status
    assert _answer(resp) == _answer(fetch(DirServer(root, path_cache_seconds=0), "/hello.txt", headers))


def test_a_file_with_a_precompressed_sibling_still_negotiates(root: Path) -> None:
    server = DirServer(root)
    _warm(server, "/app.js")
    assert body(fetch(server, "/app.js")) == b"console.log('identity');\n"
    resp = fetch(server, "/app.js", (("Accept-Encoding", "br"),))
    assert resp.get_header("Content-Encoding") == "br" and body(resp) == b"brotli bytes"
    resp = fetch(server, "/app.js", (("Accept-Encoding", "gzip"),))
    assert resp.get_header("Content-Encoding") == "gzip" and body(resp) == b"\x1f\x8b gzip bytes"


@pytest.mark.parametrize("change", ["in place", "rename", "remove"])
def test_a_change_after_the_answer_was_prepared_is_seen_at_once(root: Path, change: str) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    _warm(server, "/hello.txt")
    if change == "in place":
        write(root / "hello.txt", "hello there\n", OLD_MTIME_S + 7)  # same size, new time
        assert body(fetch(server, "/hello.txt")) == b"hello there\n"
    elif change == "rename":
        write(root / "new.tmp", "HELLO WORLD\n")  # same size and time, another inode
        os.replace(root / "new.tmp", root / "hello.txt")
        assert body(fetch(server, "/hello.txt")) == b"HELLO WORLD\n"
    else:
        (root / "hello.txt").unlink()
        assert serve(server, "/hello.txt")[0] is False


def test_a_prepared_answer_whose_bytes_left_the_cache_is_rebuilt(root: Path) -> None:
    size = len(b"hello world\n")
    server = DirServer(root, cache_budget_bytes=size + len(b"body{}\n"))
    _warm(server, "/hello.txt")
    prepared = server._resolved["/hello.txt"].prepared
    assert prepared is not None
    server._cache.clear()  # as an eviction does
    assert prepared.entry.data is None
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"  # read again
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"
    rebuilt = server._resolved["/hello.txt"].prepared
    assert rebuilt is not None and rebuilt is not prepared and rebuilt.entry.data == b"hello world\n"
    assert server._cache.size_bytes <= server.cache_budget_bytes


def test_nothing_is_prepared_without_a_cache(root: Path) -> None:
    server = DirServer(root, cache_budget_bytes=0)
    for _ in range(3):
        assert body(fetch(server, "/hello.txt")) == b"hello world\n"
    assert server._resolved["/hello.txt"].prepared is None


# --- one stat answers for the requests received before it ---------------------------------------


@pytest.fixture
def stat_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``stat`` made through ``os.stat``."""
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    return calls


def _received(target: str, at: float) -> Request:
    return Request("GET", target, "HTTP/1.1", [("Host", "example.test")], received_at=at)


def test_a_stat_made_after_a_request_was_received_answers_for_it(root: Path, stat_calls: list[str]) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    fetch(server, "/hello.txt")  # the walk
    before = time.monotonic()  # three requests received in one pass, before any check
    stat_calls.clear()
    for _ in range(3):
        assert body(_served(server, _received("/hello.txt", before))) == b"hello world\n"
    assert stat_calls == [str(root / "hello.txt")]  # one stat, begun after they arrived
    later = time.monotonic()  # a request received after that stat gets its own
    assert body(_served(server, _received("/hello.txt", later))) == b"hello world\n"
    assert len(stat_calls) == 2


def test_a_request_received_after_a_change_never_gets_an_older_stat(root: Path) -> None:
    server = DirServer(root, path_cache_seconds=3600)
    for _ in range(3):
        fetch(server, "/hello.txt")
    write(root / "hello.txt", "HELLO WORLD\n", OLD_MTIME_S + 9)
    assert body(_served(server, _received("/hello.txt", time.monotonic()))) == b"HELLO WORLD\n"


def _served(server: DirServer, req: Request) -> Response:
    resp = Response()
    assert server.serve(req, resp) is True
    return resp
