"""The sse example: its event stream over real sockets, and its page in headless Chromium.

Strategy: the handler runs in-process (``peregrine_core.testing.serve``); ``http.client``
and raw sockets read the stream line by line as it arrives, so a body held back until its
end would time out (the streams asked for last minutes, the tests read their first events
within seconds). The handler's ``active_streams`` and its log lines show from the server's
side when a generator's ``finally`` ran. The browser tests drive Chromium through the
DevTools protocol (as ``test_ws_browser.py`` does): the page writes every event it receives
into ``<li data-id>`` items, and a probe reads them every 0.1 s. The restart test runs the
example as a process, stops it by its PID while the page is following the stream, starts it
again on the same port, and checks that the page's ``EventSource`` reconnected by itself and
that the ids continue from the page's ``Last-Event-ID``.

Every wait has a timeout; Chromium runs in its own session and the whole group is killed
afterwards. Without ``/usr/bin/chromium`` the browser tests are skipped.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from peregrine_core import Server, ServerConfig
from peregrine_core.testing import serve
from peregrine_examples.sse import PAGE, SSEExample

from examples_support import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    KILL_TIMEOUT,
    TIMEOUT,
    free_port,
    kill_group,
    start,
    stop,
)

#: A stream that would last 500 s: whatever a test reads of it arrived while it was running.
ENDLESS = "interval=0.05&count=10000"
#: A failed test may leave a stream open: the server then stops after 1 s, not 30 s.
QUICK_STOP = ServerConfig(graceful_timeout=1.0)
#: How soon a generator must finish once its client has gone.
GONE_TIMEOUT = 3.0
START_TIMEOUT = 30.0  # Chromium opening DevTools
PAGE_TIMEOUT = 30.0  # the page receiving what a test waits for
POLL_INTERVAL = 0.1

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)",
)


@pytest.fixture
def example() -> Iterator[tuple[Server, SSEExample]]:
    handler = SSEExample()
    with serve(handler, config=QUICK_STOP) as srv:
        yield srv, handler
        _wait_until(lambda: handler.active_streams == 0, "a stream outlived its client")


def _wait_until(condition: Callable[[], bool], failure: str, timeout: float = GONE_TIMEOUT) -> None:
    """Poll ``condition`` until it holds, failing the test after ``timeout`` seconds."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"{failure} (waited {timeout} s)")
        time.sleep(0.01)


@contextmanager
def _stream(port: int, target: str, headers: dict[str, str] | None = None) -> Iterator[HTTPResponse]:
    """``GET target``: the response, to be read as it arrives; the connection closed after."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", target, headers=headers or {})
        with conn.getresponse() as resp:
            yield resp
    finally:
        conn.close()


def _get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    with _stream(port, target, headers) as resp:
        return resp.status, resp.read()


def _read_message(resp: HTTPResponse) -> list[str]:
    """The lines of the next message (up to its blank line), as they arrive."""
    lines: list[str] = []
    while (line := resp.readline()) not in (b"\n", b""):
        lines.append(line.decode().rstrip("\n"))
    assert lines, "the stream ended"
    return lines


def _event(n: int) -> list[str]:
    return [f"id: {n}", f"data: tick {n}"]


def _body(first: int, count: int, retry: int = 2000) -> bytes:
    events = b"".join(b"id: %d\ndata: tick %d\n\n" % (n, n) for n in range(first, first + count))
    return b"retry: %d\n\n" % retry + events


class RawConnection:
    """A client socket read with a timeout: heads, chunked bodies, bodies up to EOF."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            assert self._fill(), f"connection closed before {marker!r}: {self.buf!r}"
        data, _, self.buf = self.buf.partition(marker)
        return data

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            assert self._fill(), f"connection closed {n - len(self.buf)} bytes short"
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> tuple[str, dict[str, str]]:
        status, *fields = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        return status, {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}

    def read_chunks(self) -> list[bytes]:
        """Every chunk of a chunked body, up to and including its last (empty) chunk."""
        chunks: list[bytes] = []
        while True:
            size_line = self.read_until(b"\r\n")
            assert re.fullmatch(rb"[0-9a-fA-F]+", size_line), f"bad chunk size line {size_line!r}"
            chunk = self.read_exactly(int(size_line, 16))
            assert self.read_exactly(2) == b"\r\n", "chunk not followed by CRLF"
            chunks.append(chunk)
            if not chunk:
                return chunks

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data


# -- the stream over sockets ------------------------------------------------------------------


