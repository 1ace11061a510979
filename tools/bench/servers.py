"""The servers under test: how each one is started and checked, and what is measured of it.

Strategy: every server is a :class:`ServerSpec` (a name, a check saying why it cannot run here,
and a function building its command line for a port, one per app it serves: the 6150-byte
body, and for some the blocking handlers of ``apps/_blocking.py``). :mod:`running` starts one
and stops it.

Invariants:
- Every server binds 127.0.0.1, on a port found free just before it starts.
- The harness measures a server's whole process tree (:mod:`proctree`): master and workers.
- Every server gets the same listen backlog (:data:`BACKLOG_CONNECTIONS`) where it offers the
  option, and no access log.
- In the blocking scenarios every threaded server runs the same number of handler threads
  (:attr:`BenchEnv.peer_threads`); Peregrine keeps its own default unless the harness was given
  a number and this Peregrine has ``--handler-threads``.
- ``peregrine-baseline`` (``run.py --baseline REV``) runs the ``peregrine`` server's command
  line, with ``PYTHONPATH`` on the baseline worktree's ``packages/*/src`` instead of this
  checkout's; it sits out a scenario whose command needs an option that revision lacks.
- In the WSGI and streaming scenarios every WSGI server (``peregrine-wsgi``, gunicorn's
  gthread worker, waitress, granian's WSGI interface) runs one process with the same
  N handler threads, always given (``--handler-threads``, ``--threads``,
  ``--blocking-threads``), and the same app, ``apps/wsgi_scenario_app.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from apps._body import BODY
from baseline import Baseline
from loadgen import AppKind

LOOPBACK: Final = "127.0.0.1"
BACKLOG_CONNECTIONS: Final = 2048
START_TIMEOUT_S: Final = 30.0
STOP_GRACE_S: Final = 5.0
CHECK_TIMEOUT_S: Final = 60.0
MAX_CONNECTIONS: Final = 4096
"""Connection limit given to nginx, h2o and waitress (their defaults, 512, 1024 and 100, are
at or below the scenarios' connection counts)."""
BASELINE_NAME: Final = "peregrine-baseline"
"""The server that runs an earlier revision of Peregrine (``run.py --baseline REV``)."""
DEFAULT_HANDLER_THREADS: Final = 32
"""Handler threads of gunicorn-gthread and waitress in the blocking scenarios (Peregrine's
``ServerConfig.handler_threads`` default)."""

_SBIN_PATH: Final = "/usr/local/sbin:/usr/sbin:/sbin"
PAGE: Final = "/"


class StartError(Exception):
    """A server did not start or did not answer ``GET /`` correctly."""


@dataclass(frozen=True)
class BenchEnv:
    """Where things are for one run of the harness.

    Attributes:
        repo: the repository's root (the servers' working directory).
        workdir: a private temporary directory for configs, logs and the static file.
        static_dir: the directory holding ``index.html`` (the 6150-byte body).
        python: the interpreter running Peregrine and the stdlib server.
        venv_python: the interpreter of the peers' virtual environment, if there is one.
        server_cpu: the CPU every server is pinned to, or ``None`` for no pinning.
        handler_threads: the thread count given on the harness's command line, if any.
        baseline: the earlier revision checked out for ``peregrine-baseline``, if any.
    """

    repo: Path
    workdir: Path
    static_dir: Path
    python: str
    venv_python: str | None
    server_cpu: int | None
    handler_threads: int | None = None
    baseline: Baseline | None = None

    @property
    def peer_threads(self) -> int:
        """The handler threads of the threaded peers in the blocking scenarios."""
        return self.handler_threads or DEFAULT_HANDLER_THREADS


@dataclass(frozen=True)
class ServerSpec:
    """One server of the comparison.

    Attributes:
        name: short name used on the command line and in the report.
        title: what runs, for the report (``uvicorn + uvloop + httptools``).
        ours: whether this is one of Peregrine's servers (ratios are computed for those).
        check: returns ``None`` when the server can run here, else the reason it cannot.
        command: builds the command line for a port (the harness prefixes ``taskset``) serving
            the 6150-byte body, or ``None`` for a server run in the blocking scenarios only.
        blocking_command: the same for the blocking handlers, or ``None`` when the server does
            not run the blocking scenarios (static file servers, asyncio servers).
        wsgi_command: the same for the WSGI scenarios' app (``apps/wsgi_scenario_app.py``),
            or ``None`` (servers that run no WSGI app).
        stream_command: the same for ``stream-1g``'s 1 GiB download, or ``None``.
        environ: builds the server's environment (default: :func:`server_environ` of the
            checkout, with Peregrine's ``src`` directories when ``ours``).
        app_check: returns ``None`` when the server can run the scenarios of an app here, else
            the reason it sits them out (default: it can run all it serves).
    """

    name: str
    title: str
    ours: bool
    check: Callable[[BenchEnv], str | None]
    command: Callable[[BenchEnv, int], list[str]] | None
    blocking_command: Callable[[BenchEnv, int], list[str]] | None = None
    environ: Callable[[BenchEnv], dict[str, str]] | None = None
    app_check: Callable[[BenchEnv, AppKind], str | None] | None = None
    wsgi_command: Callable[[BenchEnv, int], list[str]] | None = None
    stream_command: Callable[[BenchEnv, int], list[str]] | None = None

    def environ_for(self, env: BenchEnv) -> dict[str, str]:
        """The environment the server runs in."""
        if self.environ is not None:
            return self.environ(env)
        return server_environ(env.repo, ours=self.ours)

    def skip_reason(self, env: BenchEnv, app: AppKind) -> str | None:
        """Why this server sits out the scenarios of ``app`` here, or ``None`` if it runs them
        (or does not serve ``app`` at all: :meth:`serves` says that)."""
        if self.app_check is None or not self.serves(app):
            return None
        return self.app_check(env, app)

    def command_for(self, app: AppKind) -> Callable[[BenchEnv, int], list[str]] | None:
        """The command builder for ``app``, or ``None`` if this server does not serve it."""
        if app == "body":
            return self.command
        if app == "blocking":
            return self.blocking_command
        if app == "wsgi":
            return self.wsgi_command
        return self.stream_command

    def serves(self, app: AppKind) -> bool:
        """Whether this server runs the scenarios of ``app``."""
        return self.command_for(app) is not None


# --- command lines ---------------------------------------------------------------------------


def _peregrine(env: BenchEnv, port: int) -> list[str]:
    return [
        env.python, "-m", "peregrine_core", "tools.bench.apps.peregrine_app:Handler",
        "--port", str(port), "--host", LOOPBACK, "--workers", "1",
        "--backlog", str(BACKLOG_CONNECTIONS), "--log-level", "warning",
    ]  # fmt: skip


def _peregrine_blocking_for(*, baseline: bool) -> Callable[[BenchEnv, int], list[str]]:
    """The blocking scenarios' command of ``peregrine`` (or of ``peregrine-baseline``): the
    same line, ``--handler-threads N`` added when asked for and that revision has it."""

    def command(env: BenchEnv, port: int) -> list[str]:
        line = [
            env.python, "-m", "peregrine_core", "tools.bench.apps.peregrine_blocking_app:Handler",
            "--port", str(port), "--host", LOOPBACK, "--workers", "1",
            "--backlog", str(BACKLOG_CONNECTIONS), "--log-level", "warning",
        ]  # fmt: skip
        if (
            env.handler_threads is not None
            and peregrine_handler_threads(env, baseline=baseline) is not None
        ):
            line += ["--handler-threads", str(env.handler_threads)]
        return line

    return command


_peregrine_blocking: Final = _peregrine_blocking_for(baseline=False)
_peregrine_baseline_blocking: Final = _peregrine_blocking_for(baseline=True)


def _peregrine_stream(env: BenchEnv, port: int) -> list[str]:
    """``stream-1g`` on Peregrine's core: ``resp.set_stream`` of a generator
    (``--handler-threads N`` when asked for and this Peregrine has it)."""
    line = [
        env.python, "-m", "peregrine_core", "tools.bench.apps.peregrine_stream_app:Handler",
        "--port", str(port), "--host", LOOPBACK, "--workers", "1",
        "--backlog", str(BACKLOG_CONNECTIONS), "--log-level", "warning",
    ]  # fmt: skip
    if env.handler_threads is not None and peregrine_handler_threads(env) is not None:
        line += ["--handler-threads", str(env.handler_threads)]
    return line


WSGI_APP: Final = "tools.bench.apps.wsgi_scenario_app:app"
"""The app every WSGI server runs in the WSGI and streaming scenarios."""
PEREGRINE_WSGI_HANDLER: Final = "tools.bench.apps.peregrine_wsgi_app:handler"
"""``peregrine_wsgi.WSGIHandler(app)`` on :data:`WSGI_APP`, served by the core's command."""


def _peregrine_wsgi(env: BenchEnv, port: int) -> list[str]:
    """Peregrine's WSGI adapter on the WSGI app: the core's command line serving
    ``WSGIHandler(app)`` (what ``peregrine wsgi MODULE:APP`` builds, named by module and
    attribute: the ``wsgi`` plugin is found only through an installed package's entry
    point), 1 worker, always ``--handler-threads N``."""
    return [
        env.python, "-m", "peregrine_core", PEREGRINE_WSGI_HANDLER,
        "--port", str(port), "--host", LOOPBACK, "--workers", "1",
        "--handler-threads", str(env.peer_threads),
        "--backlog", str(BACKLOG_CONNECTIONS), "--log-level", "warning",
    ]  # fmt: skip


def _check_peregrine_wsgi(env: BenchEnv) -> str | None:
    """This checkout must have ``peregrine_wsgi`` (importable from its ``src``) and a core
    command line with ``--handler-threads``."""
    works, output = _help_text(env.python, "peregrine_core", env)
    if not works:
        return (
            f"`python -m peregrine_core --help` fails here, so the command is unavailable "
            f"({output})"
        )
    if "--handler-threads" not in output:
        return "this checkout's `python -m peregrine_core` has no `--handler-threads`"
    works, output = _help_text(env.python, "peregrine_wsgi", env)
    if not works:
        return f"`python -m peregrine_wsgi --help` fails here: no usable peregrine_wsgi ({output})"
    return None


_HANDLER_THREADS_HELP: Final = re.compile(
    r"--handler-threads\b(?:(?!\n  -).)*?\(default:\s*([^)\s]+)\)", re.DOTALL
)


def peregrine_handler_threads(env: BenchEnv, *, baseline: bool = False) -> str | None:
    """``None`` when this checkout's ``python -m peregrine_core`` (the baseline's, with
    ``baseline``) has no ``--handler-threads``; else its default as its ``--help`` prints it
    (``"?"`` when unreadable)."""
    works, help_text = _help_text(env.python, "peregrine_core", env, baseline=baseline)
    return handler_threads_default(help_text) if works else None


def handler_threads_default(help_text: str) -> str | None:
    """From a ``--help`` text: ``None`` without ``--handler-threads``, else the default it
    names (``"?"`` when it names none)."""
    if "--handler-threads" not in help_text:
        return None
    match = _HANDLER_THREADS_HELP.search(help_text)
    return match.group(1) if match else "?"


def missing_options(help_text: str, command: Sequence[str]) -> list[str]:
    """The long options of ``command`` (``--backlog``) that ``help_text`` does not mention."""
    options = dict.fromkeys(a.split("=", 1)[0] for a in command if a.startswith("--"))
    return [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", help_text)]


def baseline_environ(env: BenchEnv) -> dict[str, str]:
    """``peregrine-baseline``'s environment: ``PYTHONPATH`` on the baseline worktree's
    ``packages/*/src`` (then the repository root, for this checkout's apps)."""
    if env.baseline is None:
        raise StartError("no baseline revision (run.py --baseline REV)")
    return server_environ(env.repo, ours=True, src=env.baseline.src_dirs)


def _check_baseline(env: BenchEnv) -> str | None:
    if env.baseline is None:
        return "no baseline revision was checked out (`--baseline REV`; see the notes)"
    works, output = _help_text(env.python, "peregrine_core", env, baseline=True)
    if not works:
        return (
            f"`python -m peregrine_core --help` fails at {env.baseline.short}, so the command "
            f"is unavailable ({output})"
        )
    try:  # the worktree's package, not one installed in the interpreter, must be the one found
        found = subprocess.run(
            [env.python, "-c", "import peregrine_core; print(peregrine_core.__file__)"],
            cwd=env.repo,
            env=baseline_environ(env),
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {env.python}: {exc}"
    if not Path(found).is_relative_to(env.baseline.root):
        return f"`import peregrine_core` finds {found or 'nothing'}, not the baseline worktree's"
    return None


def _check_baseline_app(env: BenchEnv, app: AppKind) -> str | None:
    """Why the baseline sits out ``app``'s scenarios: its ``--help`` lacks an option of the
    command, or, for the blocking scenarios, ``--handler-threads`` (handlers off the loop)."""
    build = _peregrine if app == "body" else _peregrine_baseline_blocking
    if env.baseline is None:
        return "no baseline revision"
    help_text = _help_text(env.python, "peregrine_core", env, baseline=True)[1]
    needed = build(env, 0)
    if app == "blocking":
        needed = [*needed, "--handler-threads"]
    missing = missing_options(help_text, needed)
    if not missing:
        return None
    what = "the blocking scenarios" if app == "blocking" else "the body scenarios"
    return (
        f"{env.baseline.short}'s `python -m peregrine_core` has no "
        f"{', '.join(f'`{m}`' for m in missing)}, which {what} need"
    )


def _peregrine_static(env: BenchEnv, port: int) -> list[str]:
    help_text = _help_text(env.python, "peregrine_static", env)[1]
    command = [
        env.python, "-m", "peregrine_static", str(env.static_dir),
        "--port", str(port), "--host", LOOPBACK,
    ]  # fmt: skip
    if "--workers" in help_text:
        command += ["--workers", "1"]
    if "--quiet" in help_text:
        command.append("--quiet")
    return command


def _venv(env: BenchEnv) -> str:
    if env.venv_python is None:
        raise StartError("the peers' virtual environment is missing")
    return env.venv_python


def _uvicorn(env: BenchEnv, port: int) -> list[str]:
    return [
        _venv(env), "-m", "uvicorn", "tools.bench.apps.asgi_app:app",
        "--host", LOOPBACK, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--backlog", str(BACKLOG_CONNECTIONS), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _granian(interface: str, app: str) -> Callable[[BenchEnv, int], list[str]]:
    def command(env: BenchEnv, port: int) -> list[str]:
        return [
            _venv(env), "-m", "granian", "--interface", interface,
            "--host", LOOPBACK, "--port", str(port), "--workers", "1", "--runtime-threads", "1",
            "--backlog", str(BACKLOG_CONNECTIONS), "--no-ws", "--no-access-log",
            "--log-level", "warning", app,
        ]  # fmt: skip

    return command


def _app(module: str, *, peers_venv: bool) -> Callable[[BenchEnv, int], list[str]]:
    """An app of :mod:`tools.bench.apps` that serves itself (``--host/--port/--backlog``),
    run by the peers' interpreter or by the one running Peregrine."""

    def command(env: BenchEnv, port: int) -> list[str]:
        return [
            _venv(env) if peers_venv else env.python, "-m", f"tools.bench.apps.{module}",
            "--host", LOOPBACK, "--port", str(port), "--backlog", str(BACKLOG_CONNECTIONS),
        ]  # fmt: skip

    return command


def _gunicorn(env: BenchEnv, port: int) -> list[str]:
    return [
        _venv(env), "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
        "--bind", f"{LOOPBACK}:{port}", "--backlog", str(BACKLOG_CONNECTIONS),
        "--log-level", "warning", "tools.bench.apps.wsgi_app:app",
    ]  # fmt: skip


def _gunicorn_gthread_on(app: str) -> Callable[[BenchEnv, int], list[str]]:
    def command(env: BenchEnv, port: int) -> list[str]:
        return [
            _venv(env), "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
            "--threads", str(env.peer_threads),
            "--bind", f"{LOOPBACK}:{port}", "--backlog", str(BACKLOG_CONNECTIONS),
            "--log-level", "warning", app,
        ]  # fmt: skip

    return command


def _waitress_on(app: str) -> Callable[[BenchEnv, int], list[str]]:
    def command(env: BenchEnv, port: int) -> list[str]:
        return [
            _venv(env), "-m", "waitress", f"--listen={LOOPBACK}:{port}",
            f"--threads={env.peer_threads}", f"--backlog={BACKLOG_CONNECTIONS}",
            f"--connection-limit={MAX_CONNECTIONS}", app,
        ]  # fmt: skip

    return command


_gunicorn_gthread: Final = _gunicorn_gthread_on("tools.bench.apps.wsgi_blocking_app:app")
_waitress: Final = _waitress_on("tools.bench.apps.wsgi_blocking_app:app")


def _granian_wsgi(env: BenchEnv, port: int) -> list[str]:
    """granian's WSGI interface: 1 worker, 1 runtime thread, N blocking threads (the
    threads that run the WSGI app)."""
    return [
        _venv(env), "-m", "granian", "--interface", "wsgi",
        "--host", LOOPBACK, "--port", str(port), "--workers", "1", "--runtime-threads", "1",
        "--blocking-threads", str(env.peer_threads),
        "--backlog", str(BACKLOG_CONNECTIONS), "--no-ws", "--no-access-log",
        "--log-level", "warning", WSGI_APP,
    ]  # fmt: skip


def _nginx(env: BenchEnv, port: int) -> list[str]:
    prefix = env.workdir / f"nginx-{port}"
    prefix.mkdir(mode=0o755)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# One worker serving the 6150-byte file, as a user would configure it for speed.
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {2 * MAX_CONNECTIONS};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {MAX_CONNECTIONS}; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=1000 inactive=60s;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    types {{ text/html html; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {LOOPBACK}:{port} backlog={BACKLOG_CONNECTIONS};
        root {env.static_dir};
        index index.html;
    }}
}}
"""
    )
    binary = find_binary("nginx") or "nginx"
    return [binary, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)]


def _h2o(env: BenchEnv, port: int) -> list[str]:
    conf = env.workdir / f"h2o-{port}.conf"
    conf.write_text(
        f"""# One thread serving the 6150-byte file.
num-threads: 1
max-connections: {MAX_CONNECTIONS}
error-log: {env.workdir}/h2o-{port}-error.log
listen:
  host: {LOOPBACK}
  port: {port}
hosts:
  default:
    paths:
      /:
        file.dir: {env.static_dir}
"""
    )
    binary = find_binary("h2o") or "h2o"
    return [binary, "-c", str(conf)]


# --- availability checks -----------------------------------------------------------------------

_HELP_CACHE: dict[tuple[str, str, str], tuple[bool, str]] = {}


def _help_text(
    python: str, module: str, env: BenchEnv, *, baseline: bool = False
) -> tuple[bool, str]:
    """Run ``python -m module --help`` once (this checkout's, or the baseline's with
    ``baseline``): (it worked, its output or the error's last line)."""
    if baseline and env.baseline is None:
        return False, "no baseline revision"
    environ = baseline_environ(env) if baseline else server_environ(env.repo, ours=True)
    key = (python, module, environ["PYTHONPATH"])
    if key not in _HELP_CACHE:
        try:
            done = subprocess.run(
                [python, "-m", module, "--help"],
                cwd=env.repo,
                env=environ,
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _HELP_CACHE[key] = (False, str(exc))
        else:
            if done.returncode == 0:
                _HELP_CACHE[key] = (True, done.stdout)
            else:
                last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                _HELP_CACHE[key] = (False, last)
    return _HELP_CACHE[key]


def _check_cli(module: str) -> Callable[[BenchEnv], str | None]:
    def check(env: BenchEnv) -> str | None:
        works, output = _help_text(env.python, module, env)
        if not works:
            return (
                f"`python -m {module} --help` fails here, so the command is unavailable ({output})"
            )
        return None

    return check


def _check_imports(*modules: str) -> Callable[[BenchEnv], str | None]:
    def check(env: BenchEnv) -> str | None:
        if env.venv_python is None:
            return "the peers' virtual environment is missing (run without --no-install)"
        code = "; ".join(f"import {m}" for m in modules)
        try:
            done = subprocess.run(
                [env.venv_python, "-c", code],
                cwd=env.repo,
                env=server_environ(env.repo, ours=False),
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot run {env.venv_python}: {exc}"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            return f"`{code}` fails in the peers' environment: {last}"
        return None

    return check


def _check_binary(name: str, package: str) -> Callable[[BenchEnv], str | None]:
    def check(env: BenchEnv) -> str | None:
        if find_binary(name) is None:
            return f"`{name}` is not installed (Debian package `{package}`)"
        return None

    return check


def _check_nothing(env: BenchEnv) -> str | None:
    return None


def find_binary(name: str) -> str | None:
    """The path of program ``name``, looking in the sbin directories too."""
    path = os.environ.get("PATH", "") + os.pathsep + _SBIN_PATH
    return shutil.which(name, path=path)


SERVERS: Final[tuple[ServerSpec, ...]] = (
    ServerSpec(
        "peregrine",
        "Peregrine, 1 worker, handler returning the body (blocking scenarios: the sleeping one; "
        "stream-1g: `resp.set_stream` of a generator)",
        True,
        _check_cli("peregrine_core"),
        _peregrine,
        _peregrine_blocking,
        stream_command=_peregrine_stream,
    ),
    ServerSpec(
        BASELINE_NAME,
        "Peregrine at REV (`--baseline`, a git worktree), the same command as `peregrine`",
        False,
        _check_baseline,
        _peregrine,
        _peregrine_baseline_blocking,
        environ=baseline_environ,
        app_check=_check_baseline_app,
    ),
    ServerSpec(
        "peregrine_static",
        "peregrine_static, static file",
        True,
        _check_cli("peregrine_static"),
        _peregrine_static,
    ),
    ServerSpec(
        "peregrine-wsgi",
        "Peregrine's WSGI adapter, `peregrine_wsgi.WSGIHandler(app)` served by `python -m "
        "peregrine_core`, 1 worker, N handler threads (WSGI and stream scenarios only)",
        True,
        _check_peregrine_wsgi,
        None,
        wsgi_command=_peregrine_wsgi,
        stream_command=_peregrine_wsgi,
    ),
    ServerSpec(
        "uvicorn",
        "uvicorn + uvloop + httptools (ASGI)",
        False,
        _check_imports("uvicorn", "uvloop", "httptools"),
        _uvicorn,
    ),
    ServerSpec(
        "granian-rsgi",
        "granian, RSGI",
        False,
        _check_imports("granian"),
        _granian("rsgi", "tools.bench.apps.rsgi_app:app"),
    ),
    ServerSpec(
        "granian-asgi",
        "granian, ASGI",
        False,
        _check_imports("granian"),
        _granian("asgi", "tools.bench.apps.asgi_app:app"),
    ),
    ServerSpec(
        "aiohttp",
        "aiohttp web.run_app",
        False,
        _check_imports("aiohttp"),
        _app("aiohttp_app", peers_venv=True),
    ),
    ServerSpec(
        "gunicorn-sync",
        "gunicorn, 1 sync worker (WSGI)",
        False,
        _check_imports("gunicorn"),
        _gunicorn,
    ),
    ServerSpec(
        "gunicorn-gthread",
        "gunicorn, 1 gthread worker, N threads (WSGI; blocking, WSGI and stream scenarios only)",
        False,
        _check_imports("gunicorn"),
        None,
        _gunicorn_gthread,
        wsgi_command=_gunicorn_gthread_on(WSGI_APP),
        stream_command=_gunicorn_gthread_on(WSGI_APP),
    ),
    ServerSpec(
        "waitress",
        "waitress, N threads (WSGI; blocking, WSGI and stream scenarios only)",
        False,
        _check_imports("waitress"),
        None,
        _waitress,
        wsgi_command=_waitress_on(WSGI_APP),
        stream_command=_waitress_on(WSGI_APP),
    ),
    ServerSpec(
        "granian-wsgi",
        "granian, WSGI, 1 worker, 1 runtime thread, N blocking threads (WSGI and stream "
        "scenarios only)",
        False,
        _check_imports("granian"),
        None,
        wsgi_command=_granian_wsgi,
        stream_command=_granian_wsgi,
    ),
    ServerSpec(
        "stdlib",
        "stdlib ThreadingHTTPServer (HTTP/1.1)",
        False,
        _check_nothing,
        _app("stdlib_app", peers_venv=False),
    ),
    ServerSpec(
        "python-floor",
        "pure-Python epoll loop, a prepared answer per request, nothing parsed (yardstick)",
        False,
        _check_nothing,
        _app("floor_app", peers_venv=False),
    ),
    ServerSpec(
        "nginx", "nginx, 1 worker, static file", False, _check_binary("nginx", "nginx"), _nginx
    ),
    ServerSpec("h2o", "h2o, 1 thread, static file", False, _check_binary("h2o", "h2o"), _h2o),
)
SERVER_NAMES: Final = tuple(s.name for s in SERVERS)


def spec(name: str) -> ServerSpec:
    """The :class:`ServerSpec` called ``name``."""
    for s in SERVERS:
        if s.name == name:
            return s
    raise KeyError(name)


# --- environment, static file ------------------------------------------------------------------

_DROPPED_VARIABLES: Final = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONDEVMODE",
    "PYTHONASYNCIODEBUG",
    "PYTHONTRACEMALLOC",
    "PYTHONMALLOC",
    "PYTHONWARNINGS",
    "VIRTUAL_ENV",
)


def server_environ(repo: Path, *, ours: bool, src: Sequence[Path] | None = None) -> dict[str, str]:
    """The environment of a server process.

    ``PYTHONPATH`` holds the repository root (for ``tools.bench.apps``) and, for Peregrine's
    servers, the checkout's ``src`` directories, so the benchmark measures this checkout; or,
    when ``src`` is given (a baseline revision's ``packages/*/src``), those instead.
    Debugging switches that slow Python down are removed.
    """
    environ = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARIABLES}
    paths = [str(repo)]
    if ours:
        paths = [*(str(p) for p in (checkout_src(repo) if src is None else src)), *paths]
    environ["PYTHONPATH"] = os.pathsep.join(paths)
    environ["PATH"] = environ.get("PATH", "") + os.pathsep + _SBIN_PATH
    return environ


def checkout_src(repo: Path) -> list[Path]:
    """The ``src`` directories of this checkout that Peregrine's servers run from
    (``peregrine-wsgi``'s once it exists)."""
    packages = repo / "packages"
    dirs = [packages / "peregrine-core" / "src", packages / "peregrine-static" / "src"]
    wsgi = packages / "peregrine-wsgi" / "src"
    return [*dirs, wsgi] if wsgi.is_dir() else dirs


def prepare_static(workdir: Path) -> Path:
    """Write ``index.html`` (the body) into a world-readable directory and return it.

    nginx and h2o started as root serve files as ``nobody``, hence the permissions.
    """
    workdir.chmod(0o755)
    static_dir = workdir / "static"
    static_dir.mkdir(mode=0o755)
    index = static_dir / "index.html"
    index.write_bytes(BODY)
    index.chmod(0o644)
    return static_dir


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def interpreter_version(python: str) -> str:
    """``3.11.7 (CPython, /path/to/python)`` for the interpreter at ``python``."""
    code = (
        "import platform, sys; print(platform.python_version(), platform.python_implementation())"
    )
    try:
        out = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return f"unknown ({python})"
    return f"{out[0]} ({out[1]}, {python})"


def versions(env: BenchEnv) -> Mapping[str, str]:
    """The version of each server that can be found (for the report's header)."""
    found: dict[str, str] = {}
    about = re.compile(r"__version__\s*=\s*[\"']([^\"']+)")
    for dist, names in (
        ("peregrine-core", ("peregrine",)),
        ("peregrine-static", ("peregrine_static",)),
        ("peregrine-wsgi", ("peregrine-wsgi",)),
    ):
        path = env.repo / "packages" / dist / "src" / dist.replace("-", "_") / "__about__.py"
        with contextlib.suppress(OSError):
            match = about.search(path.read_text())
            if match:
                for name in names:
                    found[name] = f"{dist} {match.group(1)} (this checkout)"
    if "peregrine-wsgi" in found and "peregrine" in found:
        found["peregrine-wsgi"] = found["peregrine-wsgi"].replace(
            " (this checkout)", ", " + found["peregrine"]
        )
    if env.baseline is not None:
        path = env.baseline.root / "packages/peregrine-core/src/peregrine_core/__about__.py"
        with contextlib.suppress(OSError):
            match = about.search(path.read_text())
            if match:
                found[BASELINE_NAME] = f"peregrine-core {match.group(1)} (at {env.baseline.short})"
    if env.venv_python is not None:
        code = (
            "import importlib.metadata as m\n"
            "for d in ('uvicorn','uvloop','httptools','granian','aiohttp','gunicorn','waitress'):\n"
            "    try: print(d, m.version(d))\n"
            "    except m.PackageNotFoundError: pass\n"
        )
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [env.venv_python, "-c", code],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=True,
            ).stdout
            dists = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
            if "uvicorn" in dists:
                found["uvicorn"] = (
                    f"uvicorn {dists['uvicorn']}, uvloop {dists.get('uvloop', '?')}, "
                    f"httptools {dists.get('httptools', '?')}"
                )
            for name, dist in (
                ("granian-rsgi", "granian"),
                ("granian-asgi", "granian"),
                ("granian-wsgi", "granian"),
                ("aiohttp", "aiohttp"),
                ("gunicorn-sync", "gunicorn"),
                ("gunicorn-gthread", "gunicorn"),
                ("waitress", "waitress"),
            ):
                if dist in dists:
                    found[name] = f"{dist} {dists[dist]}"
    found["stdlib"] = f"http.server of Python {interpreter_version(env.python)}"
    found["python-floor"] = f"Python {interpreter_version(env.python)}"
    for name, args in (("nginx", ("-v",)), ("h2o", ("--version",))):
        binary = find_binary(name)
        if binary is None:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [binary, *args],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
            lines = (done.stdout + done.stderr).strip().splitlines()
            if lines:
                found[name] = lines[0].replace("nginx version: ", "")
    return found
