"""The Flask application the framework tests serve (``python -m peregrine_wsgi ...fw_flask_site:app``).

Every route answers something a test can check exactly: path parameters and what Flask saw
of the request (host, scheme, remote address), JSON in and out, urlencoded and multipart
forms (each file's size and SHA-256), a raw upload read from ``request.stream`` in 1 MiB
pieces (never held whole), streamed responses whose generator waits for the client, error
pages, static files (``send_file`` through ``wsgi.file_wrapper`` when the server has one) and
the pages the browser tests load.

A streamed response waits on an event that a second request (``POST /release/TOKEN``) sets,
so a test can prove that the first piece reached the client while the generator was still
running: a server that buffered the body would hold the first piece until the wait timed out.
``/ended/TOKEN`` tells how the generator ended; the application keeps a strong reference to
it, so ``closed`` means the server called ``close()``, not that garbage collection did.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    render_template_string,
    request,
    stream_with_context,
    url_for,
)

RELEASE_WAIT_SECONDS: Final = 10.0
UPLOAD_PIECE_BYTES: Final = 1 << 20
ENDLESS_PIECES: Final = 16_384

app = Flask(__name__, static_folder=str(Path(__file__).parent / "flask_static"), static_url_path="/static")

_lock = threading.Lock()
_events: dict[str, threading.Event] = {}
_ended: dict[str, threading.Event] = {}
_how: dict[str, str] = {}
_live: dict[str, Iterator[bytes]] = {}


def _event(table: dict[str, threading.Event], token: str) -> threading.Event:
    with _lock:
        return table.setdefault(token, threading.Event())


@app.get("/users/<int:user_id>/posts/<slug>")
def user_post(user_id: int, slug: str) -> Response:
    return jsonify(
        user_id=user_id,
        slug=slug,
        args=request.args.to_dict(flat=False),
        host=request.host,
        scheme=request.scheme,
        url=request.url,
        remote_addr=request.remote_addr,
        method=request.method,
    )


@app.get("/headers")
def headers() -> Response:
    """Request headers as WSGI delivers them (latin-1 strings), and two cookies set."""
    raw = request.headers.get("X-Name", "")
    resp = jsonify(
        x_name_utf8=raw.encode("latin-1").decode("utf-8"),
        x_multi=request.headers.get("X-Multi"),
        cookies=request.cookies.to_dict(),
    )
    resp.set_cookie("first", "1", httponly=True)
    resp.set_cookie("second", "2", path="/headers")
    resp.headers["X-Reply"] = "caf\u00e9"
    return resp


@app.post("/api/items")
def create_item() -> tuple[Response, int, dict[str, str]]:
    data = request.get_json()  # 400 (Flask's page) when the body is not JSON
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        abort(422)
    tags = data.get("tags", [])
    prices = data.get("prices", [])
    body = jsonify(
        name=data["name"],
        name_upper=data["name"].upper(),
        tag_count=len(tags),
        total=sum(prices),
        content_type=request.content_type,
    )
    return body, 201, {"Location": f"/api/items/{data['name']}"}


@app.post("/form")
def form() -> Response:
    files = {
        field: [
            {
                "filename": f.filename,
                "content_type": f.content_type,
                "size": len(content := f.read()),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
            for f in request.files.getlist(field)
        ]
        for field in request.files
    }
    return jsonify(
        fields=request.form.to_dict(flat=False),
        files=files,
        content_type=request.mimetype,
    )


@app.post("/upload")
def upload() -> Response:
    """The body's length and SHA-256, read in pieces from the WSGI input stream."""
    digest = hashlib.sha256()
    length = 0
    while piece := request.stream.read(UPLOAD_PIECE_BYTES):
        digest.update(piece)
        length += len(piece)
    return jsonify(
        length=length,
        sha256=digest.hexdigest(),
        content_length=request.content_length,
        transfer_encoding=request.headers.get("Transfer-Encoding"),
    )


@app.post("/release/<token>")
def release(token: str) -> str:
    _event(_events, token).set()
    return "released\n"