def test_page_at_root_is_html_whose_script_follows_events_with_its_own_query(
    example: tuple[Server, SSEExample],
) -> None:
    srv, _ = example
    with _stream(srv.port, "/") as resp:
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
        assert resp.read() == PAGE.encode()
    assert 'new EventSource("events" + location.search)' in PAGE


def test_events_come_with_sse_headers_chunked_and_one_by_one_while_the_stream_runs(
    example: tuple[Server, SSEExample],
) -> None:
    srv, handler = example
    began = time.monotonic()
    with _stream(srv.port, f"/events?{ENDLESS}") as resp:
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.getheader("Cache-Control") == "no-store"
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.getheader("Content-Length") is None
        assert _read_message(resp) == ["retry: 2000"]
        arrivals = []
        for n in range(1, 6):
            assert _read_message(resp) == _event(n)
            arrivals.append(time.monotonic() - began)
        assert handler.active_streams == 1
    # Five events 0.05 s apart: not all in one piece, and long before the stream's 500 s.
    assert arrivals[-1] - arrivals[0] >= 0.15, arrivals
    assert arrivals[-1] < TIMEOUT


def test_a_client_that_goes_away_ends_the_generator_and_its_finally_runs_promptly(
    example: tuple[Server, SSEExample], caplog: pytest.LogCaptureFixture
) -> None:
    srv, handler = example
    caplog.set_level(logging.INFO, logger="peregrine_examples.sse")
    with RawConnection(srv.port) as conn:
        conn.sock.sendall(f"GET /events?{ENDLESS} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.read_head()
        conn.read_until(b"data: tick 3\n\n")
        assert handler.active_streams == 1

    _wait_until(lambda: handler.active_streams == 0, "the generator's finally never ran")
    closed = [r.getMessage() for r in caplog.records if "closed after" in r.getMessage()]
    assert len(closed) == 1 and re.fullmatch(r"stream to 127\.0\.0\.1:\d+ closed after \d+ events", closed[0])


def test_chunked_framing_is_exact_and_the_connection_serves_the_next_request(
    example: tuple[Server, SSEExample],
) -> None:
    srv, _ = example
    with RawConnection(srv.port) as conn:
        conn.sock.sendall(b"GET /events?interval=0.01&count=3&retry=500 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers = conn.read_head()
        assert status == "HTTP/1.1 200 OK"
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        chunks = conn.read_chunks()
        assert chunks[-1] == b""
        assert all(chunks[:-1]), "an empty chunk before the end"
        assert b"".join(chunks) == _body(1, 3, retry=500)

        conn.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # same connection
        status, headers = conn.read_head()
        assert status == "HTTP/1.1 200 OK"
        assert conn.read_exactly(int(headers["content-length"])) == PAGE.encode()


def test_an_http_1_0_client_gets_the_stream_delimited_by_the_connection_closing(
    example: tuple[Server, SSEExample],
) -> None:
    srv, _ = example
    with RawConnection(srv.port) as conn:
        conn.sock.sendall(b"GET /events?interval=0.01&count=2 HTTP/1.0\r\n\r\n")
        status, headers = conn.read_head()
        assert status.startswith("HTTP/1.") and status.endswith(" 200 OK")
        assert "transfer-encoding" not in headers and "content-length" not in headers
        assert conn.read_to_eof() == _body(1, 2)


def test_last_event_id_resumes_after_that_id(example: tuple[Server, SSEExample]) -> None:
    srv, _ = example
    assert _get(srv.port, "/events?interval=0.01&count=3", {"Last-Event-ID": "41"}) == (200, _body(42, 3))


@pytest.mark.parametrize("last_id", ["", "abc", "-5", "4 2", "1" * 16, "\u00b2"])
def test_a_malformed_last_event_id_starts_again_at_one(
    example: tuple[Server, SSEExample], last_id: str
) -> None:
    srv, _ = example
    assert _get(srv.port, "/events?interval=0.01&count=2", {"Last-Event-ID": last_id}) == (200, _body(1, 2))


def test_a_comment_heartbeat_fills_silences_longer_than_heartbeat_s() -> None:
    handler = SSEExample(heartbeat_s=0.05)
    with serve(handler, config=QUICK_STOP) as srv:
        status, body = _get(srv.port, "/events?interval=0.3&count=2")
    assert status == 200
    head, _, rest = body.partition(b"id: 2\n")
    assert head.startswith(b"retry: 2000\n\nid: 1\ndata: tick 1\n\n")
    heartbeats = head.removeprefix(b"retry: 2000\n\nid: 1\ndata: tick 1\n\n")
    assert (
        1 <= heartbeats.count(b": heartbeat\n\n") <= 6 and heartbeats.replace(b": heartbeat\n\n", b"") == b""
    )
    assert rest == b"data: tick 2\n\n"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("interval=0", "interval must be between 0.01 and 60"),
        ("interval=61", "interval must be between 0.01 and 60"),
        ("interval=nan", "interval must be between 0.01 and 60"),
        ("interval=soon", "interval must be a number, not 'soon'"),
        ("count=0", "count must be between 1 and 10000"),
        ("count=10001", "count must be between 1 and 10000"),
        ("count=1.5", "count must be a number, not '1.5'"),
        ("retry=99", "retry must be between 100 and 60000"),
        ("count=%zz", "malformed query string"),
    ],
)
def test_parameters_out_of_bounds_are_refused_with_400_and_the_reason(
    example: tuple[Server, SSEExample], query: str, reason: str
) -> None:
    srv, _ = example
    assert _get(srv.port, f"/events?{query}") == (400, reason.encode() + b"\n")


