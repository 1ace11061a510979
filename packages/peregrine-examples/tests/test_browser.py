"""The static examples in a real browser: Debian's headless Chromium loads the pages.

Strategy: the example's handler runs in-process (``peregrine_core.testing.serve``) wrapped in
a handler that records, for every request, what the server answered (status, Content-Type,
ETag). Chromium is driven with the standard library alone: ``--dump-dom`` prints the DOM
once the page has loaded, after its scripts ran. The dirserver page's scripts mark ``<body>``
with ``data-main-js``/``data-more-js`` and write the computed colours of ``<body>`` and
``<h1>`` there, so the DOM shows whether both scripts ran and both stylesheets applied (a
stylesheet served with a wrong Content-Type would be ignored by the browser). The console
messages come on Chromium's stderr with ``--enable-logging=stderr``.

Chromium runs in its own session (process group) with a fresh profile and a timeout, and the
whole group is killed afterwards, whatever happened. Without ``/usr/bin/chromium`` (Debian's
``chromium`` package) the tests are skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from peregrine_core import Request, Response, Server
from peregrine_core.testing import serve
from peregrine_examples import dirserver, fileserver
from peregrine_static import DirServer, FileServer

from examples_support import CHROMIUM, CHROMIUM_FLAGS, KILL_TIMEOUT, kill_group

CHROMIUM_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)",
)

#: What the dirserver page must fetch, and the Content-Type each must come with.
ASSETS = {
    "/": "text/html; charset=utf-8",
    "/css/main.css": "text/css; charset=utf-8",
    "/css/another.css": "text/css; charset=utf-8",
    "/js/main.js": "text/javascript; charset=utf-8",
    "/js/more.js": "text/javascript; charset=utf-8",
}
# css/main.css: body { background-color: #121212 }; css/another.css: h1 { color: grey }.
BODY_BACKGROUND = "rgb(18, 18, 18)"
H1_COLOR = "rgb(128, 128, 128)"


@dataclass(frozen=True)
class Fetch:
    """One request as the server saw and answered it."""

    method: str
    target: str
    user_agent: str
    if_none_match: str | None
    status: int
    content_type: str | None
    etag: str | None
    content_length: int


class Recorder:
    """A handler that answers with ``inner`` and records every exchange (thread-safe)."""

    def __init__(self, inner: DirServer | FileServer) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._fetches: list[Fetch] = []

    def handle_request(self, req: Request, resp: Response) -> None:
        self._inner.handle_request(req, resp)
        fetch = Fetch(
            method=req.method,
            target=req.target,
            user_agent=req.get_header("user-agent") or "",
            if_none_match=req.get_header("if-none-match"),
            status=resp.status,
            content_type=resp.get_header("content-type"),
            etag=resp.get_header("etag"),
            content_length=resp.content_length,
        )
        with self._lock:
            self._fetches.append(fetch)

    def take(self) -> list[Fetch]:
        """The exchanges recorded so far, forgetting them."""
        with self._lock:
            fetches, self._fetches = self._fetches, []
        return fetches


class BodyAttributes(HTMLParser):
    """Collects the attributes of the first ``<body>`` tag."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.attributes is None:
            self.attributes = dict(attrs)


@dataclass(frozen=True)
class PageLoad:
    """What Chromium printed: the DOM after load, and its log (console messages included)."""

    dom: str
    log: str

    def body_attributes(self) -> dict[str, str | None]:
        parser = BodyAttributes()
        parser.feed(self.dom)
        assert parser.attributes is not None, f"no <body> in the DOM: {self.dom[:500]!r}"
        return parser.attributes

    def console_messages(self) -> list[str]:
        # Lines such as: [..:INFO:CONSOLE:6] "main.js loaded", source: http://.../js/main.js (6)
        return re.findall(r':CONSOLE[^\]]*\] "(.*)", source: ', self.log)


