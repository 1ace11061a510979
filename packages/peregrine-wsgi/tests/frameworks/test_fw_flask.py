"""A real Flask application (``fw_flask_site``) served by ``python -m peregrine_wsgi``.

Real sockets on 127.0.0.1, real clients (``http.client``, ``curl``, ``httpx``), and a timeout
on every wait. What Flask must see and answer: path parameters and query strings (UTF-8 in
percent-encoding), JSON in and out, urlencoded and multipart forms, a 200 MiB upload that the
server spools to disk (its RSS, read from ``/proc``, stays flat), a chunked upload, streamed
responses that reach the client piece by piece, a generator closed explicitly when the client
goes away, streams that fail or stop short after their head went out (the connection ends
promptly, the body unterminated), errors that leak nothing, HEAD, static files through
``send_file`` (conditional and range requests), a mount point (``--root-path``) and the core's
``peregrine wsgi`` command.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from frameworks.fw_support import HERE, TIMEOUT, ServerProcess, module_name, running
from peregrine_core.testing import RssSampler

MIB: Final = 1024 * 1024
UPLOAD_BYTES: Final = 200 * MIB
#: Growth of the server's RSS allowed while it receives and Flask reads the 200 MiB upload.
RSS_GROWTH_LIMIT_BYTES: Final = 60 * MIB
#: How soon the server must close a connection whose streamed body broke its framing.
CLOSE_WITHIN_SECONDS: Final = 3.0
CSS: Final = (HERE / "flask_static" / "app.css").read_bytes()

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def connect(server: ServerProcess) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)


def get_json(conn: http.client.HTTPConnection, target: str) -> tuple[int, Any]:
    conn.request("GET", target)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.getheader("Content-Type") == "application/json", body
    return resp.status, json.loads(body)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``curl`` with bounded times; fails on a transport error (not on an HTTP status)."""
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", str(TIMEOUT), "--noproxy", "*", *args],
        capture_output=True,
        timeout=TIMEOUT + 5,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


# --- routing, JSON, forms --------------------------------------------------------------------


def test_path_parameters_and_utf8_query_reach_the_view(flask_server: ServerProcess) -> None:
    conn = connect(flask_server)
    try:
        status, data = get_json(conn, "/users/42/posts/caf%C3%A9?tag=a&tag=b&q=%C3%BC+x")
        assert status == 200
        assert data == {
            "user_id": 42,
            "slug": "caf\u00e9",
            "args": {"tag": ["a", "b"], "q": ["\u00fc x"]},
            "host": f"127.0.0.1:{flask_server.port}",
            "scheme": "http",
            # Werkzeug shows the URL as an IRI: percent-encoded UTF-8 decoded.
            "url": f"http://127.0.0.1:{flask_server.port}/users/42/posts/caf\u00e9?tag=a&tag=b&q=\u00fc+x",
            "remote_addr": "127.0.0.1",
            "method": "GET",
        }
        # The same connection again (keep-alive): a converter that does not match is Flask's 404.
        conn.request("GET", "/users/not-a-number/posts/x")
        resp = conn.getresponse()
        assert resp.status == 404
        assert b"Not Found" in resp.read()
    finally:
        conn.close()


def test_request_headers_arrive_as_latin1_strings_and_two_cookies_go_out_apart(
    flask_server: ServerProcess,
) -> None:
    conn = connect(flask_server)
    try:
        conn.putrequest("GET", "/headers")
        conn.putheader("X-Name", "caf\u00e9".encode())  # UTF-8 bytes on the wire
        conn.putheader("X-Multi", "a")
        conn.putheader("X-Multi", "b")
        conn.putheader("Cookie", "one=1")
        conn.putheader("Cookie", "two=2")
        conn.endheaders()
        resp = conn.getresponse()
        data = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 200
    # PEP 3333: header values are the bytes decoded as latin-1; repeated fields are joined
    # with commas (RFC 9110 §5.3), cookies with "; " (RFC 6265 §5.4).
    assert data == {"x_name_utf8": "caf\u00e9", "x_multi": "a,b", "cookies": {"one": "1", "two": "2"}}
    assert resp.msg.get_all("Set-Cookie") == ["first=1; HttpOnly; Path=/", "second=2; Path=/headers"]
    assert resp.getheader("X-Reply") == "caf\u00e9"  # sent as the latin-1 byte E9