def test_other_paths_are_404_and_other_methods_405(example: tuple[Server, SSEExample]) -> None:
    srv, _ = example
    assert _get(srv.port, "/events/")[0] == 404
    with closing(http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)) as conn:
        conn.request("POST", "/events", body=b"x")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Allow"), resp.read()) == (
            405,
            "GET, HEAD",
            b"only GET and HEAD\n",
        )


def test_head_of_events_sends_the_headers_and_never_starts_the_generator(
    example: tuple[Server, SSEExample], caplog: pytest.LogCaptureFixture
) -> None:
    srv, handler = example
    caplog.set_level(logging.INFO, logger="peregrine_examples.sse")
    with closing(http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)) as conn:
        conn.request("HEAD", f"/events?{ENDLESS}")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Content-Type"), resp.read()) == (200, "text/event-stream", b"")
        conn.request("GET", "/events?interval=0.01&count=1")  # the connection is still usable
        assert conn.getresponse().read() == _body(1, 1)
    assert handler.active_streams == 0
    assert [r.getMessage().split(" at ")[-1] for r in caplog.records if "opened" in r.getMessage()] == [
        "id 1"
    ]


def test_the_example_runs_as_a_module_and_logs_each_stream() -> None:
    port = free_port()
    proc, line = start(
        [sys.executable, "-m", "peregrine_examples.sse", "--host", "127.0.0.1", "--port", str(port)]
    )
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        assert _get(port, "/events?interval=0.01&count=2") == (200, _body(1, 2))
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert re.search(r"stream to 127\.0\.0\.1:\d+ opened at id 1\n", err), err
    assert re.search(r"stream to 127\.0\.0\.1:\d+ closed after 2 events\n", err), err


# -- the page in Chromium ---------------------------------------------------------------------

#: What the page recorded: the data- attributes of <body> and every event as [id, text].
PROBE = """(() => {
  if (document.readyState === "loading" || document.getElementById("events") === null) return null;
  return JSON.stringify({
    data: Object.assign({}, document.body.dataset),
    events: Array.from(document.querySelectorAll("#events li"), (li) => [li.dataset.id, li.textContent]),
  });
})()"""


