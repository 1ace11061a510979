"""Running a server under test: start it pinned, wait until it answers, stop its whole group.

Strategy: :func:`start` runs a :class:`~servers.ServerSpec`'s command (for the app asked for:
the body, or the blocking handlers) under ``taskset -c CPU`` in a new session, waits until
``GET /`` answers 200 with the 6150-byte body (the blocking apps answer ``/`` with it too), and
returns a :class:`RunningServer`; the harness measures it from ``/proc`` and stops it.

Invariants:
- Every server runs in its own process group (``start_new_session``); stopping sends SIGTERM,
  then SIGKILL, to the whole group, so workers forked by a master (gunicorn, granian, nginx)
  go too. An ``atexit`` hook stops whatever is still running, and so does :func:`stop_all`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from apps._body import BODY_BYTES
from loadgen import AppKind
from servers import (
    LOOPBACK,
    PAGE,
    START_TIMEOUT_S,
    STOP_GRACE_S,
    BenchEnv,
    ServerSpec,
    StartError,
    free_port,
)


@dataclass(eq=False)
class RunningServer:
    """A started server; :meth:`stop` kills its whole process group."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        """The server's main process."""
        return self.process.pid

    @property
    def url(self) -> str:
        """The URL every load generator requests."""
        return self.url_of(PAGE)

    def url_of(self, path: str) -> str:
        """The URL of ``path`` (``/sleep5``) on this server."""
        return f"http://{LOOPBACK}:{self.port}{path}"

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the process group, wait up to :data:`STOP_GRACE_S`, then SIGKILL it."""
        pgid = self.process.pid  # the session leader: its pid is the group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE_S)
        self._log.close()
        _LIVE.discard(self)  # last: a stop interrupted by a signal is retried by stop_all()

    def log_tail(self, lines: int = 12) -> str:
        """The last lines the server printed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


_LIVE: set[RunningServer] = set()


def stop_all() -> None:
    """Stop every server still running (called on exit, and by the harness's ``finally``)."""
    for server in list(_LIVE):
        server.stop()


atexit.register(stop_all)


def start(
    server_spec: ServerSpec,
    env: BenchEnv,
    *,
    app: AppKind = "body",
    timeout_s: float = START_TIMEOUT_S,
) -> RunningServer:
    """Start ``server_spec`` serving ``app`` on a free port; wait until ``GET /`` answers well.

    Raises:
        StartError: the server has no such app, the command failed, the server exited, or it
            did not answer 200 with the 6150-byte body within ``timeout_s``. The server is
            stopped before raising.
    """
    build = server_spec.command_for(app)
    if build is None:
        raise StartError(f"{server_spec.name} does not serve the {app} app")
    port = free_port()
    command = build(env, port)
    taskset = shutil.which("taskset")
    if env.server_cpu is not None and taskset is not None:
        command = [taskset, "-c", str(env.server_cpu), *command]
    log_path = env.workdir / f"{server_spec.name}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by RunningServer.stop
    try:
        process = subprocess.Popen(
            command,
            cwd=env.repo,
            env=server_spec.environ_for(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        log.close()
        raise StartError(f"cannot run {command[0]}: {exc}") from exc
    server = RunningServer(server_spec, port, process, log_path, log)
    _LIVE.add(server)
    try:
        _wait_ready(server, time.monotonic() + timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: RunningServer, deadline: float) -> None:
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise StartError(
                f"{server.spec.name} exited with status {server.process.returncode} "
                f"before answering:\n{server.log_tail()}"
            )
        try:
            status, length = fetch(server.port, timeout_s=2.0)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
            continue
        if status == 200 and length == BODY_BYTES:
            return
        raise StartError(
            f"{server.spec.name} answered GET / with status {status} and {length} body bytes; "
            f"expected 200 and {BODY_BYTES}"
        )
    raise StartError(
        f"{server.spec.name} did not answer within the start timeout ({last_error}):\n"
        f"{server.log_tail()}"
    )


def fetch(port: int, *, timeout_s: float) -> tuple[int, int]:
    """``GET /`` from 127.0.0.1:``port``; return the status and the body's length."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        connection.request("GET", PAGE)
        response = connection.getresponse()
        return response.status, len(response.read())
    finally:
        connection.close()
