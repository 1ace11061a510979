"""RFC 9110 §14 range requests, through ``DirServer.serve``, from memory and from a file.

The cases other static servers got wrong: ``bytes=0-10``, ``bytes=90-``, ``bytes=-10``,
``bytes=-0``, start beyond the end, several ranges, malformed headers, ``If-Range`` with a
weak tag.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import DATA_100, LARGE, OLD_MTIME_S, body, fetch

from peregrine_core import Response
from peregrine_static import DirServer
from peregrine_static._http import http_date

# (Range header, expected status, expected (start, end) inclusive or None)
RANGE_TABLE: list[tuple[str, int, tuple[int, int] | None]] = [
    ("bytes=0-10", 206, (0, 10)),
    ("bytes=90-", 206, (90, 99)),
    ("bytes=-10", 206, (90, 99)),
    ("bytes=0-0", 206, (0, 0)),
    ("bytes=99-99", 206, (99, 99)),
    ("bytes=99-", 206, (99, 99)),
    ("bytes=-1", 206, (99, 99)),
    ("bytes=0-99", 206, (0, 99)),
    ("bytes=0-", 206, (0, 99)),
    # last-pos beyond the end is clamped (§14.1.2); a suffix longer than the file is all of it
    ("bytes=50-1000", 206, (50, 99)),
    ("bytes=0-99999999999999999999999999", 206, (0, 99)),
    ("bytes=-1000", 206, (0, 99)),
    ("bytes=-99999999999999999999999999", 206, (0, 99)),
    # unit and whitespace tolerance: unit is case-insensitive, OWS around list members
    ("BYTES=0-10", 206, (0, 10)),
    ("Bytes=0-10", 206, (0, 10)),
    ("bytes= 0-10 ", 206, (0, 10)),
    ("bytes=0-10,", 206, (0, 10)),
    ("bytes=,0-10", 206, (0, 10)),
    # unsatisfiable: 416 with Content-Range: bytes */100
    ("bytes=-0", 416, None),
    ("bytes=100-", 416, None),
    ("bytes=100-200", 416, None),
    ("bytes=150-", 416, None),
    ("bytes=99999999999999999999999999-", 416, None),
    # several ranges: whole file with 200 (documented choice)
    ("bytes=0-1,5-6", 200, None),
    ("bytes=0-10, 20-30, 40-", 200, None),
    ("bytes=-5,0-1", 200, None),
    ("bytes=0-1,100-200", 200, None),
    # malformed or invalid: ignored, 200
    ("bytes=10-5", 200, None),
    ("bytes=abc", 200, None),
    ("bytes=", 200, None),
    ("bytes=-", 200, None),
    ("bytes=--1", 200, None),
    ("bytes=1-2-3", 200, None),
    ("bytes=1 -2", 200, None),
    ("bytes=+1-2", 200, None),
    ("bytes=0x10-20", 200, None),
    ("bytes=1.5-2", 200, None),
    ("bytes 0-10", 200, None),
    ("bytes:0-10", 200, None),
    ("items=0-10", 200, None),
    ("=0-10", 200, None),
    ("", 200, None),
    ("bytes=" + "9" * 5000 + "-", 416, None),
    ("bytes=0-" + "9" * 5000, 206, (0, 99)),
    ("bytes=" + "1-2," * 1000, 200, None),
]


@pytest.fixture(params=["memory", "sendfile"])
def server(request: pytest.FixtureRequest, root: Path) -> DirServer:
    """The same tree served from the small-file path and from the sendfile path."""
    limit = 64 * 1024 if request.param == "memory" else 0
    return DirServer(root, cache_max_file_bytes=limit)


def _assert_whole(resp: Response, data: bytes) -> None:
    assert resp.status == 200
    assert resp.get_header("Content-Range") is None
    assert resp.get_header("Accept-Ranges") == "bytes"
    assert body(resp) == data


@pytest.mark.parametrize(("range_header", "status", "span"), RANGE_TABLE)
def test_range_table(server: DirServer, range_header: str, status: int, span: tuple[int, int] | None) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", range_header)])
    assert resp.status == status
    assert resp.get_header("Accept-Ranges") == "bytes"
    if status == 206:
        assert span is not None
        start, end = span
        assert resp.get_header("Content-Range") == f"bytes {start}-{end}/100"
        assert resp.get_header("Content-Type") == "application/octet-stream"
        assert resp.get_header("ETag") is not None
        assert resp.content_length == end - start + 1
        assert body(resp) == DATA_100[start : end + 1]
    elif status == 416:
        assert resp.get_header("Content-Range") == "bytes */100"
        assert body(resp) == b""
    else:
        _assert_whole(resp, DATA_100)


def test_large_file_range_is_a_file_region_not_a_copy(root: Path) -> None:
    server = DirServer(root)
    resp = fetch(server, "/large.bin", headers=[("Range", "bytes=1000-1999")])
    assert resp.status == 206
    assert resp.file is not None
    assert (resp.file.offset, resp.file.count) == (1000, 1000)
    assert resp.body == b""
    assert body(resp) == LARGE[1000:2000]


def test_large_file_is_sent_as_a_whole_file_region(root: Path) -> None:
    resp = fetch(DirServer(root), "/large.bin")
    assert resp.status == 200
    assert resp.file is not None
    assert (resp.file.offset, resp.file.count) == (0, len(LARGE))
    assert resp.content_length == len(LARGE)
    assert body(resp) == LARGE


def test_empty_file_has_no_satisfiable_range(root: Path) -> None:
    (root / "empty.txt").write_bytes(b"")
    server = DirServer(root)
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        resp = fetch(server, "/empty.txt", headers=[("Range", header)])
        assert resp.status == 416
        assert resp.get_header("Content-Range") == "bytes */0"
    resp = fetch(server, "/empty.txt")
    assert resp.status == 200 and body(resp) == b""


def test_range_is_ignored_for_head(server: DirServer) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-10")], method="HEAD")
    assert resp.status == 200
    assert resp.content_length == 100
    assert resp.get_header("Content-Range") is None
    body(resp)


def test_unsatisfiable_range_is_ignored_for_head(server: DirServer) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=500-")], method="HEAD")
    assert resp.status == 200
    body(resp)


def _etag(server: DirServer, target: str = "/data100.bin") -> str:
    resp = fetch(server, target)
    body(resp)
    etag = resp.get_header("ETag")
    assert etag is not None
    return etag


def test_if_range_with_the_current_strong_etag_honours_the_range(server: DirServer) -> None:
    etag = _etag(server)
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-9"), ("If-Range", etag)])
    assert resp.status == 206
    assert body(resp) == DATA_100[:10]


def test_if_range_with_a_weak_etag_sends_the_whole_file(server: DirServer) -> None:
    etag = _etag(server)
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-9"), ("If-Range", "W/" + etag)])
    _assert_whole(resp, DATA_100)


def test_if_range_with_another_etag_sends_the_whole_file(server: DirServer) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-9"), ("If-Range", '"nope"')])
    _assert_whole(resp, DATA_100)


def test_if_range_with_the_exact_last_modified_date_honours_the_range(server: DirServer) -> None:
    date = http_date(OLD_MTIME_S)
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-9"), ("If-Range", date)])
    assert resp.status == 206
    assert body(resp) == DATA_100[:10]


@pytest.mark.parametrize(
    "if_range",
    [http_date(OLD_MTIME_S - 1), http_date(OLD_MTIME_S + 1), "yesterday", "", "W/"],
)
def test_if_range_with_any_other_validator_sends_the_whole_file(server: DirServer, if_range: str) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=0-9"), ("If-Range", if_range)])
    _assert_whole(resp, DATA_100)


def test_if_range_with_an_unsatisfiable_range_and_a_stale_etag_sends_the_whole_file(
    server: DirServer,
) -> None:
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=500-"), ("If-Range", '"old"')])
    _assert_whole(resp, DATA_100)


def test_range_after_the_file_changed_uses_the_new_size(root: Path, server: DirServer) -> None:
    path = root / "data100.bin"
    path.write_bytes(DATA_100[:50])
    os.utime(path, (OLD_MTIME_S + 5, OLD_MTIME_S + 5))
    resp = fetch(server, "/data100.bin", headers=[("Range", "bytes=-10")])
    assert resp.status == 206
    assert resp.get_header("Content-Range") == "bytes 40-49/50"
    assert body(resp) == DATA_100[40:50]
