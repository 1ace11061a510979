"""A minimal Django project (``fw_django_*``) served by ``python -m peregrine_wsgi``.

The project runs with ``DEBUG = False`` on a SQLite database in a temporary directory,
migrated before the server starts (``fw_django_setup``). Clients are ``httpx`` (with its
cookie jar) and ``http.client``. What Django must see and answer: a view reading the database
(raw SQL and the ORM), a CSRF-protected form (the token round trip; 403 without the token,
without the cookie, or from a foreign Origin, which also checks the scheme and host the
server reports), static files through ``StaticFilesHandler`` (conditional requests, 404),
and the admin: the login page, a login, the index.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

import httpx

from frameworks.fw_support import HERE, TIMEOUT, ServerProcess

SITE_CSS: Final = (HERE / "django_static" / "site.css").read_bytes()
INITIAL_NOTES: Final = [{"id": 1, "body": "first note"}, {"id": 2, "body": "zweite Notiz \u00fc"}]
SUPERUSER: Final = ("admin", "pw-for-tests")  # fw_django_setup.SUPERUSER
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def client(server: ServerProcess, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT, **kwargs)


def csrf_token(page: str) -> str:
    m = _TOKEN.search(page)
    assert m is not None, f"no CSRF token in the page: {page[:1000]}"
    return m.group(1)


def django_file(relative: str) -> bytes:
    """A file of the installed Django (found without importing it into the test process)."""
    spec = importlib.util.find_spec("django")
    assert spec is not None and spec.submodule_search_locations is not None
    return (Path(next(iter(spec.submodule_search_locations))) / relative).read_bytes()


def notes(c: httpx.Client) -> list[dict[str, Any]]:
    resp = c.get("/notes/")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    assert data["users"] == 1  # the superuser, counted through the ORM
    result: list[dict[str, Any]] = data["notes"]
    return result


# --- database ---------------------------------------------------------------------------------


def test_view_reads_the_migrated_sqlite_database(django_server: ServerProcess) -> None:
    with client(django_server) as c:
        resp = c.get("/notes/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    data = resp.json()
    assert data["notes"][:2] == INITIAL_NOTES
    assert data["users"] == 1


def test_request_as_django_sees_it_has_the_servers_scheme_host_and_client_address(
    django_server: ServerProcess,
) -> None:
    with client(django_server) as c:
        resp = c.get("/whoami/", params={"q": "\u00e9t\u00e9", "n": "1"})
    assert resp.status_code == 200
    assert resp.json() == {
        "scheme": "http",
        "host": f"127.0.0.1:{django_server.port}",
        "path": "/whoami/",
        "path_info": "/whoami/",
        "query": {"q": "\u00e9t\u00e9", "n": "1"},
        "remote_addr": "127.0.0.1",
        "server_port": str(django_server.port),
        "absolute_uri": f"http://127.0.0.1:{django_server.port}/whoami/?q=%C3%A9t%C3%A9&n=1",
    }


def test_multipart_upload_is_parsed_by_django_and_a_big_file_spooled_to_disk(
    django_server: ServerProcess,
) -> None:
    big = os.urandom(3 * 1024 * 1024 + 5)  # above FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
    small = "petit fichier \u00e9\n".encode() * 10
    with client(django_server) as c:
        resp = c.post(
            "/upload/",
            data={"title": "r\u00e9sum\u00e9"},
            files={"big": ("big.bin", big, "application/octet-stream"), "small": ("small.txt", small)},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "fields": {"title": "r\u00e9sum\u00e9"},
        "files": [
            {
                "field": "big",
                "name": "big.bin",
                "size": len(big),
                "sha256": hashlib.sha256(big).hexdigest(),
                "on_disk": True,
            },
            {
                "field": "small",
                "name": "small.txt",
                "size": len(small),
                "sha256": hashlib.sha256(small).hexdigest(),
                # Django decides by the request's CONTENT_LENGTH, not per file: on disk too.
                "on_disk": True,
            },
        ],
    }


def test_streaming_http_response_is_sent_chunked_and_whole(django_server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", django_server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/stream/?n=50")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.read() == b"".join(f"line {i}\n".encode() for i in range(50))
    finally:
        conn.close()


# --- CSRF -------------------------------------------------------------------------------------


def test_csrf_protected_form_accepts_the_token_from_its_page_and_redirects(
    django_server: ServerProcess,
) -> None:
    text = f"note {uuid.uuid4().hex} \u00e7a va"
    with client(django_server) as c:
        page = c.get("/notes/new/")
        assert page.status_code == 200
        assert "csrftoken=" in page.headers["set-cookie"]
        assert "csrftoken" in c.cookies
        token = csrf_token(page.text)

        posted = c.post("/notes/new/", data={"body": text, "csrfmiddlewaretoken": token})
        assert posted.status_code == 302, posted.text
        assert posted.headers["location"] == "/notes/"

        bodies = [n["body"] for n in notes(c)]
    assert bodies[:2] == [n["body"] for n in INITIAL_NOTES]
    assert bodies.count(text) == 1


def test_csrf_protected_form_refuses_a_post_without_the_token_or_without_the_cookie(
    django_server: ServerProcess,
) -> None:
    text = f"forged {uuid.uuid4().hex}"
    with client(django_server) as c:
        token = csrf_token(c.get("/notes/new/").text)
        no_token = c.post("/notes/new/", data={"body": text})
        assert no_token.status_code == 403
        assert "CSRF verification failed" in no_token.text
        django_server.wait_for_log(r"Forbidden \(CSRF token missing\.\): /notes/new/")

    with client(django_server) as fresh:  # the token, but no cookie to match it
        no_cookie = fresh.post("/notes/new/", data={"body": text, "csrfmiddlewaretoken": token})
        assert no_cookie.status_code == 403
        django_server.wait_for_log(r"Forbidden \(CSRF cookie not set\.\): /notes/new/")
        assert text not in [n["body"] for n in notes(fresh)]


def test_csrf_origin_check_accepts_the_servers_own_origin_and_refuses_another(
    django_server: ServerProcess,
) -> None:
    """Django compares Origin with ``wsgi.url_scheme`` and the Host: both must be right."""
    text = f"same origin {uuid.uuid4().hex}"
    with client(django_server) as c:
        token = csrf_token(c.get("/notes/new/").text)
        form = {"body": text, "csrfmiddlewaretoken": token}
        foreign = c.post("/notes/new/", data=form, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        django_server.wait_for_log(
            r"Forbidden \(Origin checking failed - http://evil\.example does not match"
        )

        own = c.post("/notes/new/", data=form, headers={"Origin": django_server.url})
        assert own.status_code == 302, own.text
        assert [n["body"] for n in notes(c)].count(text) == 1


# --- static files -----------------------------------------------------------------------------


def test_static_files_come_from_staticfiles_handler_with_conditional_requests(
    django_server: ServerProcess,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", django_server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/static/fw/site.css")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, SITE_CSS)
        assert resp.getheader("Content-Type") == "text/css"
        assert resp.getheader("Content-Length") == str(len(SITE_CSS))
        last_modified = resp.getheader("Last-Modified")
        assert last_modified is not None

        conn.request("GET", "/static/fw/site.css", headers={"If-Modified-Since": last_modified})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (304, b"")

        old = formatdate(0, usegmt=True)
        conn.request("GET", "/static/fw/site.css", headers={"If-Modified-Since": old})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, SITE_CSS)

        base_css = django_file("contrib/admin/static/admin/css/base.css")
        conn.request("GET", "/static/admin/css/base.css")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, base_css)
        assert resp.getheader("Content-Length") == str(len(base_css))

        jquery = django_file("contrib/admin/static/admin/js/vendor/jquery/jquery.js")  # ~280 KB
        conn.request("GET", "/static/admin/js/vendor/jquery/jquery.js")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, jquery)
        assert resp.getheader("Content-Type") in ("text/javascript", "application/javascript")

        conn.request("GET", "/static/fw/missing.css")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
    finally:
        conn.close()


# --- admin ------------------------------------------------------------------------------------


def test_admin_login_page_renders_its_form(django_server: ServerProcess) -> None:
    with client(django_server) as c:
        index = c.get("/admin/")
        assert index.status_code == 302
        assert index.headers["location"] == "/admin/login/?next=/admin/"
        page = c.get("/admin/login/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    html = page.text
    assert '<form action="/admin/login/" method="post" id="login-form">' in html
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert '<link rel="stylesheet" href="/static/admin/css/base.css">' in html
    csrf_token(html)


def test_admin_login_with_the_superuser_opens_the_admin_index(django_server: ServerProcess) -> None:
    with client(django_server) as c:
        token = csrf_token(c.get("/admin/login/").text)
        wrong = c.post(
            "/admin/login/",
            data={
                "username": SUPERUSER[0],
                "password": "wrong",
                "csrfmiddlewaretoken": token,
                "next": "/admin/",
            },
        )
        assert wrong.status_code == 200
        assert "Please enter the correct username and password" in wrong.text

        token = csrf_token(wrong.text)
        login = c.post(
            "/admin/login/",
            data={
                "username": SUPERUSER[0],
                "password": SUPERUSER[1],
                "csrfmiddlewaretoken": token,
                "next": "/admin/",
            },
        )
        assert login.status_code == 302, login.text
        assert login.headers["location"] == "/admin/"
        assert "sessionid" in c.cookies

        index = c.get("/admin/")
        assert index.status_code == 200
        assert "Site administration" in index.text
        assert "/admin/auth/user/" in index.text


def test_unknown_url_is_djangos_404_page(django_server: ServerProcess) -> None:
    with client(django_server) as c:
        resp = c.get("/no/such/page/")
    assert resp.status_code == 404
    assert "<h1>Not Found</h1>" in resp.text