def test_json_post_with_httpx_is_parsed_and_answered_as_json(flask_server: ServerProcess) -> None:
    item = {"name": "kr\u00e4he", "tags": ["bird", "black"], "prices": [1.5, 2.25]}
    with httpx.Client(base_url=flask_server.url, timeout=TIMEOUT) as client:
        resp = client.post("/api/items", json=item)
        assert resp.status_code == 201
        assert resp.headers["location"] == "/api/items/kr%C3%A4he"  # Werkzeug's IRI-to-URI
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == {
            "name": "kr\u00e4he",
            "name_upper": "KR\u00c4HE",
            "tag_count": 2,
            "total": 3.75,
            "content_type": "application/json",
        }

        bad = client.post("/api/items", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400
        assert "Bad Request" in bad.text

        unprocessable = client.post("/api/items", json={"tags": []})
        assert unprocessable.status_code == 422


@needs_curl
def test_urlencoded_form_post_with_curl_keeps_repeated_and_utf8_fields(flask_server: ServerProcess) -> None:
    done = curl(
        "--data-urlencode",
        "name=J\u00fcrgen & Sons",
        "--data-urlencode",
        "color=red",
        "--data-urlencode",
        "color=green",
        "--data-urlencode",
        "note=a=b;c",
        f"{flask_server.url}/form",
    )
    assert json.loads(done.stdout) == {
        "fields": {"name": ["J\u00fcrgen & Sons"], "color": ["red", "green"], "note": ["a=b;c"]},
        "files": {},
        "content_type": "application/x-www-form-urlencoded",
    }


@needs_curl
def test_multipart_form_post_with_curl_delivers_fields_and_files_intact(
    flask_server: ServerProcess, tmp_path: Path
) -> None:
    binary = os.urandom(3 * MIB + 17)  # bigger than the core's body buffer: the body is spooled
    text = "z\u00fcrich\r\n--boundary-lookalike--\r\n".encode() * 100
    (tmp_path / "data.bin").write_bytes(binary)
    (tmp_path / "notes.txt").write_bytes(text)
    done = curl(
        "-F",
        "title=Holiday \u00e9t\u00e9",
        "-F",
        f"attachment=@{tmp_path / 'data.bin'};type=application/octet-stream",
        "-F",
        f"attachment=@{tmp_path / 'notes.txt'};type=text/plain",
        f"{flask_server.url}/form",
    )
    assert json.loads(done.stdout) == {
        "fields": {"title": ["Holiday \u00e9t\u00e9"]},
        "files": {
            "attachment": [
                {
                    "filename": "data.bin",
                    "content_type": "application/octet-stream",
                    "size": len(binary),
                    "sha256": hashlib.sha256(binary).hexdigest(),
                },
                {
                    "filename": "notes.txt",
                    "content_type": "text/plain",
                    "size": len(text),
                    "sha256": hashlib.sha256(text).hexdigest(),
                },
            ]
        },
        "content_type": "multipart/form-data",
    }


def test_head_answers_the_get_headers_without_a_body_and_keeps_the_connection(
    flask_server: ServerProcess,
) -> None:
    conn = connect(flask_server)
    try:
        for target in ("/missing", "/static/app.css"):  # an abort() page, a send_file() file
            conn.request("GET", target)
            get = conn.getresponse()
            get_body = get.read()
            conn.request("HEAD", target)
            head = conn.getresponse()
            assert head.status == get.status
            assert head.read() == b""
            assert head.getheader("Content-Type") == get.getheader("Content-Type")
            # RFC 9110 §9.3.2: the GET's fields; a Content-Length, if sent, is the GET body's.
            assert head.getheader("Content-Length") in (None, str(len(get_body)))
        # Nothing of a body was sent after the HEAD answers: the next response parses cleanly.
        status, data = get_json(conn, "/users/2/posts/y")
        assert (status, data["user_id"], data["slug"]) == (200, 2, "y")
    finally:
        conn.close()


# --- large and chunked uploads ---------------------------------------------------------------


def test_200_mib_upload_streamed_by_the_client_keeps_the_server_rss_flat(
    flask_server: ServerProcess,
) -> None:
    block = hashlib.sha256(b"seed").digest() * (MIB // 32)  # 1 MiB, not all one byte
    expected = hashlib.sha256()
    for _ in range(UPLOAD_BYTES // MIB):
        expected.update(block)
    conn = connect(flask_server)
    try:
        get_json(conn, "/users/1/posts/warm-up")  # the view code and JSON paths are loaded
        baseline = flask_server.rss_bytes()
        with RssSampler(flask_server) as sampler:
            conn.putrequest("POST", "/upload")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(UPLOAD_BYTES))
            conn.endheaders()
            for _ in range(UPLOAD_BYTES // MIB):
                conn.send(block)
            conn.sock.settimeout(60.0)  # the server may still be reading the spooled body
            resp = conn.getresponse()
            body = resp.read()
        after = flask_server.rss_bytes()
    finally:
        conn.close()
    assert resp.status == 200, body
    assert json.loads(body) == {
        "length": UPLOAD_BYTES,
        "sha256": expected.hexdigest(),
        "content_length": UPLOAD_BYTES,
        "transfer_encoding": None,
    }
    growth = sampler.peak - baseline
    assert growth < RSS_GROWTH_LIMIT_BYTES, (
        f"server RSS grew by {growth / MIB:.1f} MiB during a {UPLOAD_BYTES // MIB} MiB upload "
        f"(baseline {baseline / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB)"
    )
    assert after - baseline < RSS_GROWTH_LIMIT_BYTES, f"RSS after the upload: {after / MIB:.1f} MiB"


def test_chunked_upload_from_httpx_reaches_flask_whole_with_its_length(flask_server: ServerProcess) -> None:
    pieces = [os.urandom(n) for n in (1, 65_536, 1_000_000, 7, 2 * MIB)]

    def body() -> Iterator[bytes]:
        yield from pieces

    whole = b"".join(pieces)
    with httpx.Client(base_url=flask_server.url, timeout=TIMEOUT) as client:
        resp = client.post("/upload", content=body(), headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    # The server de-chunks the body before the application runs, so it knows the length: the
    # application must get all of it (Werkzeug reads nothing from a body of unknown length
    # unless the server marks its input as terminated).
    assert (data["length"], data["sha256"]) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert data["content_length"] in (len(whole), None)


# --- streamed responses ----------------------------------------------------------------------


def test_streamed_response_first_piece_arrives_while_the_generator_still_runs(
    flask_server: ServerProcess,
) -> None:
    token = uuid.uuid4().hex
    conn = connect(flask_server)
    other = connect(flask_server)
    try:
        conn.request("GET", f"/stream/{token}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert resp.getheader("Transfer-Encoding") == "chunked"
        # The generator now waits (up to 10 s) for /release: a server that collected the whole
        # body before sending would make this read time out.
        started = time.monotonic()
        first = resp.read(len(b"first piece\n"))
        assert first == b"first piece\n"
        assert time.monotonic() - started < 5.0
        other.request("POST", f"/release/{token}")
        release = other.getresponse()
        assert (release.status, release.read()) == (200, b"released\n")
        rest = resp.read()
        assert rest == b"released\npiece 0\npiece 1\npiece 2\n"
        assert get_json(other, f"/ended/{token}") == (200, {"ended": "exhausted"})
    finally:
        conn.close()
        other.close()


def test_200_mib_streamed_download_waits_for_a_slow_client_with_the_server_rss_flat(
    flask_server: ServerProcess,
) -> None:
    """The generator is not run ahead of the client: the server holds a bounded amount."""
    block = hashlib.sha256(b"download").digest() * (MIB // 32)  # as fw_flask_site.download
    expected = hashlib.sha256()
    for _ in range(UPLOAD_BYTES // MIB):
        expected.update(block)
    conn = connect(flask_server)
    try:
        get_json(conn, "/users/1/posts/warm-up")
        baseline = flask_server.rss_bytes()
        with RssSampler(flask_server) as sampler:
            conn.request("GET", f"/download?mib={UPLOAD_BYTES // MIB}")
            resp = conn.getresponse()
            assert resp.status == 200
            digest = hashlib.sha256(first := resp.read(MIB))
            time.sleep(1.0)  # not reading: a server without backpressure would buffer it all
            stalled_peak = sampler.peak
            length = len(first)
            while piece := resp.read(4 * MIB):
                digest.update(piece)
                length += len(piece)
    finally:
        conn.close()
    assert (length, digest.hexdigest()) == (UPLOAD_BYTES, expected.hexdigest())
    for label, peak in (("while the client paused", stalled_peak), ("overall", sampler.peak)):
        growth = peak - baseline
        assert growth < RSS_GROWTH_LIMIT_BYTES, f"server RSS grew by {growth / MIB:.1f} MiB {label}"


def test_generator_is_closed_when_the_client_goes_away_mid_stream(flask_server: ServerProcess) -> None:
    """PEP 3333: the server calls the iterable's close(), whatever ends the response."""
    token = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", flask_server.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET /stream/{token}?endless=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"first piece" not in received:
            chunk = sock.recv(65_536)
            assert chunk, f"connection closed before the first piece: {received!r}"
            received += chunk
        # Gone with a reset (SO_LINGER 0) while the generator waits for the release.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn = connect(flask_server)
    try:
        conn.request("POST", f"/release/{token}")
        assert conn.getresponse().read() == b"released\n"
        # The generator now yields without end: only the server's close() stops it.
        assert get_json(conn, f"/ended/{token}?wait=5") == (200, {"ended": "closed"})
    finally:
        conn.close()


def test_exception_in_the_generator_after_the_first_piece_truncates_the_response(
    flask_server: ServerProcess,
) -> None:
    token = uuid.uuid4().hex
    conn = connect(flask_server)
    other = connect(flask_server)
    try:
        conn.request("GET", f"/broken-stream/{token}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read(len(b"partial body\n")) == b"partial body\n"  # the head is out
        other.request("POST", f"/release/{token}")
        assert other.getresponse().read() == b"released\n"
        # PEP 3333: an error after the head was sent cannot change the response; the body
        # must end unterminated (promptly), never as a complete chunked body.
        conn.sock.settimeout(CLOSE_WITHIN_SECONDS)
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
        flask_server.wait_for_log("the generator failed after the first piece")
        assert get_json(other, "/users/3/posts/after")[0] == 200  # the server is still fine
    finally:
        conn.close()
        other.close()


def test_generator_shorter_than_its_content_length_ends_the_connection_unframed(
    flask_server: ServerProcess,
) -> None:
    token = uuid.uuid4().hex
    conn = connect(flask_server)
    other = connect(flask_server)
    try:
        conn.request("GET", f"/short-stream/{token}")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Content-Length")) == (200, "100")
        assert resp.read(10) == b"0123456789"  # the head and first piece are out
        other.request("POST", f"/release/{token}")
        assert other.getresponse().read() == b"released\n"
        # The body ends 80 bytes short: the connection must end there (promptly, not at some
        # later timeout), so the client can tell.
        conn.sock.settimeout(CLOSE_WITHIN_SECONDS)
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"abcdefghij"
    finally:
        conn.close()
        other.close()


def test_stream_with_context_generator_reads_the_request_while_it_is_sent(
    flask_server: ServerProcess,
) -> None:
    with httpx.Client(base_url=flask_server.url, timeout=TIMEOUT) as client:
        resp = client.get("/greeting", params={"name": "R\u00e9mi"})
    assert resp.status_code == 200
    assert resp.text == f"hello R\u00e9mi at {flask_server.url}/greeting\n"


# --- errors ----------------------------------------------------------------------------------


def test_view_raising_is_flask_500_page_with_nothing_of_the_exception(flask_server: ServerProcess) -> None:
    conn = connect(flask_server)
    try:
        conn.request("GET", "/boom")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 500
    assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"Internal Server Error" in body
    assert b"Traceback" not in body
    assert b"secret-detail-6f1c" not in body
    # Flask logs the exception to wsgi.errors, which reaches the server's error output.
    flask_server.wait_for_log(r"RuntimeError: secret-detail-6f1c")


@needs_curl
def test_abort_404_is_flask_not_found_page(flask_server: ServerProcess) -> None:
    done = curl("--include", f"{flask_server.url}/missing")
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")  # the reason phrase is the server's to choose
    assert b"\r\nContent-Type: text/html; charset=utf-8" in head
    assert b"<h1>Not Found</h1>" in body
    assert b"The requested URL was not found on the server." in body


# --- static files ----------------------------------------------------------------------------


def test_static_file_is_served_whole_then_revalidated_then_by_range(flask_server: ServerProcess) -> None:
    conn = connect(flask_server)
    try:
        conn.request("GET", "/static/app.css")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, CSS)
        assert resp.getheader("Content-Type") == "text/css; charset=utf-8"
        assert resp.getheader("Content-Length") == str(len(CSS))
        etag = resp.getheader("ETag")
        assert etag is not None

        conn.request("GET", "/static/app.css", headers={"If-None-Match": etag})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (304, b"")

        conn.request("GET", "/static/app.css", headers={"Range": "bytes=3-12"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (206, CSS[3:13])
        assert resp.getheader("Content-Range") == f"bytes 3-12/{len(CSS)}"

        conn.request("GET", "/static/app.css", headers={"Range": f"bytes={len(CSS) - 5}-"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (206, CSS[-5:])
    finally:
        conn.close()


# --- command lines and mount points ----------------------------------------------------------


def test_root_path_mounts_the_app_and_flask_builds_its_urls_under_it(tmp_path: Path) -> None:
    app = f"{module_name('fw_flask_site')}:app"
    with running(app, "--root-path", "/mount/", cwd=tmp_path) as server:
        conn = connect(server)
        try:
            status, data = get_json(conn, "/mount/users/5/posts/x")
            assert (status, data["user_id"], data["url"]) == (200, 5, f"{server.url}/mount/users/5/posts/x")
            conn.request("GET", "/mount/browser")
            resp = conn.getresponse()
            page = resp.read().decode()
            assert resp.status == 200
            assert 'href="/mount/static/app.css"' in page
            assert 'action="/mount/browser/result"' in page
            conn.request("GET", "/mount/static/app.css")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, CSS)
        finally:
            conn.close()


def test_peregrine_wsgi_command_of_the_core_serves_flask_mounted_by_script_name(tmp_path: Path) -> None:
    app = f"{module_name('fw_flask_site')}:app"
    command = ("-m", "peregrine_core", "wsgi")
    with running(app, cwd=tmp_path, env={"SCRIPT_NAME": "/under"}, command=command) as server:
        resp = httpx.get(f"{server.url}/under/greeting", params={"name": "core"}, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.text == f"hello core at {server.url}/under/greeting\n"
