"""Conditional requests (RFC 9110 §13) through ``DirServer.serve``: 304, 412, precedence."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _support import OLD_MTIME_S, body, fetch, header_names

from peregrine_static import DirServer
from peregrine_static._http import etag_for, http_date, parse_http_date

HELLO = b"hello world\n"
ETAG = etag_for(len(HELLO), OLD_MTIME_S * 1_000_000_000)
LAST_MODIFIED = http_date(OLD_MTIME_S)
EARLIER = http_date(OLD_MTIME_S - 3600)
LATER = http_date(OLD_MTIME_S + 3600)


@pytest.fixture
def server(root: Path) -> DirServer:
    return DirServer(root)


def test_validators_are_a_quoted_strong_etag_and_an_http_date(server: DirServer) -> None:
    resp = fetch(server, "/hello.txt")
    assert resp.status == 200
    assert resp.get_header("ETag") == ETAG
    assert ETAG.startswith('"') and ETAG.endswith('"') and not ETAG.startswith("W/")
    assert resp.get_header("Last-Modified") == "Tue, 14 Nov 2023 22:13:20 GMT" == LAST_MODIFIED
    assert resp.get_header("Cache-Control") == "no-cache"
    assert body(resp) == HELLO


# (request headers, expected status)
CONDITIONS: list[tuple[list[tuple[str, str]], int]] = [
    # If-None-Match: weak comparison (§13.1.2), any member of a list, or "*"
    ([("If-None-Match", ETAG)], 304),
    ([("If-None-Match", "W/" + ETAG)], 304),
    ([("If-None-Match", "*")], 304),
    ([("If-None-Match", f'"other", {ETAG}')], 304),
    ([("If-None-Match", f'"other",{ETAG} , "x"')], 304),
    ([("If-None-Match", f'W/"a", , W/{ETAG}')], 304),
    ([("If-None-Match", '"other"')], 200),
    ([("If-None-Match", ETAG.strip('"'))], 200),  # unquoted: not an entity-tag
    ([("If-None-Match", "")], 200),
    ([("If-None-Match", f"{ETAG} garbage")], 200),
    # If-Modified-Since: not modified when Last-Modified <= date (§13.1.3)
    ([("If-Modified-Since", LAST_MODIFIED)], 304),
    ([("If-Modified-Since", LATER)], 304),
    ([("If-Modified-Since", EARLIER)], 200),
    ([("If-Modified-Since", "not a date")], 200),
    ([("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 +0000")], 200),  # not an HTTP-date
    ([("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT")], 304),  # RFC 850 form
    ([("If-Modified-Since", "Tue Nov 14 22:13:20 2023")], 304),  # asctime form
    # INM beats IMS (§13.2.2 step 3 before step 4): IMS is not even looked at
    ([("If-None-Match", '"other"'), ("If-Modified-Since", LATER)], 200),
    ([("If-Modified-Since", LATER), ("If-None-Match", '"other"')], 200),
    ([("If-None-Match", ETAG), ("If-Modified-Since", EARLIER)], 304),
    # If-Match: strong comparison (§13.1.1), failure is 412
    ([("If-Match", ETAG)], 200),
    ([("If-Match", "*")], 200),
    ([("If-Match", f'"a", {ETAG}')], 200),
    ([("If-Match", '"other"')], 412),
    ([("If-Match", "W/" + ETAG)], 412),
    # If-Unmodified-Since, evaluated only without If-Match
    ([("If-Unmodified-Since", LAST_MODIFIED)], 200),
    ([("If-Unmodified-Since", EARLIER)], 412),
    ([("If-Unmodified-Since", "garbage")], 200),
    ([("If-Match", ETAG), ("If-Unmodified-Since", EARLIER)], 200),
    # If-Match failing comes before If-None-Match (§13.2.2 step 1)
    ([("If-Match", '"other"'), ("If-None-Match", ETAG)], 412),
    # Range with a matching If-None-Match: 304 wins over 206
    ([("If-None-Match", ETAG), ("Range", "bytes=0-1")], 304),
    ([("If-None-Match", '"other"'), ("Range", "bytes=0-1")], 206),
    ([("If-None-Match", ETAG), ("Range", "bytes=99-")], 304),
]


@pytest.mark.parametrize(("headers", "status"), CONDITIONS)
def test_precondition_table(server: DirServer, headers: list[tuple[str, str]], status: int) -> None:
    resp = fetch(server, "/hello.txt", headers=headers)
    assert resp.status == status
    content = body(resp)
    if status == 200:
        assert content == HELLO
    elif status in (304, 412):
        assert content == b""


def test_not_modified_carries_validators_and_caching_headers_but_no_body(server: DirServer) -> None:
    resp = fetch(server, "/hello.txt", headers=[("If-None-Match", ETAG)])
    assert resp.status == 304
    assert resp.get_header("ETag") == ETAG
    assert resp.get_header("Last-Modified") == LAST_MODIFIED
    assert resp.get_header("Cache-Control") == "no-cache"
    assert resp.get_header("Vary") == "Accept-Encoding"
    assert "content-type" not in header_names(resp)
    assert "content-range" not in header_names(resp)
    assert resp.body == b"" and resp.file is None


def test_not_modified_answers_head_too(server: DirServer) -> None:
    resp = fetch(server, "/hello.txt", headers=[("If-None-Match", ETAG)], method="HEAD")
    assert resp.status == 304


def test_not_modified_for_a_large_file_opens_nothing(server: DirServer, root: Path) -> None:
    first = fetch(server, "/large.bin")
    body(first)
    etag = first.get_header("ETag")
    assert etag is not None
    resp = fetch(server, "/large.bin", headers=[("If-None-Match", etag)])
    assert resp.status == 304 and resp.file is None


def test_etag_changes_when_the_file_changes(server: DirServer, root: Path) -> None:
    before = fetch(server, "/hello.txt")
    body(before)
    (root / "hello.txt").write_bytes(b"hello again\n")
    after = fetch(server, "/hello.txt", headers=[("If-None-Match", ETAG)])
    assert after.status == 200
    assert after.get_header("ETag") != before.get_header("ETag")
    assert body(after) == b"hello again\n"


def test_future_modification_time_is_capped_at_now(server: DirServer, root: Path) -> None:
    future = int(time.time()) + 10 * 365 * 86400
    os.utime(root / "hello.txt", (future, future))
    resp = fetch(server, "/hello.txt")
    last_modified = resp.get_header("Last-Modified")
    assert last_modified is not None
    stamp = parse_http_date(last_modified)
    assert stamp is not None and stamp <= time.time() + 1
    body(resp)


def test_cache_control_is_configurable_or_absent(root: Path) -> None:
    custom = fetch(DirServer(root, cache_control="public, max-age=3600"), "/hello.txt")
    assert custom.get_header("Cache-Control") == "public, max-age=3600"
    none = fetch(DirServer(root, cache_control=None), "/hello.txt")
    assert none.get_header("Cache-Control") is None
    body(custom)
    body(none)
