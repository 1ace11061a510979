"""Directory listings: off by default, escaped, sorted, respectful of hidden files and links."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _support import body, fetch, serve, write

from peregrine_static import DirServer


@pytest.fixture
def server(root: Path) -> DirServer:
    return DirServer(root, listing=True)


def _links(page: str) -> list[str]:
    return re.findall(r'<a href="([^"]*)">', page)


def test_listing_is_off_by_default(root: Path) -> None:
    assert serve(DirServer(root), "/empty/")[0] is False


def test_listing_page_is_utf8_html(root: Path, server: DirServer) -> None:
    write(root / "empty" / "b.txt", "b")
    write(root / "empty" / "a.txt", "a")
    write(root / "empty" / "ü.txt", "u")
    (root / "empty" / "sub").mkdir()
    resp = fetch(server, "/empty/")
    assert resp.status == 200
    assert resp.get_header("Content-Type") == "text/html; charset=utf-8"
    assert resp.get_header("Cache-Control") == "no-cache"
    page = body(resp).decode("utf-8")
    assert "<title>Index of /empty/</title>" in page
    # directories first, then files, each sorted; a parent link below the top
    assert _links(page) == ["../", "./sub/", "./a.txt", "./b.txt", "./%C3%BC.txt"]
    assert ">ü.txt<" in page


def test_listing_of_the_top_has_no_parent_link(root: Path) -> None:
    server = DirServer(root, listing=True, index_files=())
    page = body(fetch(server, "/")).decode()
    assert "../" not in _links(page)
    assert "./docs/" in _links(page) and "./hello.txt" in _links(page)


def test_listing_shows_hidden_names_only_when_allowed(root: Path) -> None:
    shown = body(fetch(DirServer(root, listing=True, index_files=(), show_hidden=True), "/")).decode()
    hidden = body(fetch(DirServer(root, listing=True, index_files=()), "/")).decode()
    assert "./.hidden.txt" in _links(shown) and "./.git/" in _links(shown)
    assert ".hidden" not in hidden


def test_listing_under_never_policy_omits_every_symlink(root: Path) -> None:
    page = body(fetch(DirServer(root, listing=True, index_files=(), follow_symlinks="never"), "/")).decode()
    links = _links(page)
    assert "./link_in" not in links and "./docs_link/" not in links
    assert "./hello.txt" in links


def test_listing_omits_special_files(root: Path, server: DirServer) -> None:
    os.mkfifo(root / "empty" / "pipe")
    write(root / "empty" / "file.txt", "x")
    assert _links(body(fetch(server, "/empty/")).decode()) == ["../", "./file.txt"]


def test_listing_redirects_without_slash(server: DirServer) -> None:
    resp = fetch(server, "/empty")
    assert resp.status == 301 and resp.get_header("Location") == "/empty/"


def test_listing_link_of_a_colon_name_is_not_a_scheme(root: Path, server: DirServer) -> None:
    write(root / "empty" / "javascript:alert(1)", "x")
    links = _links(body(fetch(server, "/empty/")).decode())
    assert "./javascript%3Aalert%281%29" in links


def test_listing_answers_head_and_refuses_post(server: DirServer) -> None:
    head = fetch(server, "/empty/", method="HEAD")
    assert head.status == 200 and head.content_length > 0
    assert fetch(server, "/empty/", method="POST").status == 405


def test_listing_of_an_unreadable_directory_is_declined(root: Path, server: DirServer) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any directory")
    (root / "empty").chmod(0o300)
    try:
        assert serve(server, "/empty/")[0] is False
    finally:
        (root / "empty").chmod(0o700)
