"""Construction checks, graceful shutdown, signals, plugins and the command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from peregrine_core import PluginError, Request, Response, Server, ServerConfig, plugins

from conftest import TIMEOUT, Reader, connect


class Slow:
    def __init__(self) -> None:
        self.closed = 0

    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path == "/sleep":
            time.sleep(1.0)
        resp.set_body(req.path)

    def close(self) -> None:
        self.closed += 1


def _run_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    assert server.wait_started(TIMEOUT)
    return thread


# --- construction ----------------------------------------------------------------------------


def test_a_handler_class_is_instantiated_once() -> None:
    created: list[object] = []

    class Handler:
        def __init__(self) -> None:
            created.append(self)

        def handle_request(self, req: Request, resp: Response) -> None:
            resp.set_body("ok")

    server = Server(Handler, port=0)
    assert len(created) == 1 and server.handler is created[0]
    server.close()


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (object(), "has no handle_request(req, resp) method"),
        (type("NoMethod", (), {}), "has no handle_request(self, req, resp) method"),
        (type("NotCallable", (), {"handle_request": 3})(), "handle_request is not callable"),
        (
            type("OneArg", (), {"handle_request": lambda self, req: None})(),
            "must accept two arguments (req, resp)",
        ),
        (
            type("NeedsArgs", (), {"__init__": lambda self, x: None, "handle_request": lambda s, a, b: None}),
            "cannot be instantiated without arguments",
        ),
        (
            type("BadClose", (), {"handle_request": lambda s, a, b: None, "close": 1})(),
            "close exists but is not callable",
        ),
    ],
)
def test_a_wrong_handler_is_refused_with_a_type_error_naming_what_is_missing(
    handler: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Server(handler, port=0)


def test_websocket_hooks_without_the_plugin_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    class WsHandler:
        def handle_request(self, req: Request, resp: Response) -> None:
            pass

        def handle_ws_message(self, conn: object, message: str | bytes) -> None:
            pass

    plugins._reset_cache()
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    try:
        with pytest.raises(PluginError, match=r"defines handle_ws_message .*pip install peregrine-ws"):
            Server(WsHandler(), port=0)
    finally:
        plugins._reset_cache()


def test_duplicate_plugin_names_are_an_error_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dist:
        def __init__(self, name: str) -> None:
            self.name = name

    class EP:
        def __init__(self, dist: str) -> None:
            self.name = "websocket"
            self.value = f"{dist}:X"
            self.dist = Dist(dist)

    plugins._reset_cache()
    monkeypatch.setattr(plugins, "entry_points", lambda group: [EP("alpha"), EP("beta")])
    try:
        with pytest.raises(PluginError, match="claimed by both alpha and beta"):
            plugins.load(plugins.UPGRADES_GROUP, "websocket")
    finally:
        plugins._reset_cache()


def test_port_is_readable_after_binding_port_zero() -> None:
    with Server(Slow, host="127.0.0.1", port=0) as server:
        assert server.port > 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT):
            pass  # listening already


# --- shutdown ------------------------------------------------------------------------------


def test_shutdown_lets_the_in_flight_request_finish_and_closes_idle_connections() -> None:
    handler = Slow()
    server = Server(handler, host="127.0.0.1", port=0, config=ServerConfig(graceful_timeout=5.0))
    thread = _run_in_thread(server)
    idle = connect(server.port)
    idle.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
    idle_reader = Reader(idle)
    assert idle_reader.response().body == b"/idle"
    busy = connect(server.port)
    busy.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # the handler is running
    started = time.monotonic()
    server.shutdown()
    reader = Reader(busy)
    reply = reader.response()
    assert reply.body == b"/sleep" and reply.header("connection") == "close"
    assert reader.closed()
    assert idle_reader.closed()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3.0
    assert handler.closed == 1
    # the listener is closed: new connections are refused, not left hanging
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    busy.close()
    idle.close()


def test_a_request_waiting_on_an_idle_connection_at_shutdown_is_answered_not_reset() -> None:
    handler = Slow()
    # handoff_delay 1 s: the slow call keeps the loop for its whole second, so the late
    # request is still in the kernel when the shutdown is seen.
    config = ServerConfig(workers=1, graceful_timeout=5.0, handoff_delay=1.0)
    server = Server(handler, host="127.0.0.1", port=0, config=config)
    thread = _run_in_thread(server)
    with connect(server.port) as idle, connect(server.port) as busy:
        idle.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        idle_reader = Reader(idle)
        assert idle_reader.response().body == b"/warm"  # idle, with the worker
        busy.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the worker is in the slow handler
        idle.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")  # waits in the kernel
        server.shutdown()  # seen by the worker before it polls again
        reply = idle_reader.response()
        assert reply.body == b"/late" and reply.header("connection") == "close"
        assert idle_reader.closed()
        assert Reader(busy).response().body == b"/sleep"
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_shutdown_closes_what_is_still_in_flight_at_the_deadline() -> None:
    handler = Slow()
    server = Server(handler, host="127.0.0.1", port=0, config=ServerConfig(graceful_timeout=0.5))
    thread = _run_in_thread(server)
    with connect(server.port) as sock:
        sock.sendall(b"GET /partial HTTP/1.1\r\nHo")  # a request that never completes
        time.sleep(0.1)
        started = time.monotonic()
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert 0.4 < time.monotonic() - started < 2.0
        assert Reader(sock).closed()
    assert handler.closed == 1


def test_shutdown_before_start_is_not_lost() -> None:
    server = Server(Slow, host="127.0.0.1", port=0)
    server.shutdown()
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_first_signal_stops_gracefully_and_a_second_sigint_stops_at_once() -> None:
    handler = Slow()
    server = Server(handler, host="127.0.0.1", port=0, config=ServerConfig(graceful_timeout=30.0))
    thread = _run_in_thread(server)
    with connect(server.port) as sock:
        sock.sendall(b"GET /partial HTTP/1.1\r\nHo")
        time.sleep(0.1)
        server._on_signal(signal.SIGTERM, None)
        time.sleep(0.3)
        assert thread.is_alive(), "a graceful stop waits for the request in flight"
        started = time.monotonic()
        server._on_signal(signal.SIGINT, None)
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert time.monotonic() - started < 1.0
        assert Reader(sock).closed()
    assert handler.closed == 1


# --- processes and the command line ------------------------------------------------------


APP = """
from peregrine_core import Request, Response

