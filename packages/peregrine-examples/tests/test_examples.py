"""The examples run as documented: as modules and as console scripts, on the asked port."""

from __future__ import annotations

import http.client
import socket
import sys
import time

import pytest

from peregrine_core import ServerConfig
from peregrine_core.testing import serve
from peregrine_examples.basic import Basic
from peregrine_examples.counter import Counter

from examples_support import TIMEOUT, console_script, free_port, start, stop


def _get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_counter_counts_from_zero() -> None:
    with serve(Counter()) as srv:
        assert [_get(srv.port)[1] for _ in range(3)] == [b"counter=0\n", b"counter=1\n", b"counter=2\n"]


def test_basic_answers_kawww() -> None:
    with serve(Basic) as srv:
        assert _get(srv.port, "/anything?x=1") == (200, b"Kawww\n")


def test_counter_under_concurrent_keep_alive_clients_loses_and_doubles_nothing() -> None:
    import threading

    counter = Counter()
    per_client, clients = 200, 6
    with serve(counter, config=ServerConfig(workers=2)) as srv:
        seen: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
            for _ in range(per_client):
                conn.request("GET", "/")
                n = int(conn.getresponse().read().split(b"=")[1])
                with lock:
                    seen.append(n)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert counter.count == per_client * clients
    assert sorted(seen) == list(range(per_client * clients))


@pytest.mark.parametrize("name", ["counter", "basic"])
def test_example_runs_as_a_module_and_prints_where_it_listens(name: str) -> None:
    port = free_port()
    proc, line = start(
        [sys.executable, "-m", f"peregrine_examples.{name}", "--host", "127.0.0.1", "--port", str(port)]
    )
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        status, body = _get(port)
        assert status == 200 and body in (b"counter=0\n", b"Kawww\n")
    finally:
        assert stop(proc)[0] == 0


@pytest.mark.parametrize("name", ["counter", "basic"])
def test_example_runs_as_a_console_script(name: str) -> None:
    script = console_script(f"peregrine-{name}")
    port = free_port()
    proc, line = start([script, "--host", "127.0.0.1", "--port", str(port)])
    try:
        assert line == f"listening on 127.0.0.1:{port}"
        assert _get(port)[0] == 200
    finally:
        assert stop(proc)[0] == 0


def test_counter_defaults_to_port_3000_on_all_interfaces() -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", 3000))
        except OSError:
            pytest.skip("port 3000 is in use on this machine")
    proc, line = start([sys.executable, "-m", "peregrine_examples.counter"])
    try:
        assert line == "listening on 0.0.0.0:3000"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                assert _get(3000) == (200, b"counter=0\n")
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
    finally:
        assert stop(proc)[0] == 0
