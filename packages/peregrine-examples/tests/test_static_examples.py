"""The static examples over the wire: every asset with its type, validators that work, and
both examples running as modules and as console scripts from any current directory."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine_core import Server
from peregrine_core.testing import serve
from peregrine_examples import dirserver, fileserver

from examples_support import TIMEOUT, console_script, start, stop

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
JS = "text/javascript; charset=utf-8"

#: Every file of the dirserver site: URL path, file below the site's folder, Content-Type.
DIRSERVER_ASSETS = [
    ("/", "index.html", HTML),
    ("/index.html", "index.html", HTML),
    ("/css/main.css", "css/main.css", CSS),
    ("/css/another.css", "css/another.css", CSS),
    ("/js/main.js", "js/main.js", JS),
    ("/js/more.js", "js/more.js", JS),
]
FILESERVER_PAGE = b"<html><body><h1>Hello!</h1></body></html>"


class Reply:
    """A response read off the wire: status, headers (names lower-cased), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _request(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


@pytest.fixture
def dir_srv() -> Iterator[Server]:
    with serve(dirserver.make_handler()) as srv:
        yield srv


@pytest.fixture
def file_srv() -> Iterator[Server]:
    with serve(fileserver.make_handler()) as srv:
        yield srv


# --- the dirserver site -------------------------------------------------------------------


def test_dirserver_site_holds_exactly_the_assets_listed_here() -> None:
    on_disk = {p.relative_to(dirserver.STATIC_DIR).as_posix() for p in dirserver.STATIC_DIR.rglob("*")}
    files = {name for name in on_disk if (dirserver.STATIC_DIR / name).is_file()}
    assert files == {name for _, name, _ in DIRSERVER_ASSETS}


def test_index_html_links_both_stylesheets_and_both_scripts() -> None:
    page = (dirserver.STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)">', page) == ["css/main.css", "css/another.css"]
    assert re.findall(r'<script src="([^"]+)"></script>', page) == ["js/main.js", "js/more.js"]


@pytest.mark.parametrize(("path", "name", "content_type"), DIRSERVER_ASSETS)
def test_dirserver_serves_every_asset_with_its_content_type(
    dir_srv: Server, path: str, name: str, content_type: str
) -> None:
    reply = _request(dir_srv.port, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    assert reply.body == (dirserver.STATIC_DIR / name).read_bytes()
    assert reply.headers["content-length"] == str(len(reply.body))
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', reply.headers["etag"])
    assert reply.headers["last-modified"].endswith(" GMT")


@pytest.mark.parametrize(("path", "name", "content_type"), DIRSERVER_ASSETS)
def test_dirserver_asset_revalidated_with_its_etag_is_304_without_a_body(
    dir_srv: Server, path: str, name: str, content_type: str
) -> None:
    first = _request(dir_srv.port, path)
    etag = first.headers["etag"]
    again = _request(dir_srv.port, path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["etag"] == etag
    assert "content-type" not in again.headers
    by_date = _request(dir_srv.port, path, headers={"If-Modified-Since": first.headers["last-modified"]})
    assert by_date.status == 304 and by_date.body == b""
    other = _request(dir_srv.port, path, headers={"If-None-Match": '"0-0"'})
    assert other.status == 200 and other.body == first.body


def test_dirserver_head_sends_the_headers_of_get_and_no_body(dir_srv: Server) -> None:
    get = _request(dir_srv.port, "/css/main.css")
    head = _request(dir_srv.port, "/css/main.css", method="HEAD")
    assert head.status == 200 and head.body == b""
    for name in ("content-type", "content-length", "etag", "last-modified"):
        assert head.headers[name] == get.headers[name]


def test_dirserver_ignores_the_query_string(dir_srv: Server) -> None:
    reply = _request(dir_srv.port, "/js/main.js?v=2")
    assert reply.status == 200
    assert reply.body == (dirserver.STATIC_DIR / "js" / "main.js").read_bytes()


@pytest.mark.parametrize(
    "path", ["/missing.html", "/css/", "/css", "/../dirserver.py", "/%2e%2e/dirserver.py", "/js/main.js/"]
)
def test_dirserver_answers_404_for_anything_but_its_files(dir_srv: Server, path: str) -> None:
    reply = _request(dir_srv.port, path)
    assert reply.status == 404
    assert reply.body == b"404 Not Found\n"


def test_dirserver_refuses_other_methods_on_a_file_with_405(dir_srv: Server) -> None:
    reply = _request(dir_srv.port, "/index.html", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


def test_dirserver_serves_a_single_range(dir_srv: Server) -> None:
    reply = _request(dir_srv.port, "/js/more.js", headers={"Range": "bytes=0-9"})
    data = (dirserver.STATIC_DIR / "js" / "more.js").read_bytes()
    assert reply.status == 206
    assert reply.body == data[:10]
    assert reply.headers["content-range"] == f"bytes 0-9/{len(data)}"


# --- the fileserver page ------------------------------------------------------------------


def test_fileserver_page_is_the_original_bytes() -> None:
    assert fileserver.PAGE.read_bytes() == FILESERVER_PAGE


@pytest.mark.parametrize("path", ["/", "/example.html", "/any/path?x=1", "/%2e%2e/etc/passwd"])
def test_fileserver_answers_every_path_with_the_page(file_srv: Server, path: str) -> None:
    reply = _request(file_srv.port, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == HTML
    assert reply.headers["content-length"] == str(len(FILESERVER_PAGE))
    assert reply.body == FILESERVER_PAGE


def test_fileserver_page_revalidated_with_its_etag_is_304_without_a_body(file_srv: Server) -> None:
    etag = _request(file_srv.port, "/").headers["etag"]
    again = _request(file_srv.port, "/elsewhere", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["etag"] == etag


def test_fileserver_refuses_other_methods_with_405(file_srv: Server) -> None:
    reply = _request(file_srv.port, "/", method="DELETE")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


# --- running the examples -----------------------------------------------------------------


def _listening_port(line: str) -> int:
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert match is not None, f"unexpected first line: {line!r}"
    port = int(match.group(1))
    assert port != 0
    return port


def _check_dirserver(port: int) -> None:
    for path, name, content_type in DIRSERVER_ASSETS:
        reply = _request(port, path)
        assert (reply.status, reply.headers["content-type"]) == (200, content_type), path
        assert reply.body == (dirserver.STATIC_DIR / name).read_bytes()
        assert _request(port, path, headers={"If-None-Match": reply.headers["etag"]}).status == 304


def _check_fileserver(port: int) -> None:
    reply = _request(port, "/whatever")
    assert (reply.status, reply.headers["content-type"], reply.body) == (200, HTML, FILESERVER_PAGE)
    assert _request(port, "/", headers={"If-None-Match": reply.headers["etag"]}).status == 304


CHECKS = {"dirserver": _check_dirserver, "fileserver": _check_fileserver}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_static_example_runs_as_a_module_from_any_directory(name: str, tmp_path: Path) -> None:
    # The current directory holds nothing of the example: its files come from the package.
    argv = [sys.executable, "-m", f"peregrine_examples.{name}", "--host", "127.0.0.1", "--port", "0"]
    proc, line = start([*argv, "--workers", "2"], cwd=tmp_path)
    try:
        CHECKS[name](_listening_port(line))
    finally:
        assert stop(proc)[0] == 0


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_static_example_runs_as_a_console_script(name: str, tmp_path: Path) -> None:
    script = console_script(f"peregrine-{name}")
    proc, line = start([script, "--host", "127.0.0.1", "--port", "0"], cwd=tmp_path)
    try:
        CHECKS[name](_listening_port(line))
    finally:
        assert stop(proc)[0] == 0


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_static_example_reports_a_port_it_cannot_listen_on(name: str, tmp_path: Path) -> None:
    with serve(fileserver.make_handler()) as busy:
        argv = [sys.executable, "-m", f"peregrine_examples.{name}", "--host", "127.0.0.1"]
        proc = subprocess.run(
            [*argv, "--port", str(busy.port)],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{busy.port}" in proc.stderr