class Page:
    """One Chromium tab, asked through DevTools what the page has recorded."""

    def __init__(self, cdp: ClientConnection) -> None:
        self.cdp = cdp
        self.calls = 0

    def report(self) -> dict[str, Any]:
        self.calls += 1
        self.cdp.send(
            json.dumps(
                {
                    "id": self.calls,
                    "method": "Runtime.evaluate",
                    "params": {"expression": PROBE, "returnByValue": True},
                }
            )
        )
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            reply = json.loads(self.cdp.recv(timeout=max(0.0, deadline - time.monotonic())))
            if reply.get("id") == self.calls:  # anything else is an event
                value = reply["result"]["result"].get("value")
                return {"data": {}, "events": []} if value is None else dict(json.loads(value))

    def wait_for_events(self, n: int) -> dict[str, Any]:
        """The report once the page holds at least ``n`` events."""
        deadline = time.monotonic() + PAGE_TIMEOUT
        while len((report := self.report())["events"]) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"the page did not get {n} events within {PAGE_TIMEOUT} s: {report}")
            time.sleep(POLL_INTERVAL)
        return report


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], Page]]:
    """Yields ``open(url) -> Page``; kills the Chromium it started, and its helpers."""
    procs: list[subprocess.Popen[bytes]] = []
    cdps = ExitStack()
    profile = tmp_path / "profile"
    log_path = tmp_path / "chromium.log"

    def open_page(url: str) -> Page:
        argv = [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            url,
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "HOME": str(tmp_path)},
                start_new_session=True,
            )
        procs.append(proc)
        active = profile / "DevToolsActivePort"  # "PORT\n/devtools/browser/ID"
        deadline = time.monotonic() + START_TIMEOUT
        while len(lines := (active.read_text() if active.exists() else "").splitlines()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not open DevTools: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        cdp = connect(
            _tab(int(lines[0]), url),
            proxy=None,
            open_timeout=START_TIMEOUT,
            close_timeout=KILL_TIMEOUT,
            ping_interval=None,
            max_size=None,
            compression=None,
        )
        return Page(cdps.enter_context(cdp))

    try:
        yield open_page
    finally:
        cdps.close()
        for proc in procs:
            kill_group(proc)
    assert "Uncaught" not in (log_path.read_text(errors="replace") if log_path.exists() else "")


def _tab(devtools_port: int, url: str) -> str:
    """The DevTools WebSocket of the tab showing ``url``."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", devtools_port, timeout=START_TIMEOUT)
        try:
            conn.request("GET", "/json/list")
            targets = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        for target in targets:
            if target.get("type") == "page" and target.get("url") == url:
                ws_url: str = target["webSocketDebuggerUrl"]
                return ws_url
        if time.monotonic() > deadline:
            pytest.fail(f"no tab shows {url}: {targets}")
        time.sleep(0.1)


def _ids(report: dict[str, Any]) -> list[int]:
    events: list[list[str]] = report["events"]
    assert all(text == f"tick {n}" for n, text in events), events
    return [int(n) for n, _ in events]


@needs_chromium
def test_page_in_chromium_receives_events_in_order_across_the_streams_end(
    chromium: Callable[[str], Page],
) -> None:
    handler = SSEExample()
    with serve(handler, config=QUICK_STOP) as srv:
        # Each stream ends after 4 events; the EventSource reconnects 100 ms later, with
        # Last-Event-ID, and the next stream goes on from there.
        page = chromium(f"http://127.0.0.1:{srv.port}/?interval=0.05&count=4&retry=100")
        report = page.wait_for_events(10)
        ids = _ids(report)
        assert ids == list(range(1, len(ids) + 1))
        assert int(report["data"]["opens"]) >= 3
        assert report["data"]["state"] in ("open", "reconnecting")
        page.cdp.send(json.dumps({"id": 0, "method": "Page.close"}))  # the client goes away
        _wait_until(lambda: handler.active_streams == 0, "the page's stream outlived its tab", TIMEOUT)


@needs_chromium
def test_page_in_chromium_reconnects_to_a_restarted_server_and_continues_after_last_event_id(
    chromium: Callable[[str], Page],
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "peregrine_examples.sse", "--host", "127.0.0.1", "--port", str(port)]
    proc, line = start(argv)
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        page = chromium(f"http://127.0.0.1:{port}/?{ENDLESS}&retry=200")
        page.wait_for_events(5)
    finally:
        began = time.monotonic()
        code, first_log = stop(proc)  # SIGTERM to its PID, while the page follows the stream
        stop_s = time.monotonic() - began
    assert code == 0, first_log
    before = _ids(page.report())  # the first server is gone: nothing more arrives
    assert before == list(range(1, len(before) + 1))
    assert re.search(r"stream to 127\.0\.0\.1:\d+ opened at id 1\n", first_log), first_log

    proc, line = start(argv)  # the same port
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        report = page.wait_for_events(len(before) + 5)
    finally:
        _, second_log = stop(proc)
    ids = _ids(report)
    assert ids == list(range(1, len(ids) + 1)), ids  # nothing lost, nothing repeated
    assert int(report["data"]["opens"]) >= 2 and int(report["data"]["errors"]) >= 1, report
    # The reconnection asked for what followed the last event the page had seen.
    assert re.search(rf"stream to 127\.0\.0\.1:\d+ opened at id {before[-1] + 1}\n", second_log), second_log
    assert stop_s < TIMEOUT, f"the server took {stop_s:.1f} s to stop with a stream open"
