"""Several supervised server processes (run through the command line, in a subprocess)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TIMEOUT

APP = """
import os, time
from peregrine_core import Request, Response

class App:
    def handle_request(self, req: Request, resp: Response) -> None:
        if req.path == "/sleep":
            time.sleep(1.0)
        resp.set_body(str(os.getpid()))

app = App()
"""

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="processes need os.fork()")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str = "/") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _wait_pids(port: int, count: int, timeout: float = 10.0) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < count:
        try:
            seen.add(_get(port))
        except OSError:
            time.sleep(0.05)
    return seen


@pytest.fixture(params=[False, True], ids=["shared-listener", "reuse-port"])
def supervised(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (tmp_path / "procapp.py").write_text(APP)
    port = _free_port()
    args = [sys.executable, "-m", "peregrine_core", "procapp:app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--processes", "2", "--graceful-timeout", "5"]
    if request.param:
        args.append("--reuse-port")
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        finally:
            proc.kill()
            proc.wait()


def test_two_processes_share_the_load(supervised: tuple[subprocess.Popen[str], int]) -> None:
    _, port = supervised
    pids = _wait_pids(port, 2)
    assert len(pids) == 2


def test_a_killed_process_is_replaced_and_the_other_keeps_serving(
    supervised: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = supervised
    pids = _wait_pids(port, 2)
    assert len(pids) == 2
    victim, survivor = sorted(int(p) for p in pids)
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def load() -> None:
        # keep-alive clients; a connection that lands on the victim is a loss we expect,
        # so each client pins itself to the survivor.
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
                conn.request("GET", "/")
                first = conn.getresponse().read().decode()
                if first != str(survivor):
                    conn.close()
                    continue
                while not stop.is_set():
                    conn.request("GET", "/")
                    served.append(conn.getresponse().read().decode())
                conn.close()
            except OSError as exc:
                failures.append(repr(exc))

    clients = [threading.Thread(target=load) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(0.5)
    before = len(served)
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    replaced: set[str] = set()
    while time.monotonic() - started < 5.0:
        replaced = _wait_pids(port, 2, timeout=0.5) - {str(survivor), str(victim)}
        if replaced:
            break
    replaced_after = time.monotonic() - started
    time.sleep(0.3)
    stop.set()
    for t in clients:
        t.join(TIMEOUT)
    assert replaced, "no new process took the killed one's place"
    assert replaced_after < 1.5
    assert len(served) > before, "the surviving process stopped serving"
    assert set(served) == {str(survivor)}
    assert failures == [], failures


def test_sigterm_drains_every_process_and_exits_0(supervised: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = supervised
    assert len(_wait_pids(port, 2)) == 2
    results: list[str] = []

    def slow() -> None:
        results.append(_get(port, "/sleep"))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the request is in flight in one of the processes
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    t.join(TIMEOUT)
    assert proc.returncode == 0, out
    assert len(results) == 1 and results[0].isdigit()
    assert out.count("shutdown complete") == 2
    assert "all server processes stopped" in out
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def test_a_process_failing_at_start_up_makes_the_server_exit_non_zero(tmp_path: Path) -> None:
    (tmp_path / "procapp.py").write_text(APP)
    unavailable = "kqueue" if sys.platform.startswith("linux") else "epoll"
    started = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "peregrine_core", "procapp:app", "--host", "127.0.0.1", "--port", "0"),
            *("--processes", "2", "--poller", unavailable),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "before it was ready" in result.stderr
    assert time.monotonic() - started < 10
    assert result.stderr.count("server process failed") <= 2, "it must not restart in a loop"