@app.get("/stream/<token>")
def stream(token: str) -> Response:
    """``first``, then (once ``/release/TOKEN`` came, or after the wait ran out) the rest.

    With ``?endless=1`` the rest is 64 KiB pieces without end (bounded at 1 GiB), so the
    generator stops early only if the server closes it.
    """
    released = _event(_events, token)
    ended = _event(_ended, token)
    endless = request.args.get("endless") == "1"

    def pieces() -> Iterator[bytes]:
        how = "exhausted"
        try:
            yield b"first piece\n"
            yield b"released\n" if released.wait(RELEASE_WAIT_SECONDS) else b"timed out\n"
            if endless:
                filler = b"x" * 65_536
                for _ in range(ENDLESS_PIECES):
                    yield filler
            else:
                for i in range(3):
                    yield f"piece {i}\n".encode()
        except GeneratorExit:
            how = "closed"  # close() called while the generator was suspended
            raise
        finally:
            with _lock:
                _how[token] = how
                _live.pop(token, None)
            ended.set()

    body = pieces()
    with _lock:
        _live[token] = body  # garbage collection cannot close it: only an explicit close() can
    return Response(body, mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    """``mib`` MiB made of one 1 MiB block, produced piece by piece (never held whole).

    Each piece is a new copy of the block, so pieces queued by the server cost memory.
    """
    block = memoryview(hashlib.sha256(b"download").digest() * (UPLOAD_PIECE_BYTES // 32))
    count = int(request.args.get("mib", "1"))

    def pieces() -> Iterator[bytes]:
        for _ in range(count):
            yield block.tobytes()

    return Response(pieces(), mimetype="application/octet-stream")


@app.get("/ended/<token>")
def how_it_ended(token: str) -> Response:
    """How the generator of ``/stream/TOKEN`` ended: ``exhausted``, ``closed``, or ``null`` (not yet)."""
    done = _event(_ended, token).wait(float(request.args.get("wait", "5")))
    with _lock:
        return jsonify(ended=_how.get(token) if done else None)


@app.get("/broken-stream/<token>")
def broken_stream(token: str) -> Response:
    """One piece, then (once ``/release/TOKEN`` came) an exception."""
    released = _event(_events, token)

    def pieces() -> Iterator[bytes]:
        yield b"partial body\n"
        released.wait(RELEASE_WAIT_SECONDS)
        raise RuntimeError("the generator failed after the first piece")

    return Response(pieces(), mimetype="text/plain")


@app.get("/short-stream/<token>")
def short_stream(token: str) -> Response:
    """Declares 100 bytes and yields 20, the second 10 once ``/release/TOKEN`` came."""
    released = _event(_events, token)

    def pieces() -> Iterator[bytes]:
        yield b"0123456789"
        released.wait(RELEASE_WAIT_SECONDS)
        yield b"abcdefghij"

    return Response(pieces(), mimetype="text/plain", headers={"Content-Length": "100"})


@app.get("/greeting")
def greeting() -> Response:
    """A generator that reads the request while the server iterates it (``stream_with_context``)."""

    def pieces() -> Iterator[str]:
        yield "hello "
        yield request.args.get("name", "nobody")
        yield f" at {url_for('greeting', _external=True)}\n"

    return Response(stream_with_context(pieces()), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("secret-detail-6f1c: must never reach the client")


@app.get("/missing")
def missing() -> str:
    abort(404)


PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>Flask on Peregrine</title>
<link rel="stylesheet" href="{{ url_for('static', filename='app.css') }}"></head>
<body>
<h1>Hello from Flask</h1>
<form id="f" method="post" action="{{ url_for('browser_result') }}">
  <input type="text" name="message" value="">
  <input type="hidden" name="marker" value="from-browser">
</form>
<script>
  document.body.dataset.h1Color = getComputedStyle(document.querySelector("h1")).color;
  if (location.hash !== "#no-submit") {
    document.forms.f.elements.message.value = "h\\u00e9llo <b>world</b> & more";
    document.forms.f.submit();
  }
</script>
</body></html>
"""

RESULT: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>Posted</title></head>
<body><p id="result">You posted: {{ message }}</p><p id="marker">{{ marker }}</p>
<p id="method">{{ method }}</p><p id="type">{{ content_type }}</p></body></html>
"""


@app.get("/browser")
def browser_page() -> str:
    return render_template_string(PAGE)


@app.post("/browser/result")
def browser_result() -> str:
    return render_template_string(
        RESULT,
        message=request.form.get("message", "(none)"),
        marker=request.form.get("marker", "(none)"),
        method=request.method,
        content_type=request.mimetype,
    )
