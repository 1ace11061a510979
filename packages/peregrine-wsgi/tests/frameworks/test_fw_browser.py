"""The Flask and Django pages in Debian's headless Chromium, served by ``peregrine_wsgi``.

``--dump-dom`` prints the DOM once loading settled, after the page's scripts ran. Each page
writes the computed colour of its ``<h1>`` on ``<body>`` (so the DOM shows that the static
stylesheet came through the server with a type the browser accepts), then, unless the URL's
fragment is ``#no-submit``, fills its form and submits it: the DOM printed is then the POST's
result page, and shows the value as the framework received it. The Django form carries its
CSRF token and Chromium sends its own Origin, so the POST succeeds only if the server reports
the scheme and host Django compares it with. Skipped without ``/usr/bin/chromium``.
"""

from __future__ import annotations

from pathlib import Path

from frameworks.fw_support import ServerProcess, dump_dom, needs_chromium

pytestmark = needs_chromium


def test_flask_page_renders_in_chromium_with_its_static_stylesheet(
    flask_server: ServerProcess, tmp_path: Path
) -> None:
    dom = dump_dom(f"{flask_server.url}/browser#no-submit", tmp_path / "profile")
    assert "<title>Flask on Peregrine</title>" in dom
    assert "<h1>Hello from Flask</h1>" in dom
    assert 'data-h1-color="rgb(12, 34, 56)"' in dom  # /static/app.css applied


def test_flask_form_submitted_by_chromium_shows_the_posted_value(
    flask_server: ServerProcess, tmp_path: Path
) -> None:
    dom = dump_dom(f"{flask_server.url}/browser", tmp_path / "profile")
    assert '<p id="result">You posted: h\u00e9llo &lt;b&gt;world&lt;/b&gt; &amp; more</p>' in dom
    assert '<p id="marker">from-browser</p>' in dom
    assert '<p id="method">POST</p>' in dom
    assert '<p id="type">application/x-www-form-urlencoded</p>' in dom


def test_django_page_renders_in_chromium_with_its_static_stylesheet(
    django_server: ServerProcess, tmp_path: Path
) -> None:
    dom = dump_dom(f"{django_server.url}/browser/#no-submit", tmp_path / "profile")
    assert "<title>Django on Peregrine</title>" in dom
    assert "<h1>Hello from Django</h1>" in dom
    assert 'data-h1-color="rgb(98, 76, 54)"' in dom  # /static/fw/site.css applied
    assert 'name="csrfmiddlewaretoken"' in dom


def test_django_csrf_form_submitted_by_chromium_is_saved_and_shown(
    django_server: ServerProcess, tmp_path: Path
) -> None:
    dom = dump_dom(f"{django_server.url}/browser/", tmp_path / "profile")
    value = "from chromium \u00e0 Django &lt;i&gt;ok&lt;/i&gt;"
    assert f'<p id="saved">Saved: {value}</p>' in dom, dom[:2000]
    assert f": {value}</p>" in dom.partition('<p id="stored">')[2]  # read back from SQLite
