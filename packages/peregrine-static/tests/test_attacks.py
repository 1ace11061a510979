"""Every known attack on Python static file servers, as a request and an expectation.

Each refused request must be answered exactly like a missing file, so that nobody can tell
"outside the root" from "not there" (aiohttp 3.13 leaked static path components so), and
``serve`` must decline without touching the response so that a caller's fall-through logic
sees nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import body, fetch, serve

from peregrine_static import DirServer

MISSING = "/definitely-not-here.txt"


def _outside_path(tmp_path: Path) -> str:
    return str(tmp_path / "outside" / "secret.txt")


TRAVERSALS = [
    # CVE-2024-23334 (aiohttp), CVE-2017-16762 (sanic): dot segments, raw and encoded
    "/../outside/secret.txt",
    "/../../../../../../etc/passwd",
    "/docs/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/outside/secret.txt",
    "/.%2e/outside/secret.txt",
    "/%2e./outside/secret.txt",
    "/..%2foutside/secret.txt",
    "/..%2Foutside%2Fsecret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/docs/..%2f..%2foutside/secret.txt",
    "/docs%2f..%2f..%2foutside%2fsecret.txt",
    # encoded slash anywhere, even harmless-looking
    "/docs%2fguide.md",
    # backslashes, raw and encoded (Windows separators)
    "/..\\outside\\secret.txt",
    "/%5c..%5coutside%5csecret.txt",
    "/docs\\..\\..\\outside\\secret.txt",
    # NUL and other control characters
    "/hello.txt%00",
    "/hello.txt%00.html",
    "/%00/../outside/secret.txt",
    "/hello%0a.txt",
    # absolute paths smuggled as segments
    "/%2fetc%2fpasswd",
    "//etc/passwd",
    # double encoding is decoded once only: "%252e%252e" is a literal name "%2e%2e"
    "/%252e%252e/outside/secret.txt",
    "/%252e%252e%252foutside%252fsecret.txt",
    # malformed escapes and invalid UTF-8 (overlong "." is not ".")
    "/hello%2.txt",
    "/%zz",
    "/hello.txt%",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "/%e0%80%ae%e0%80%ae/outside/secret.txt",
    # symbolic links: inside -> outside, and a directory link leading out
    "/link_out",
    "/dir_out/secret.txt",
    "/dir_out/",
    "/dir_out",
    # absolute-form target: the path part is what counts
    "http://example.test/../outside/secret.txt",
    # hidden files (dot segments other than "." and "..")
    "/.hidden.txt",
    "/.git/config",
    "/.git/",
    "/docs/../.git/config",
    "/%2ehidden.txt",
    # the precompressed sibling itself when it is a link outside (CVE-2024-42367)
    "/page.js.gz",
]


@pytest.fixture
def server(root: Path) -> DirServer:
    return DirServer(root, listing=True)


@pytest.mark.parametrize("target", TRAVERSALS)
def test_refused_path_is_declined_and_answered_like_a_missing_file(server: DirServer, target: str) -> None:
    handled, resp = serve(server, target)
    assert handled is False
    assert resp.status == 200 and resp.headers == [] and body(resp) == b""  # untouched

    refused = fetch(server, target)
    missing = fetch(server, MISSING)
    assert refused.status == missing.status == 404
    assert refused.headers == missing.headers
    assert body(refused) == body(missing) == b"404 Not Found\n"


@pytest.mark.parametrize("target", TRAVERSALS)
def test_refused_path_never_leaks_outside_content(server: DirServer, target: str) -> None:
    resp = fetch(server, target, headers=[("Accept-Encoding", "gzip, br")])
    content = body(resp)
    assert b"secret" not in content and b"outside" not in content


def test_absolute_filesystem_path_in_url_stays_below_root(server: DirServer, tmp_path: Path) -> None:
    secret = _outside_path(tmp_path)
    for target in ("/" + secret, "/" + secret.lstrip("/"), "//" + secret.lstrip("/")):
        assert fetch(server, target).status == 404


def test_precompressed_sibling_symlink_outside_root_is_not_served(server: DirServer) -> None:
    # CVE-2024-42367: page.js.gz -> ../outside/secret.gz must not replace page.js.
    resp = fetch(server, "/page.js", headers=[("Accept-Encoding", "gzip")])
    assert resp.status == 200
    assert resp.get_header("Content-Encoding") is None
    assert body(resp) == b"page\n"


def test_precompressed_sibling_symlink_inside_root_is_refused_under_never(root: Path) -> None:
    (root / "other.js.gz").write_bytes(b"gz")
    (root / "target.js").write_bytes(b"identity")
    (root / "target.js.gz").symlink_to(root / "other.js.gz")
    strict = DirServer(root, follow_symlinks="never")
    resp = fetch(strict, "/target.js", headers=[("Accept-Encoding", "gzip")])
    assert resp.get_header("Content-Encoding") is None
    assert body(resp) == b"identity"


OPEN_REDIRECTS = [
    # CVE-2021-28861 (http.server) and CVE-2023-28370 (tornado)
    "//evil.com/..%2f..%2f/docs",
    "//evil.com/..%2f..%2f../docs",
    "//evil.com/../docs",
    "//evil.com/%2e%2e/docs",
    "/\\evil.com/%2e%2e%2f",
    "/\\\\evil.com/%2e%2e%2fdocs",
    "/%5cevil.com/%2e%2e/docs",
    "//evil.com",
    "///evil.com",
    "//evil.com?x=1",
    "/%2fevil.com",
    "/%2f%2fevil.com",
    "//docs",
    "////docs",
    "/./docs",
    "//./evil.com",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
@pytest.mark.parametrize("prefix", ["/", "/static/"])
def test_no_location_ever_points_to_another_host(root: Path, target: str, prefix: str) -> None:
    server = DirServer(root, url_prefix=prefix)
    resp = fetch(server, prefix.rstrip("/") + target)
    location = resp.get_header("Location")
    if location is not None:
        assert resp.status == 301
        assert location.startswith(prefix)
        assert not location.startswith(("//", "/\\"))
        assert "\\" not in location and "://" not in location
    body(resp)


def test_directory_named_like_a_host_redirects_to_a_local_path(server: DirServer) -> None:
    resp = fetch(server, "//evil.com")
    assert resp.status == 301
    assert resp.get_header("Location") == "/evil.com/"
    resp = fetch(server, "///evil.com?next=//x")
    assert resp.get_header("Location") == "/evil.com/?next=//x"


def test_listing_escapes_a_file_name_holding_html(root: Path) -> None:
    # CVE-2024-27306 (aiohttp show_index XSS).
    (root / "empty" / "<img src=x onerror=alert(1)>.txt").write_text("x")
    (root / "empty" / "\"quoted' & <b>.txt").write_text("x")
    resp = fetch(DirServer(root, listing=True), "/empty/")
    assert resp.status == 200
    page = body(resp).decode()
    assert "<img" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page
    assert 'href="./%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"' in page
    assert "&quot;quoted&#x27; &amp; &lt;b&gt;.txt" in page
    assert 'href="./%22quoted%27%20%26%20%3Cb%3E.txt"' in page


def test_listed_link_of_a_hostile_name_serves_that_file(root: Path) -> None:
    name = "<img src=x onerror=alert(1)>.txt"
    (root / "empty" / name).write_text("payload as text")
    resp = fetch(DirServer(root, listing=True), "/empty/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt")
    assert resp.status == 200
    assert resp.get_header("Content-Type") == "text/plain; charset=utf-8"
    assert body(resp) == b"payload as text"


def test_listing_omits_links_leading_outside_and_hidden_names(root: Path) -> None:
    page = body(fetch(DirServer(root, listing=True, index_files=()), "/")).decode()
    assert "link_in" in page and "docs_link/" in page
    assert "link_out" not in page and "dir_out" not in page
    assert ".hidden" not in page and ".git" not in page
