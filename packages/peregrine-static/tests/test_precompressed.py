"""Precompressed siblings (``file.br``, ``file.gz``) chosen by ``Accept-Encoding``."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import OLD_MTIME_S, body, fetch, write

from peregrine_static import DirServer

IDENTITY = b"console.log('identity');\n"
GZIP = b"\x1f\x8b gzip bytes"
BROTLI = b"brotli bytes"


@pytest.fixture
def server(root: Path) -> DirServer:
    return DirServer(root)


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        (None, None),  # no header: identity (documented choice)
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("GZIP", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br, zstd", "br"),
        ("br, gzip", "br"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("gzip; q=0.9, br ; q=0.8", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("br;q=0.000, gzip;q=0.001", "gzip"),
        ("br;q=0, gzip;q=0", None),
        ("*", "br"),
        ("*;q=0.5, gzip", "gzip"),
        ("*, br;q=0", "gzip"),
        ("*;q=0", None),
        ("*;q=0, gzip", "gzip"),
        ("deflate, zstd", None),
        ("br;q=2", None),  # invalid weight: member skipped
        ("br;q=abc, gzip", "gzip"),
        ("br;level=5, gzip", "gzip"),
        ("gzip;q=0.5, gzip;q=0", "gzip"),  # the first mention counts
        (",,, gzip ,", "gzip"),
    ],
)
def test_coding_is_chosen_from_accept_encoding(
    server: DirServer, accept_encoding: str | None, coding: str | None
) -> None:
    headers = [] if accept_encoding is None else [("Accept-Encoding", accept_encoding)]
    resp = fetch(server, "/app.js", headers=headers)
    assert resp.status == 200
    assert resp.get_header("Content-Encoding") == coding
    assert resp.get_header("Content-Type") == "text/javascript; charset=utf-8"
    assert resp.get_header("Vary") == "Accept-Encoding"
    expected = {None: IDENTITY, "gzip": GZIP, "br": BROTLI}[coding]
    assert body(resp) == expected


def test_each_variant_has_its_own_etag(server: DirServer) -> None:
    tags = set()
    for accept in ("identity", "gzip", "br"):
        resp = fetch(server, "/app.js", headers=[("Accept-Encoding", accept)])
        body(resp)
        tags.add(resp.get_header("ETag"))
    assert len(tags) == 3
    assert all(tag is not None and tag.startswith('"') for tag in tags)


def test_identity_etag_does_not_validate_the_gzip_variant(server: DirServer) -> None:
    identity = fetch(server, "/app.js")
    body(identity)
    etag = identity.get_header("ETag")
    assert etag is not None
    resp = fetch(server, "/app.js", headers=[("Accept-Encoding", "gzip"), ("If-None-Match", etag)])
    assert resp.status == 200 and body(resp) == GZIP
    gz_etag = resp.get_header("ETag")
    assert gz_etag is not None
    again = fetch(server, "/app.js", headers=[("Accept-Encoding", "gzip"), ("If-None-Match", gz_etag)])
    assert again.status == 304
    assert again.get_header("Vary") == "Accept-Encoding"


def test_range_on_an_encoded_variant_applies_to_the_encoded_bytes(server: DirServer) -> None:
    resp = fetch(server, "/app.js", headers=[("Accept-Encoding", "gzip"), ("Range", "bytes=0-1")])
    assert resp.status == 206
    assert resp.get_header("Content-Encoding") == "gzip"
    assert resp.get_header("Content-Range") == f"bytes 0-1/{len(GZIP)}"
    assert body(resp) == GZIP[:2]


def test_stale_sibling_is_ignored(server: DirServer) -> None:
    resp = fetch(server, "/stale.js", headers=[("Accept-Encoding", "gzip")])
    assert resp.get_header("Content-Encoding") is None
    assert body(resp) == b"fresh\n"


def test_sibling_that_is_a_directory_is_ignored(root: Path, server: DirServer) -> None:
    (root / "style.css.gz").mkdir()
    resp = fetch(server, "/style.css", headers=[("Accept-Encoding", "gzip")])
    assert resp.get_header("Content-Encoding") is None
    assert body(resp) == b"body{}\n"


def test_sibling_symlink_inside_root_is_followed_under_inside(root: Path, server: DirServer) -> None:
    write(root / "shared.gz", b"shared gz", OLD_MTIME_S + 5)
    (root / "style.css.gz").symlink_to("shared.gz")
    resp = fetch(server, "/style.css", headers=[("Accept-Encoding", "gzip")])
    assert resp.get_header("Content-Encoding") == "gzip"
    assert body(resp) == b"shared gz"


def test_sibling_without_the_original_is_not_a_substitute(root: Path, server: DirServer) -> None:
    write(root / "only.js.gz", b"gz only")
    handled = fetch(server, "/only.js", headers=[("Accept-Encoding", "gzip")])
    assert handled.status == 404


def test_gzip_preferred_when_brotli_sibling_missing(root: Path, server: DirServer) -> None:
    (root / "app.js.br").unlink()
    resp = fetch(server, "/app.js", headers=[("Accept-Encoding", "br, gzip")])
    assert resp.get_header("Content-Encoding") == "gzip"
    body(resp)


def test_precompressed_off_serves_identity_without_vary(root: Path) -> None:
    server = DirServer(root, precompressed=False)
    resp = fetch(server, "/app.js", headers=[("Accept-Encoding", "br, gzip")])
    assert resp.get_header("Content-Encoding") is None
    assert resp.get_header("Vary") is None
    assert body(resp) == IDENTITY


def test_vary_is_sent_even_without_siblings(server: DirServer) -> None:
    resp = fetch(server, "/hello.txt")
    assert resp.get_header("Vary") == "Accept-Encoding"
    body(resp)


def test_head_of_an_encoded_variant_matches_get(server: DirServer) -> None:
    headers = [("Accept-Encoding", "br")]
    get = fetch(server, "/app.js", headers=headers)
    head = fetch(server, "/app.js", headers=headers, method="HEAD")
    assert head.headers == get.headers
    assert head.content_length == len(BROTLI)
    body(get)
    body(head)


def test_index_file_gets_its_sibling_too(root: Path, server: DirServer) -> None:
    write(root / "docs" / "index.html.gz", b"gz index", OLD_MTIME_S + 5)
    resp = fetch(server, "/docs/", headers=[("Accept-Encoding", "gzip")])
    assert resp.get_header("Content-Encoding") == "gzip"
    assert resp.get_header("Content-Type") == "text/html; charset=utf-8"
    assert body(resp) == b"gz index"
