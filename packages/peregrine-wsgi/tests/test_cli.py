"""The command line: loading ``MODULE:APP``, the ``wsgi`` plugin, and ``python -m peregrine_wsgi``."""

from __future__ import annotations

import http.client
import logging
import os
import selectors
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine_core import ConfigError
from peregrine_core.plugins import HANDLERS_GROUP, load
from peregrine_wsgi import WSGIHandler, load_app, make_handler
from peregrine_wsgi._cli import main

TIMEOUT_S = 10.0

APP_SOURCE = textwrap.dedent(
    """
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [
            ("%s|%s|%s" % (environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["wsgi.multiprocess"]))
            .encode("latin-1")
        ]

    class Holder:
        app = application

    def create_app():
        return application

    def broken_factory():
        raise RuntimeError("factory exploded")

    not_callable = 42
    """
)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding ``wsgiapp.py`` (and a broken module), made the current one."""
    name = f"wsgiapp_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    (tmp_path / "broken_mod.py").write_text("import nonexistent_dependency_xyz\n")
    (tmp_path / "raising_mod.py").write_text("raise RuntimeError('settings are wrong')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    yield tmp_path
    for mod in (name, "broken_mod", "raising_mod"):
        sys.modules.pop(mod, None)


def module(app_dir: Path) -> str:
    return f"wsgiapp_{os.getpid()}"


@pytest.mark.parametrize("attr", [":application", "", ":Holder.app", ":create_app()"])
def test_load_app_resolves_every_spelling(app_dir: Path, attr: str) -> None:
    app = load_app(module(app_dir) + attr)
    assert callable(app) and app.__name__ == "application"
    assert str(app_dir) in sys.path  # the current directory was added, as gunicorn does


def test_load_app_calls_a_factory_when_told(app_dir: Path) -> None:
    assert load_app(module(app_dir) + ":create_app", factory=True).__name__ == "application"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_abc:app", "no module named 'no_such_module_abc'"),
        ("{mod}:missing", "has no attribute 'missing'"),
        ("{mod}:not_callable", "not a WSGI application"),
        ("{mod}:broken_factory()", "factory exploded"),
        ("broken_mod:app", "No module named 'nonexistent_dependency_xyz'"),
        ("raising_mod:app", "RuntimeError: settings are wrong"),
        ("not a spec", "is not MODULE:ATTR"),
        ("{mod}:create_app(1)", "is not MODULE:ATTR"),
    ],
)
def test_load_app_errors_are_one_line_config_errors(app_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_app(spec.format(mod=module(app_dir)))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_make_handler_takes_the_root_path_from_script_name(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPT_NAME", "/mounted/")
    handler = make_handler(module(app_dir))
    assert isinstance(handler, WSGIHandler) and handler.root_path == "/mounted"
    monkeypatch.setenv("SCRIPT_NAME", "relative")
    with pytest.raises(ConfigError, match="SCRIPT_NAME"):
        make_handler(module(app_dir))


def test_make_handler_needs_an_argument() -> None:
    with pytest.raises(ConfigError, match="peregrine wsgi MODULE:APP"):
        make_handler(None)


def test_wsgi_is_registered_as_a_handler_plugin() -> None:
    assert load(HANDLERS_GROUP, "wsgi") is make_handler


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The command configures the root logger: undo it after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_a_missing_module_is_a_one_line_error(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no_such_module_abc:app", "--host", "127.0.0.1", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no module named 'no_such_module_abc'" in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("restore_logging")
def test_a_bad_root_path_is_a_usage_error(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([module(app_dir), "--root-path", "nope"])
    assert info.value.code == 2
    assert "--root-path" in capsys.readouterr().err


def _serve(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    seen: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while True:
            if not sel.select(TIMEOUT_S):
                _stop(proc)
                pytest.fail(f"no 'listening on' line within {TIMEOUT_S} s: {seen}")
            line = proc.stderr.readline()
            if not line:
                _stop(proc)
                pytest.fail(f"the server exited: {seen}")
            seen.append(line)
            if "listening on" in line:
                port = int(line.split("listening on ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
                return proc, port


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_python_m_peregrine_wsgi_serves_an_app_with_a_root_path(app_dir: Path) -> None:
    argv = [sys.executable, "-m", "peregrine_wsgi", f"{module(app_dir)}:create_app", "--factory"]
    argv += ["--root-path", "/api", "--host", "127.0.0.1", "--port", "0", "--handler-threads", "4"]
    proc, port = _serve(argv, app_dir)
    try:
        assert _get(port, "/api/items?x=1") == (200, b"/api|/items|False")
    finally:
        assert _stop(proc) == 0


def test_peregrine_wsgi_with_two_processes_reports_multiprocess(app_dir: Path) -> None:
    argv = [sys.executable, "-m", "peregrine_core", "wsgi", module(app_dir)]
    argv += ["--host", "127.0.0.1", "--port", "0", "--processes", "2"]
    proc, port = _serve(argv, app_dir, env={"SCRIPT_NAME": "/root"})
    try:
        assert _get(port, "/root/x") == (200, b"/root|/x|True")
    finally:
        _stop(proc)