class App:
    def handle_request(self, req: Request, resp: Response) -> None:
        resp.set_body("app " + req.path)

app = App()
"""


def _start_cli(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    (tmp_path / "cliapp.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, *args, "cliapp:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.communicate(timeout=TIMEOUT)[0])


@pytest.mark.parametrize(
    "launcher", [["-m", "peregrine_core"], ["-c", "from peregrine_core.cli import main; main()"]]
)
def test_command_line_serves_an_app_and_sigterm_exits_0(tmp_path: Path, launcher: list[str]) -> None:
    proc, port = _start_cli(tmp_path, *launcher)
    try:
        with connect(port) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert Reader(sock).response().body == b"app /x"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"listening on 127.0.0.1:{port}" in out
    assert "shutdown complete" in out


def test_command_line_help_documents_every_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "peregrine_core", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    for field in ServerConfig.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in out
    for option in ("--host", "--port", "--workers", "--accept-threads", "MODULE:ATTR"):
        assert option in out


def test_command_line_reports_a_bad_app_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "peregrine_core", "nosuchmodule:app", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "No module named 'nosuchmodule'" in result.stderr


def test_sigint_on_the_main_thread_stops_the_server(tmp_path: Path) -> None:
    proc, _ = _start_cli(tmp_path, "-m", "peregrine_core")
    try:
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "workers stopped" in out


@pytest.mark.parametrize(
    "method",
    [
        lambda self, req, resp: None,
        lambda self, req, resp, extra=1: None,
        lambda self, *args: None,
        lambda self, req, *rest, flag=False: None,
    ],
)
def test_handle_request_signatures_that_accept_two_arguments_pass(method: Any) -> None:
    handler = type("H", (), {"handle_request": method})()
    Server(handler, port=0).close()


@pytest.mark.parametrize(
    "method",
    [
        lambda self: None,
        lambda self, req, resp, extra: None,
        lambda self, req, resp, *, must: None,
    ],
)
def test_handle_request_signatures_that_cannot_take_req_and_resp_fail(method: Any) -> None:
    handler = type("H", (), {"handle_request": method})()
    with pytest.raises(TypeError, match="must accept two arguments"):
        Server(handler, port=0)


def test_date_header_is_an_imf_fixdate_in_any_locale() -> None:
    from email.utils import formatdate

    from peregrine_core._worker import http_date

    for t in (0.0, 784111777.0, 1_000_000_000.5, time.time()):
        assert http_date(t).decode() == formatdate(t, usegmt=True)
