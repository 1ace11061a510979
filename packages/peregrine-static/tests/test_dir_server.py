"""``DirServer``: what it serves, what it declines, and how it composes with a handler."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _support import LARGE, OLD_MTIME_S, body, fetch, make_request, serve, write

from peregrine_core import Handler, Request, Response
from peregrine_static import DirServer
from peregrine_static._cache import FileCache
from peregrine_static._respond import FileResponder, Variant


@pytest.fixture
def server(root: Path) -> DirServer:
    return DirServer(root)


# --- what is served ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content", "content_type"),
    [
        ("/hello.txt", b"hello world\n", "text/plain; charset=utf-8"),
        ("/style.css", b"body{}\n", "text/css; charset=utf-8"),
        ("/index.html", b"<h1>home</h1>\n", "text/html; charset=utf-8"),
        ("/", b"<h1>home</h1>\n", "text/html; charset=utf-8"),
        ("/docs/", b"<h1>docs</h1>\n", "text/html; charset=utf-8"),
        ("/docs/guide.md", b"# Guide\n", "text/markdown; charset=utf-8"),
        ("/noext", b"no extension\n", "application/octet-stream"),
        ("/hello.txt?v=123", b"hello world\n", "text/plain; charset=utf-8"),
        ("/hello.txt?", b"hello world\n", "text/plain; charset=utf-8"),
        ("/docs/?a=1", b"<h1>docs</h1>\n", "text/html; charset=utf-8"),
        ("//hello.txt", b"hello world\n", "text/plain; charset=utf-8"),
        ("/./hello.txt", b"hello world\n", "text/plain; charset=utf-8"),
        ("/docs//guide.md", b"# Guide\n", "text/markdown; charset=utf-8"),
        ("/%68%65%6c%6c%6f.txt", b"hello world\n", "text/plain; charset=utf-8"),
        ("/docs/guide%2Emd", b"# Guide\n", "text/markdown; charset=utf-8"),
        ("http://example.test/hello.txt", b"hello world\n", "text/plain; charset=utf-8"),
    ],
)
def test_serves_files_with_their_content_type(
    server: DirServer, target: str, content: bytes, content_type: str
) -> None:
    handled, resp = serve(server, target)
    assert handled is True
    assert resp.status == 200
    assert resp.get_header("Content-Type") == content_type
    assert resp.get_header("Accept-Ranges") == "bytes"
    assert body(resp) == content


def test_serves_a_name_that_needs_percent_encoding(root: Path, server: DirServer) -> None:
    write(root / "a file é#?.txt", "spaced")
    resp = fetch(server, "/a%20file%20%C3%A9%23%3F.txt")
    assert resp.status == 200 and body(resp) == b"spaced"


def test_a_file_name_is_case_sensitive(server: DirServer) -> None:
    assert fetch(server, "/HELLO.txt").status == 404


def test_file_with_trailing_slash_is_not_found(server: DirServer) -> None:
    handled, _ = serve(server, "/hello.txt/")
    assert handled is False


def test_special_files_are_not_served(root: Path, server: DirServer) -> None:
    os.mkfifo(root / "pipe")
    handled, _ = serve(server, "/pipe")
    assert handled is False


def test_unreadable_file_is_declined(root: Path, server: DirServer) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (root / "hello.txt").chmod(0)
    handled, _ = serve(server, "/hello.txt")
    assert handled is False


# --- methods -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "get"])
@pytest.mark.parametrize("target", ["/hello.txt", "/large.bin", "/docs/", "/docs"])
def test_other_methods_get_405_with_allow(server: DirServer, method: str, target: str) -> None:
    handled, resp = serve(server, target, method=method)
    assert handled is True
    assert resp.status == 405
    assert resp.get_header("Allow") == "GET, HEAD"
    assert resp.file is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_on_a_missing_path_fall_through(server: DirServer, method: str) -> None:
    handled, resp = serve(server, "/api/items", method=method)
    assert handled is False
    assert resp.headers == []


@pytest.mark.parametrize("target", ["/hello.txt", "/large.bin", "/docs/", "/data100.bin"])
def test_head_has_the_headers_of_get(server: DirServer, target: str) -> None:
    get = fetch(server, target)
    head = fetch(server, target, method="HEAD")
    assert head.status == get.status == 200
    assert head.headers == get.headers
    # The server frames HEAD with the Content-Length of the body set and sends no body.
    assert head.content_length == get.content_length
    assert body(head) == body(get)


# --- directories ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/docs", "/docs/"),
        ("//docs", "/docs/"),
        ("/./docs", "/docs/"),
        ("/docs?a=1&b=2", "/docs/?a=1&b=2"),
        ("/docs?", "/docs/?"),
        ("/docs?q=a b<c>", "/docs/?q=a%20b%3Cc%3E"),
        ("/docs?next=//evil.com/x", "/docs/?next=//evil.com/x"),
        ("/docs_link", "/docs_link/"),
        ("/%64ocs", "/docs/"),
    ],
)
def test_directory_without_slash_redirects_permanently(server: DirServer, target: str, location: str) -> None:
    handled, resp = serve(server, target)
    assert handled is True
    assert resp.status == 301
    assert resp.get_header("Location") == location
    assert resp.file is None


def test_redirect_location_quotes_the_directory_name(root: Path, server: DirServer) -> None:
    write(root / "two words" / "ü" / "index.html", "x")
    resp = fetch(server, "/two%20words/%C3%BC")
    assert resp.status == 301
    assert resp.get_header("Location") == "/two%20words/%C3%BC/"


def test_directory_without_index_or_listing_is_declined(server: DirServer) -> None:
    for target in ("/empty/", "/empty"):
        handled, resp = serve(server, target)
        assert handled is False and resp.headers == []


def test_index_files_are_tried_in_order(root: Path) -> None:
    write(root / "docs" / "index.htm", "htm")
    assert body(fetch(DirServer(root, index_files=("index.htm", "index.html")), "/docs/")) == b"htm"
    assert (
        body(fetch(DirServer(root, index_files=("index.html", "index.htm")), "/docs/")) == b"<h1>docs</h1>\n"
    )
    assert body(fetch(DirServer(root, index_files=("missing.html", "index.htm")), "/docs/")) == b"htm"


def test_an_index_that_is_a_directory_is_skipped(root: Path) -> None:
    (root / "empty" / "index.html").mkdir()
    handled, _ = serve(DirServer(root), "/empty/")
    assert handled is False


def test_index_symlink_leading_outside_is_not_served(root: Path, outside: Path) -> None:
    (root / "empty" / "index.html").symlink_to(outside / "index.html")
    handled, _ = serve(DirServer(root), "/empty/")
    assert handled is False


# --- prefix --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/static", "/static/"])
def test_prefix_mounts_the_tree(root: Path, prefix: str) -> None:
    server = DirServer(root, url_prefix=prefix)
    assert server.url_prefix == "/static/"
    assert body(fetch(server, "/static/hello.txt")) == b"hello world\n"
    assert body(fetch(server, "/static/")) == b"<h1>home</h1>\n"
    redirect = fetch(server, "/static?x=1")
    assert redirect.status == 301 and redirect.get_header("Location") == "/static/?x=1"
    redirect = fetch(server, "/static/docs")
    assert redirect.get_header("Location") == "/static/docs/"
    for outside_prefix in ("/hello.txt", "/staticx/hello.txt", "/Static/hello.txt", "/", "*"):
        handled, resp = serve(server, outside_prefix)
        assert handled is False and resp.headers == []


def test_nested_prefix(root: Path) -> None:
    server = DirServer(root, url_prefix="/a/b/")
    assert body(fetch(server, "/a/b/docs/guide.md")) == b"# Guide\n"
    assert serve(server, "/a/hello.txt")[0] is False
    assert fetch(server, "/a/b").get_header("Location") == "/a/b/"


def test_bare_prefix_without_index_or_listing_is_declined(root: Path) -> None:
    server = DirServer(root, url_prefix="/static", index_files=())
    assert serve(server, "/static")[0] is False


# --- hidden files and symbolic links -------------------------------------------------------


def test_show_hidden_serves_dot_files_but_never_dot_dot(root: Path) -> None:
    server = DirServer(root, show_hidden=True)
    assert body(fetch(server, "/.hidden.txt")) == b"hidden\n"
    assert body(fetch(server, "/.git/config")) == b"[core]\n"
    assert fetch(server, "/../outside/secret.txt").status == 404
    assert fetch(server, "/.git/../../outside/secret.txt").status == 404


def test_symlinks_inside_the_root_are_followed_by_default(server: DirServer) -> None:
    assert body(fetch(server, "/link_in")) == b"hello world\n"
    assert body(fetch(server, "/docs_link/guide.md")) == b"# Guide\n"
    assert body(fetch(server, "/docs_link/")) == b"<h1>docs</h1>\n"


@pytest.mark.parametrize("target", ["/link_in", "/docs_link/guide.md", "/docs_link/", "/link_out"])
def test_never_policy_refuses_every_symlink(root: Path, target: str) -> None:
    handled, _ = serve(DirServer(root, follow_symlinks="never"), target)
    assert handled is False


def test_never_policy_still_serves_plain_files(root: Path) -> None:
    assert body(fetch(DirServer(root, follow_symlinks="never"), "/hello.txt")) == b"hello world\n"


def test_symlink_chain_that_ends_outside_is_refused(root: Path, outside: Path) -> None:
    (root / "hop1").symlink_to("hop2")
    (root / "hop2").symlink_to(outside / "secret.txt")
    assert serve(DirServer(root), "/hop1")[0] is False


def test_symlink_loop_is_declined(root: Path) -> None:
    (root / "loop_a").symlink_to("loop_b")
    (root / "loop_b").symlink_to("loop_a")
    assert serve(DirServer(root), "/loop_a")[0] is False


def test_root_given_through_a_symlink_is_resolved_once(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    server = DirServer(alias)
    assert server.root == str(root)
    assert body(fetch(server, "/hello.txt")) == b"hello world\n"
    assert fetch(server, "/link_out").status == 404


def test_symlink_to_the_root_itself_is_inside(root: Path) -> None:
    (root / "self").symlink_to(root)
    assert body(fetch(DirServer(root), "/self/hello.txt")) == b"hello world\n"


def test_swapping_a_checked_file_for_a_symlink_before_open_is_caught(root: Path, outside: Path) -> None:
    # Simulate the race: the walk saw a regular file; by the time it is opened the name is a
    # symbolic link to a file outside. The inode check after open refuses it.
    target = root / "hello.txt"
    st = target.stat()
    target.unlink()
    target.symlink_to(outside / "secret.txt")
    responder = FileResponder(FileCache(0), 64 * 1024, None)
    resp = Response()
    assert (
        responder.respond(
            make_request("/hello.txt"), resp, Variant(str(target), st), "text/plain", vary=False
        )
        is False
    )
    assert resp.headers == [] and resp.body == b""


# --- the small-file cache ------------------------------------------------------------------


def test_cache_is_used_while_stat_is_unchanged(root: Path, server: DirServer) -> None:
    path = write(root / "cached.txt", "aaaa")
    assert body(fetch(server, "/cached.txt")) == b"aaaa"
    # Same size, same mtime: indistinguishable by stat, so the cached bytes are served.
    path.write_bytes(b"bbbb")
    os.utime(path, (OLD_MTIME_S, OLD_MTIME_S))
    assert body(fetch(server, "/cached.txt")) == b"aaaa"


@pytest.mark.parametrize(
    "change",
    ["new_mtime", "new_size", "renamed_over", "deleted"],
)
def test_cache_revalidates_when_the_file_changes_on_disk(root: Path, server: DirServer, change: str) -> None:
    path = write(root / "cached.txt", "aaaa")
    assert body(fetch(server, "/cached.txt")) == b"aaaa"
    if change == "new_mtime":
        write(path, "bbbb", OLD_MTIME_S + 1)
        expected: bytes | None = b"bbbb"
    elif change == "new_size":
        write(path, "bbbbb")
        expected = b"bbbbb"
    elif change == "renamed_over":
        write(root / "tmp.txt", "cccc")  # same size and mtime, new inode
        os.replace(root / "tmp.txt", path)
        expected = b"cccc"
    else:
        path.unlink()
        expected = None
    resp = fetch(server, "/cached.txt")
    if expected is None:
        assert resp.status == 404
    else:
        assert resp.status == 200
        assert body(resp) == expected


def test_recently_modified_file_is_not_cached(root: Path, server: DirServer) -> None:
    path = root / "fresh.txt"
    path.write_bytes(b"aaaa")
    stamp = path.stat().st_mtime_ns
    assert body(fetch(server, "/fresh.txt")) == b"aaaa"
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(stamp, stamp))  # a rewrite within one timestamp tick
    assert body(fetch(server, "/fresh.txt")) == b"bbbb"


def test_disabled_cache_reads_every_time(root: Path) -> None:
    server = DirServer(root, cache_budget_bytes=0)
    path = write(root / "cached.txt", "aaaa")
    assert body(fetch(server, "/cached.txt")) == b"aaaa"
    path.write_bytes(b"bbbb")
    os.utime(path, (OLD_MTIME_S, OLD_MTIME_S))
    assert body(fetch(server, "/cached.txt")) == b"bbbb"


def test_files_above_the_memory_limit_go_by_sendfile(root: Path) -> None:
    server = DirServer(root, cache_max_file_bytes=10)
    small = fetch(server, "/style.css")  # 7 bytes
    big = fetch(server, "/hello.txt")  # 12 bytes
    assert small.file is None and big.file is not None
    assert body(small) == b"body{}\n" and body(big) == b"hello world\n"


def test_concurrent_requests_share_one_server_safely(root: Path) -> None:
    server = DirServer(root, cache_budget_bytes=150 * 1024)
    for i in range(40):
        write(root / f"f{i}.bin", bytes([i]) * (i * 100 + 1))
    errors: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for j in range(200):
            i = (n * 7 + j) % 40
            resp = fetch(server, f"/f{i}.bin")
            data = body(resp)
            if data != bytes([i]) * (i * 100 + 1):
                with lock:
                    errors.append(f"f{i}")
            large = fetch(server, "/large.bin", headers=[("Range", f"bytes={j}-{j + 9}")])
            if body(large) != LARGE[j : j + 10]:
                with lock:
                    errors.append("large")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert errors == []
    assert server._cache.size_bytes <= 150 * 1024


# --- composition ---------------------------------------------------------------------------


class App:
    """A handler that serves files under /static/ and answers its own routes otherwise."""

    def __init__(self, root: Path) -> None:
        self.files = DirServer(root, url_prefix="/static/")

    def handle_request(self, req: Request, resp: Response) -> None:
        if self.files.serve(req, resp):
            return
        if req.path == "/api":
            resp.add_header("Content-Type", "application/json")
            resp.set_body(b'{"ok": true}')
            return
        resp.status = 404
        resp.set_body(b"app 404")


def test_serve_composes_with_a_handler_falling_through(root: Path) -> None:
    app = App(root)
    assert body(fetch(app, "/static/hello.txt")) == b"hello world\n"
    api = fetch(app, "/api", method="POST")
    assert api.status == 200 and body(api) == b'{"ok": true}'
    own_404 = fetch(app, "/static/missing.txt")
    assert own_404.status == 404 and body(own_404) == b"app 404"
    traversal = fetch(app, "/static/../outside/secret.txt")
    assert traversal.status == 404 and body(traversal) == b"app 404"


def test_dir_server_is_a_valid_handler(server: DirServer) -> None:
    assert isinstance(server, Handler)


def test_repr_names_root_and_prefix(server: DirServer, root: Path) -> None:
    assert repr(server) == f"DirServer({str(root)!r}, url_prefix='/')"


def test_request_objects_are_not_modified(server: DirServer) -> None:
    req = make_request("/hello.txt?x=1", headers=[("Range", "bytes=0-1")])
    before = (req.method, req.target, list(req.headers))
    server.handle_request(req, resp := Response())
    body(resp)
    assert (req.method, req.target, list(req.headers)) == before