def load(url: str, profile: Path) -> PageLoad:
    """Load ``url`` in headless Chromium with the profile ``profile`` and return the DOM."""
    argv = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    env = {**os.environ, "HOME": str(profile)}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        try:
            dom, log = proc.communicate(timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            dom, log = proc.communicate(timeout=KILL_TIMEOUT)
            pytest.fail(
                f"Chromium did not finish within {CHROMIUM_TIMEOUT} s loading {url}; log: {log[-3000:]}"
            )
    finally:
        kill_group(proc)
    assert proc.returncode == 0, f"Chromium exited with {proc.returncode}; log: {log[-3000:]}"
    return PageLoad(dom, log)


@pytest.fixture
def site() -> Iterator[tuple[Server, Recorder]]:
    recorder = Recorder(dirserver.make_handler())
    with serve(recorder) as srv:
        yield srv, recorder


def test_dirserver_page_in_chromium_applies_both_stylesheets_and_runs_both_scripts(
    site: tuple[Server, Recorder], tmp_path: Path
) -> None:
    srv, _ = site
    page = load(f"http://127.0.0.1:{srv.port}/", tmp_path / "profile")

    body = page.body_attributes()
    assert body.get("data-main-js") == "ran"
    assert body.get("data-more-js") == "ran"
    assert body.get("data-body-background") == BODY_BACKGROUND  # css/main.css applied
    assert body.get("data-h1-color") == H1_COLOR  # css/another.css applied
    assert "<h1>Hello from Peregrine!</h1>" in page.dom
    assert page.console_messages() == ["main.js loaded", "more.js loaded"]
    assert "Uncaught" not in page.log


def test_dirserver_page_in_chromium_fetches_every_asset_once_with_200_and_its_content_type(
    site: tuple[Server, Recorder], tmp_path: Path
) -> None:
    srv, recorder = site
    load(f"http://127.0.0.1:{srv.port}/", tmp_path / "profile")

    fetches = recorder.take()
    assert sorted(f.target for f in fetches) == sorted(ASSETS)  # each once, nothing else
    for fetch in fetches:
        assert "Chrome" in fetch.user_agent
        assert (fetch.method, fetch.status, fetch.content_type) == ("GET", 200, ASSETS[fetch.target])
        assert fetch.content_length > 0
        assert fetch.etag is not None


def test_dirserver_page_reloaded_in_chromium_is_revalidated_with_304s(
    site: tuple[Server, Recorder], tmp_path: Path
) -> None:
    srv, recorder = site
    url = f"http://127.0.0.1:{srv.port}/"
    profile = tmp_path / "profile"  # shared by both runs: the second finds the first's cache
    load(url, profile)
    etags = {f.target: f.etag for f in recorder.take()}

    page = load(url, profile)

    fetches = recorder.take()
    assert sorted(f.target for f in fetches) == sorted(ASSETS)
    for fetch in fetches:
        # Cache-Control: no-cache makes the browser ask again; its own ETag makes that a 304.
        assert fetch.if_none_match == etags[fetch.target]
        assert (fetch.status, fetch.etag) == (304, etags[fetch.target])
    body = page.body_attributes()  # the cached copies were used: styles and scripts again
    assert (body.get("data-main-js"), body.get("data-more-js")) == ("ran", "ran")
    assert (body.get("data-body-background"), body.get("data-h1-color")) == (BODY_BACKGROUND, H1_COLOR)


def test_fileserver_page_in_chromium_shows_hello_on_any_path(tmp_path: Path) -> None:
    recorder = Recorder(fileserver.make_handler())
    with serve(recorder) as srv:
        page = load(f"http://127.0.0.1:{srv.port}/some/page?x=1", tmp_path / "profile")
    assert "<h1>Hello!</h1>" in page.dom
    fetches = recorder.take()
    # The page names no icon, so Chromium may also ask for /favicon.ico: it gets the page too.
    assert fetches[0].target == "/some/page?x=1"
    assert {f.target for f in fetches[1:]} <= {"/favicon.ico"}
    for fetch in fetches:
        assert (fetch.status, fetch.content_type) == (200, "text/html; charset=utf-8")
