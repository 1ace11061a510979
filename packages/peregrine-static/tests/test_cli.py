"""The command line and the ``static`` handler plugin."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine_core import ConfigError
from peregrine_core.cli import load_app
from peregrine_core.plugins import HANDLERS_GROUP, load
from peregrine_static import DirServer
from peregrine_static._cli import build_parser, main, make_handler

TIMEOUT_S = 20.0


def test_make_handler_serves_the_given_directory(root: Path) -> None:
    handler = make_handler(str(root))
    assert isinstance(handler, DirServer)
    assert handler.root == str(root)
    assert handler.listing is False


@pytest.mark.parametrize("argument", [None, ""])
def test_make_handler_defaults_to_the_current_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch, argument: str | None
) -> None:
    monkeypatch.chdir(root)
    assert make_handler(argument).root == str(root)


def test_make_handler_rejects_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an existing directory"):
        make_handler(str(tmp_path / "nope"))


def test_static_is_registered_as_a_handler_plugin(root: Path) -> None:
    assert load(HANDLERS_GROUP, "static") is make_handler
    handler = load_app("static", str(root))
    assert isinstance(handler, DirServer) and handler.root == str(root)


def test_parser_defaults_follow_http_server() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 8000, "auto")
    assert args.directory is None and args.listing is False and args.show_hidden is False


def test_parser_accepts_http_server_spellings(root: Path) -> None:
    args = build_parser().parse_args(["-b", "127.0.0.1", "-d", str(root), "-p", "0", "--workers", "2"])
    assert (args.host, args.directory_option, args.port, args.workers) == (
        "127.0.0.1",
        str(root),
        0,
        2,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "70000"],
        ["--port", "x"],
        ["--workers", "0"],
        ["--workers", "many"],
        ["/definitely/not/a/dir"],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_a_port_given_as_directory_gets_a_hint(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit):
        main(["8080"])
    assert "use --port 8080" in capsys.readouterr().err


def test_directory_given_twice_is_an_error(root: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(root), "-d", str(root)])


def _read_line_with_timeout(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(TIMEOUT_S)
    assert lines, "the server printed nothing in time"
    return lines[0]


@pytest.mark.parametrize("extra", [[], ["--listing"]])
def test_python_m_peregrine_static_serves_and_stops_on_sigint(root: Path, extra: list[str]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peregrine_static",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "-q",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = _read_line_with_timeout(proc)
        assert line.startswith(f"Serving {root} on http://127.0.0.1:")
        port = int(line.rstrip().rstrip("/").rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        conn.request("GET", "/hello.txt")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"hello world\n"
        conn.request("GET", "/empty/")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == (200 if extra else 404)
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root_logger = logging.getLogger()
    handlers, level = list(root_logger.handlers), root_logger.level
    yield
    for handler in root_logger.handlers:
        if handler not in handlers:
            root_logger.removeHandler(handler)
    root_logger.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_port_in_use_is_reported(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([str(root), "--host", "127.0.0.1", "--port", str(port), "-q"]) == 1
    assert "cannot listen" in capsys.readouterr().err
