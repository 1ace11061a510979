"""The websocket example in a real browser: Debian's headless Chromium runs its page.

Strategy: the page takes about eleven seconds (ten messages, one a second), longer than
``--dump-dom`` waits, so Chromium is driven through the DevTools protocol instead. It starts
on the page's URL with ``--remote-debugging-port=0`` and writes the port it chose into
``DevToolsActivePort`` in its profile; the test asks ``/json/list`` for the page's DevTools
WebSocket and, with the ``websockets`` client, evaluates a small expression every 0.2 s
that returns what the page recorded on ``<body>`` (``data-state``, ``data-sent``,
``data-received``, ``data-close-code``, ``data-was-clean``) and the texts it displayed,
until the page reports its WebSocket closed. The server side is the example's handler
wrapped so that it records every message and the close it saw.

Chromium runs in its own session (process group) with a fresh profile, every wait has a
timeout, and the whole group is killed afterwards, whatever happened. Without
``/usr/bin/chromium`` (Debian's ``chromium`` package) the test is skipped.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from peregrine_core.testing import serve
from peregrine_examples.websocket import WebSocketExample
from peregrine_ws import WebSocketConnection

from examples_support import CHROMIUM, CHROMIUM_FLAGS, KILL_TIMEOUT, kill_group

START_TIMEOUT = 30.0  # Chromium writing DevToolsActivePort
PAGE_TIMEOUT = 45.0  # the page's whole exchange, about 11 s
POLL_INTERVAL = 0.2

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)",
)

#: What the page reports: its progress on <body>, its status line and every message shown.
PROBE = """(() => {
  const status = document.getElementById("status");
  if (status === null || document.readyState === "loading") return null;
  return JSON.stringify({
    data: Object.assign({}, document.body.dataset),
    status: status.textContent,
    shown: Array.from(document.querySelectorAll("#messages li"), (li) => [li.className, li.textContent]),
  });
})()"""


class RecordingExample(WebSocketExample):
    """The websocket example, keeping what its hooks saw (thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.connects = 0
        self.messages: list[str | bytes] = []
        self.disconnects: list[tuple[int, str]] = []
        self.disconnected = threading.Event()

    def handle_ws_conn(self, conn: WebSocketConnection) -> None:
        super().handle_ws_conn(conn)
        with self.lock:
            self.connects += 1

    def handle_ws_message(self, conn: WebSocketConnection, message: str | bytes) -> None:
        with self.lock:
            self.messages.append(message)
        super().handle_ws_message(conn, message)

    def handle_ws_disconn(self, conn: WebSocketConnection, code: int, reason: str) -> None:
        super().handle_ws_disconn(conn, code, reason)
        with self.lock:
            self.disconnects.append((code, reason))
        self.disconnected.set()


@pytest.fixture
def chromium_for(tmp_path: Path) -> Iterator[Any]:
    """Yields ``start(url) -> (devtools port, log path)``; kills every Chromium it started."""
    procs: list[subprocess.Popen[bytes]] = []
    profile = tmp_path / "profile"
    log_path = tmp_path / "chromium.log"

    def start(url: str) -> tuple[int, Path]:
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
        while True:
            text = active.read_text() if active.exists() else ""
            if text.endswith("\n") or len(text.splitlines()) >= 2:
                return int(text.splitlines()[0]), log_path
            if proc.poll() is not None:
                pytest.fail(f"Chromium exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"Chromium did not open DevTools within {START_TIMEOUT} s")
            time.sleep(0.05)

    try:
        yield start
    finally:
        for proc in procs:
            kill_group(proc)


def _page_websocket_url(devtools_port: int, page_url: str) -> str:
    """The DevTools WebSocket of the tab showing ``page_url``."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", devtools_port, timeout=START_TIMEOUT)
        try:
            conn.request("GET", "/json/list")
            targets = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        for target in targets:
            if target.get("type") == "page" and target.get("url", "").startswith(page_url):
                url: str = target["webSocketDebuggerUrl"]
                return url
        if time.monotonic() > deadline:
            pytest.fail(f"no tab shows {page_url}: {targets}")
        time.sleep(0.1)


def _evaluate(cdp: ClientConnection, call_id: int, expression: str) -> Any:
    """``Runtime.evaluate`` in the page; the value of ``expression``."""
    cdp.send(
        json.dumps(
            {
                "id": call_id,
                "method": "Runtime.evaluate",
                "params": {"expression": expression, "returnByValue": True},
            }
        )
    )
    deadline = time.monotonic() + PAGE_TIMEOUT
    while True:
        reply = json.loads(cdp.recv(timeout=max(0.0, deadline - time.monotonic())))
        if reply.get("id") == call_id:  # anything else is an event
            assert "error" not in reply, reply
            result = reply["result"]
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")


def _run_page(devtools_port: int, page_url: str) -> dict[str, Any]:
    """Follow the page until it reports its WebSocket closed; what it finally showed."""
    with connect(
        _page_websocket_url(devtools_port, page_url),
        proxy=None,
        open_timeout=START_TIMEOUT,
        close_timeout=KILL_TIMEOUT,
        ping_interval=None,
        max_size=None,
        compression=None,
    ) as cdp:
        deadline = time.monotonic() + PAGE_TIMEOUT
        report: dict[str, Any] = {}
        for call_id in range(1, 1_000_000):
            value = _evaluate(cdp, call_id, PROBE)
            if value is not None:  # None while the document is still loading
                report = json.loads(value)
                if report["data"].get("state") == "closed":
                    return report
            if time.monotonic() > deadline:
                pytest.fail(f"the page did not finish within {PAGE_TIMEOUT} s; it shows {report}")
            time.sleep(POLL_INTERVAL)
    raise AssertionError("unreachable")


def test_websocket_page_in_chromium_exchanges_ten_messages_and_closes_cleanly(chromium_for: Any) -> None:
    handler = RecordingExample()
    with serve(handler) as srv:
        page_url = f"http://127.0.0.1:{srv.port}/"
        devtools_port, log_path = chromium_for(page_url)
        report = _run_page(devtools_port, page_url)
        assert handler.disconnected.wait(KILL_TIMEOUT), "the server never saw the connection end"

    data = report["data"]
    assert data.get("error") is None, report
    assert (data["sent"], data["received"]) == ("10", "10"), report
    assert data["wasClean"] == "true", report
    assert data["closeCode"] in ("1000", "1005"), report
    assert report["status"] == "Disconnected"
    shown = report["shown"]
    assert shown[:20] == [["sent", "Hello server!"], ["received", "Received: Hello client!"]] * 10
    assert shown[20:] == [["note", f"Connection closed (code {data['closeCode']}, clean)"]]

    # The server's side of the same story: one connection, ten messages, a normal close.
    with handler.lock:
        assert handler.connects == 1
        assert handler.messages == ["Hello server!"] * 10
        assert handler.disconnects == [(1000, "done")]
    assert "Uncaught" not in log_path.read_text(errors="replace")
