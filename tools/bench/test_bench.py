"""Checks of the harness's pure parts: output parsing, ratios, the body, the Python clients,
the per-path latency split, the blocking apps, the servers' command lines, the baseline
revision (``--baseline``: options, git commands, environment, report line), and the WSGI and
streaming scenarios (registration, options, apps called directly, the download client, the
RSS sampler, report lines).

Run: ``pytest tools/bench`` (the load generators' outputs below were captured from wrk 4.1.0
and h2load 1.52.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import baseline
import loadgen
import proctree
import report
import run
import servers
from apps import peregrine_stream_app, wsgi_blocking_app, wsgi_scenario_app
from apps._blocking import SLEEP_S, SLOW_S, SMALL_BODY
from apps._body import BODY, BODY_BYTES, make_body
from apps._stream import PIECE_BYTES, STREAM_BYTES, STREAM_PATH, make_piece, pieces
from apps.floor_app import serve as serve_floor
from apps.stdlib_app import BodyHandler

WRK_WITH_ERRORS = """\
Running 1s test @ http://127.0.0.1:18011/missing
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.61ms    2.46ms  24.24ms   73.73%
    Req/Sec    13.37k     3.14k   18.92k    80.00%
  Latency Distribution
     50%    5.30ms
     75%    6.37ms
     90%    6.67ms
     99%    9.82ms
  13538 requests in 1.03s, 3.98MB read
  Socket errors: connect 0, read 9198, write 0, timeout 7
  Non-2xx or 3xx responses: 13538
Requests/sec:  13156.31
Transfer/sec:      3.86MB
"""

WRK_PIPELINED_NO_P99 = """\
Running 2s test @ http://127.0.0.1:18003/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    32.50ms   20.82ms 151.24ms   67.12%
    Req/Sec    30.37k     6.31k   46.83k    75.00%
  Latency Distribution
     50%   31.86ms
     75%   49.72ms
     90%   77.28ms
     99%    0.00us
  62816 requests in 2.08s, 378.37MB read
Requests/sec:  30178.76
Transfer/sec:    181.78MB
"""

WRK_NO_LATENCY_SAMPLE = """\
Running 2s test @ http://127.0.0.1:18001/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     3.14k     1.34k    6.91k    75.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  6279 requests in 2.01s, 37.76MB read
Requests/sec:   3126.48
Transfer/sec:     18.80MB
"""

H2LOAD_404 = """\
starting benchmark...
spawning thread #0: 10 total client(s). 200 total requests
Application protocol: http/1.1

finished in 9.92ms, 20169.42 req/s, 5.92MB/s
requests: 200 total, 200 started, 200 done, 0 succeeded, 200 failed, 3 errored, 1 timeout
status codes: 0 2xx, 0 3xx, 200 4xx, 0 5xx
traffic: 60.16KB (61600) total, 21.29KB (21800) headers (space savings 0.00%), 29.88KB (30600) data
                     min         max         mean         sd        +/- sd
time for request:       74us       323us       177us        46us    81.00%
time for connect:       60us       439us       221us       113us    70.00%
"""


def test_wrk_report_gives_rate_latency_errors_and_non_2xx() -> None:
    result = loadgen.parse_wrk(WRK_WITH_ERRORS)
    assert result.requests == 13538
    assert result.duration_s == pytest.approx(1.03)
    assert result.requests_per_s == pytest.approx(13156.31)
    assert result.latency_avg_us == pytest.approx(4610)
    assert result.latency_stdev_us == pytest.approx(2460)
    assert result.latency_p99_us == pytest.approx(9820)
    assert result.latency_p50_us == pytest.approx(5300)
    assert result.by_path == ()
    assert (result.errors, result.timeouts, result.non_2xx) == (9198, 7, 13538)


def test_wrk_p99_of_zero_is_reported_as_unknown() -> None:
    result = loadgen.parse_wrk(WRK_PIPELINED_NO_P99)
    assert result.latency_p99_us is None
    assert result.latency_avg_us == pytest.approx(32500)
    assert (result.errors, result.timeouts, result.non_2xx) == (0, 0, 0)


def test_wrk_without_latency_samples_reports_no_latency() -> None:
    result = loadgen.parse_wrk(WRK_NO_LATENCY_SAMPLE)
    assert (result.latency_avg_us, result.latency_stdev_us, result.latency_p99_us) == (
        None,
        None,
        None,
    )
    assert result.requests == 6279


def test_unreadable_wrk_output_is_an_error() -> None:
    with pytest.raises(loadgen.LoadError):
        loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_h2load_report_separates_errors_timeouts_and_statuses() -> None:
    result = loadgen.parse_h2load(H2LOAD_404)
    assert result.requests == 200
    assert result.duration_s == pytest.approx(0.00992)
    assert result.requests_per_s == pytest.approx(20169.42)
    assert result.latency_avg_us == pytest.approx(177)
    assert result.latency_stdev_us == pytest.approx(46)
    assert result.latency_p99_us is None
    assert (result.errors, result.timeouts, result.non_2xx) == (2, 1, 200)


def test_h2load_command_runs_by_request_count_with_an_inactivity_timeout() -> None:
    scn = loadgen.scenario("h2load-c100")
    cmd = loadgen.command(scn, "http://127.0.0.1:1/", 0, requests=5000)
    assert cmd[:3] == ["h2load", "--h1", "-t1"]
    assert {"-c100", "-n5000", "-N2"} <= set(cmd)
    assert not any(arg.startswith(("-D", "-T")) for arg in cmd)


def test_pipelined_wrk_command_passes_the_depth_to_the_script() -> None:
    cmd = loadgen.command(loadgen.scenario("wrk-pipeline16"), "http://127.0.0.1:1/", 3)
    assert cmd[-4:] == [str(loadgen.PIPELINE_SCRIPT), "http://127.0.0.1:1/", "--", "16"]
    assert loadgen.PIPELINE_SCRIPT.is_file()


def _record(round_index: int, server: str, rps: float, cpu_s: float) -> report.RunRecord:
    result = loadgen.LoadResult("wrk", int(rps), 1.0, rps, None, None, None, 0, 0, 0)
    return report.RunRecord(round_index, "wrk-c100", server, result, cpu_s=cpu_s)


def _rps(record: report.RunRecord) -> float | None:
    return record.result.requests_per_s if record.result is not None else None


def test_ratios_pair_servers_within_each_round() -> None:
    records = [
        _record(1, "peregrine", 300.0, 0.003),
        _record(1, "uvicorn", 100.0, 0.003),
        _record(2, "peregrine", 100.0, 0.001),
        _record(2, "uvicorn", 50.0, 0.001),
        _record(3, "peregrine", 100.0, 0.001),  # no uvicorn in round 3: no pair
    ]
    rps = report.paired_ratios(records, "wrk-c100", "peregrine", "uvicorn", _rps)
    assert rps == [3.0, 2.0]
    cpu = report.paired_ratios(
        records,
        "wrk-c100",
        "peregrine",
        "uvicorn",
        lambda r: r.cpu_us_per_request,
        peer_over_ours=True,
    )
    assert cpu == [pytest.approx(3.0), pytest.approx(2.0)]
    assert report.fmt_ratio(rps) == "2.50× (2.00–3.00)"
    assert report.fmt_ratio([]) == "–"


def test_cpu_per_request_is_none_without_requests() -> None:
    record = report.RunRecord(1, "wrk-c100", "x", None, cpu_s=1.0)
    assert record.cpu_us_per_request is None
    assert _record(1, "x", 1000.0, 0.01).cpu_us_per_request == pytest.approx(10.0)


def test_cpu_times_split_user_and_system_time_of_a_process_tree() -> None:
    before = proctree.cpu_times(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # user time, with a system call each turn
        os.stat(".")
    after = proctree.cpu_times(os.getpid())
    assert after.user >= before.user
    assert after.system >= before.system
    assert after.total == pytest.approx(after.user + after.system)
    assert after.total - before.total >= 0.2  # clock ticks are coarse: 0.3 s less a tick or so


def test_report_gives_system_time_and_latency_stdev_ratios() -> None:
    def record(server: str, round_index: int, stdev_us: float, sys_s: float) -> report.RunRecord:
        result = loadgen.LoadResult("wrk", 1000, 1.0, 1000.0, 900.0, stdev_us, 1500.0, 0, 0, 0)
        return report.RunRecord(round_index, "wrk-c100", server, result, 0.01, 2**20, sys_s=sys_s)

    records = [
        record("peregrine", 1, 100.0, 0.006),
        record("nginx", 1, 150.0, 0.004),
        record("peregrine", 2, 200.0, 0.006),
        record("nginx", 2, 100.0, 0.004),
    ]
    assert records[0].sys_us_per_request == pytest.approx(6.0)
    assert report.RunRecord(1, "wrk-c100", "x", None, sys_s=1.0).sys_us_per_request is None
    text = report.render(
        report.ReportInput(
            command_line="run.py",
            started="now",
            machine=[],
            method=[],
            servers=[("peregrine", "p", "1"), ("nginx", "n", "1")],
            scenarios=[loadgen.scenario("wrk-c100")],
            ours=["peregrine"],
            records=records,
        )
    )
    assert "peer latency stdev ÷ peregrine" in text
    # Round 1: nginx's spread 1.5× ours; round 2: half of ours. Median 1.0, range shown.
    assert "| `nginx` | 1.00× (1.00–1.00) | 1.00× (1.00–1.00) | 1.00× (0.50–1.50) |" in text
    # The per-server table: CPU 10.0 µs/req, of which 6.0 (peregrine) and 4.0 (nginx) system.
    assert "| 10.0 | 6.0 | 1 |" in text
    assert "| 10.0 | 4.0 | 1 |" in text


def test_durations_are_printed_in_readable_units() -> None:
    assert [report.fmt_us(v) for v in (None, 850.0, 1540.0, 2_500_000.0)] == [
        "–",
        "850 µs",
        "1.54 ms",
        "2.50 s",
    ]


def test_body_is_6150_bytes_of_html() -> None:
    assert len(BODY) == BODY_BYTES == 6150
    assert BODY.startswith(b"<!DOCTYPE html>")
    assert BODY.endswith(b"</html>\n")
    assert len(make_body(200)) == 200
    with pytest.raises(ValueError, match="cannot hold"):
        make_body(10)


@pytest.fixture
def stdlib_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BodyHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_python_client_counts_keep_alive_and_pipelined_responses(stdlib_server: int) -> None:
    url = f"http://127.0.0.1:{stdlib_server}/"
    single = loadgen.python_load(url, connections=2, duration_s=1)
    assert single.requests > 0
    assert (single.errors, single.timeouts, single.non_2xx) == (0, 0, 0)
    assert single.latency_p99_us is not None
    assert single.latency_p99_us > 0
    pipelined = loadgen.python_load(url, connections=2, duration_s=1, pipeline_depth=4)
    assert pipelined.requests > 0
    assert pipelined.requests % 4 == 0
    assert pipelined.errors == 0


def test_python_client_refuses_other_hosts() -> None:
    with pytest.raises(loadgen.LoadError, match=r"only requests 127\.0\.0\.1"):
        loadgen.python_load("http://example.com/", connections=1, duration_s=1)


def test_floor_app_answers_every_request_even_split_or_pipelined() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=serve_floor, args=(listener, stop))
    thread.start()
    try:
        port = listener.getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        pipelined = loadgen.python_load(url, connections=2, duration_s=1, pipeline_depth=4)
        assert pipelined.requests > 0
        assert pipelined.requests % 4 == 0
        assert (pipelined.errors, pipelined.non_2xx) == (0, 0)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.05)  # the head's end arrives in a second read
            client.sendall(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while received.count(BODY) < 2:
                chunk = client.recv(65536)
                assert chunk, "the connection closed before both answers"
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
        assert b"Content-Length: 6150\r\n" in received
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert not thread.is_alive()


# --- the blocking scenarios ------------------------------------------------------------------------


def test_blocking_scenarios_request_their_paths_and_run_the_blocking_app() -> None:
    sleep5 = loadgen.scenario("sleep5-c100")
    assert (sleep5.tool, sleep5.connections, sleep5.app, sleep5.slow_every) == (
        "wrk",
        100,
        "blocking",
        0,
    )
    cmd = loadgen.command(sleep5, "http://127.0.0.1:1/sleep5", 3)
    assert cmd[-1] == "http://127.0.0.1:1/sleep5"
    assert "-c100" in cmd
    mixed = loadgen.scenario("slow1pct-c100")
    assert (mixed.tool, mixed.path, mixed.slow_path, mixed.slow_every) == (
        "python",
        "/fast",
        "/slow",
        100,
    )
    with pytest.raises(ValueError, match="mixes paths"):
        loadgen.command(mixed, "http://127.0.0.1:1/fast", 3)
    with pytest.raises(loadgen.LoadError, match="only the Python client"):
        loadgen.run_load(mixed, "http://127.0.0.1:1/fast", 1, cpu=None, tool="wrk")
    assert loadgen.scenario("wrk-c100").app == "body"


def test_slow_requests_are_one_in_every_per_connection_and_staggered() -> None:
    every = 100
    for connection in (0, 1, 57, 99, 100, 250):
        flags = [loadgen.is_slow(connection, n, every) for n in range(3 * every)]
        for start in range(0, 3 * every - every + 1, 7):  # any run of `every` requests
            assert sum(flags[start : start + every]) == 1
    firsts = {next(n for n in range(every) if loadgen.is_slow(k, n, every)) for k in range(every)}
    assert firsts == set(range(every))  # 100 connections: each starts at another position
    assert not any(loadgen.is_slow(0, n, 0) for n in range(10))


def test_percentiles_are_nearest_rank_and_per_path_stats_in_microseconds() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert loadgen.percentile_us(samples, 0.50) == pytest.approx(50_000)
    assert loadgen.percentile_us(samples, 0.99) == pytest.approx(99_000)
    assert loadgen.percentile_us([0.002], 0.99) == pytest.approx(2_000)
    assert loadgen.percentile_us([], 0.5) is None
    stats = loadgen.path_stats("/fast", list(reversed(samples)), timeouts=2)
    assert (stats.path, stats.requests, stats.timeouts) == ("/fast", 100, 2)
    assert stats.latency_p50_us == pytest.approx(50_000)
    assert stats.latency_p99_us == pytest.approx(99_000)
    assert stats.latency_max_us == pytest.approx(100_000)
    empty = loadgen.path_stats("/slow", [])
    assert (empty.requests, empty.latency_p99_us, empty.latency_max_us) == (0, None, None)


class _FastSlowHandler(BaseHTTPRequestHandler):
    """``/fast`` answers 200, ``/slow`` 404 (so the split is checked by status, not by time)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body are written apart

    def do_GET(self) -> None:
        status = {"/fast": 200, "/slow": 404}.get(self.path, 500)
        self.send_response(status)
        self.send_header("Content-Length", str(len(SMALL_BODY)))
        self.end_headers()
        self.wfile.write(SMALL_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fast_slow_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FastSlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_mixed_client_keeps_the_latencies_of_each_path_apart(fast_slow_server: int) -> None:
    url = f"http://127.0.0.1:{fast_slow_server}/fast"
    connections, every = 3, 5
    result = loadgen.mixed_load(url, connections, 30, slow_path="/slow", slow_every=every,
                                max_requests=600)  # fmt: skip
    fast, slow = result.by_path
    assert (fast.path, slow.path) == ("/fast", "/slow")
    assert result.path_stats("/slow") == slow
    assert result.path_stats("/other") is None
    assert fast.requests + slow.requests == result.requests == 600  # the budget stops it
    assert (fast.non_2xx, slow.non_2xx) == (0, slow.requests)  # every /slow answer counted there
    assert result.non_2xx == slow.requests
    # Exactly one request in `every` per connection is slow: the total is off by less than
    # one per connection.
    assert abs(slow.requests * every - result.requests) < every * connections
    assert (result.errors, result.timeouts) == (0, 0)
    assert fast.latency_p50_us is not None
    assert slow.latency_max_us is not None
    assert result.latency_p50_us is not None
    assert result.requests_per_s > 0


def test_mixed_client_refuses_other_hosts_and_bad_mixes() -> None:
    with pytest.raises(loadgen.LoadError, match=r"only requests 127\.0\.0\.1"):
        loadgen.mixed_load("http://example.com/fast", 1, 1, slow_path="/slow", slow_every=100)
    with pytest.raises(ValueError, match="bad mix"):
        loadgen.mixed_load("http://127.0.0.1:1/fast", 1, 1, slow_path="/fast", slow_every=100)
    with pytest.raises(ValueError, match="bad mix"):
        loadgen.mixed_load("http://127.0.0.1:1/fast", 1, 1, slow_path="/slow", slow_every=0)


def _mixed_record(
    round_index: int, server: str, fast_p99_us: float, slow_p99_us: float
) -> report.RunRecord:
    fast = loadgen.PathStats("/fast", 990, 100.0, fast_p99_us, 2 * fast_p99_us, 0, 1, 0)
    slow = loadgen.PathStats("/slow", 10, 1e6, slow_p99_us, slow_p99_us, 0, 0, 0)
    result = loadgen.LoadResult(
        "python", 1000, 1.0, 1000.0, 500.0, 50.0, 1e6, 0, 1, 0, 200.0, (fast, slow)
    )
    return report.RunRecord(round_index, "slow1pct-c100", server, result, 0.01, 2**20)


def test_latency_by_path_takes_medians_of_latencies_and_totals_of_counts() -> None:
    records = [
        _mixed_record(1, "waitress", 3000.0, 1.2e6),
        _mixed_record(2, "waitress", 5000.0, 1.4e6),
        _mixed_record(3, "waitress", 4000.0, 1.3e6),
        report.RunRecord(4, "slow1pct-c100", "waitress", None, error="did not start"),
    ]
    fast, slow = report.summarize_paths(records)
    assert (fast.path, fast.rounds, fast.requests, fast.timeouts) == ("/fast", 3, 2970, 3)
    assert fast.latency_p99_us == pytest.approx(4000.0)
    assert fast.latency_max_us == pytest.approx(8000.0)
    assert slow.path == "/slow"
    assert slow.latency_p99_us == pytest.approx(1.3e6)
    assert report.summarize_paths([_record(1, "x", 10.0, 0.1)]) == []


def test_report_shows_the_fast_requests_apart_and_only_servers_that_ran() -> None:
    records = [
        _mixed_record(1, "peregrine", 2000.0, 1.0e6),
        _mixed_record(1, "waitress", 8000.0, 1.5e6),
        _mixed_record(2, "peregrine", 2000.0, 1.0e6),
        _mixed_record(2, "waitress", 4000.0, 1.5e6),
        _record(1, "peregrine", 300.0, 0.003),
        _record(1, "nginx", 100.0, 0.003),
        _record(2, "peregrine", 300.0, 0.003),
        _record(2, "nginx", 100.0, 0.003),
    ]
    text = report.render(
        report.ReportInput(
            command_line="run.py",
            started="now",
            machine=[],
            method=[],
            servers=[
                ("peregrine", "p", "1"),
                ("peregrine_static", "s", "1"),
                ("waitress", "w", "1"),
                ("nginx", "n", "1"),
            ],
            scenarios=[loadgen.scenario("wrk-c100"), loadgen.scenario("slow1pct-c100")],
            ours=["peregrine", "peregrine_static"],
            records=records,
        )
    )
    assert "Latency by path in slow1pct-c100" in text
    # median over rounds of p50, p99 and max; answered totals over rounds
    assert "| **peregrine** | `/fast` | 1980 | 100 µs | 2.00 ms | 4.00 ms | 0 | 2 | 0 |" in text
    assert "| waitress | `/fast` | 1980 | 100 µs | 6.00 ms | 12.00 ms | 0 | 2 | 0 |" in text
    assert "| waitress | `/slow` | 20 | 1.00 s | 1.50 s | 1.50 s | 0 | 0 | 0 |" in text
    # waitress's fast p99 over ours: 4× in round 1, 2× in round 2
    assert "| `waitress` | 3.00× (2.00–4.00) |" in text
    # the p50 column of the main table
    assert "| latency p50 |" in text
    assert "| 200 µs | 1.00 s |" in text
    # peregrine_static ran nothing: no summary column; nginx has no slow1pct figures
    assert "peregrine_static ·" not in text
    assert "| `nginx` | 3.00× | – |" in text
    assert "| `waitress` | – | 1.00× |" in text


def test_wsgi_blocking_app_sleeps_as_the_path_says(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the app's time module is this one
    answers: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answers.append((status, headers))

    def get(path: str) -> bytes:
        return b"".join(wsgi_blocking_app.app({"PATH_INFO": path}, start_response))

    assert get("/") == BODY
    assert get("/fast") == SMALL_BODY
    assert slept == []
    assert get("/sleep5") == SMALL_BODY
    assert get("/slow") == SMALL_BODY
    assert slept == [SLEEP_S, SLOW_S]
    get("/missing")
    assert [status for status, _ in answers] == ["200 OK"] * 4 + ["404 Not Found"]
    for (_, headers), body in zip(
        answers[:4], [BODY, SMALL_BODY, SMALL_BODY, SMALL_BODY], strict=True
    ):
        assert ("Content-Length", str(len(body))) in headers


def _env(handler_threads: int | None = None) -> servers.BenchEnv:
    return servers.BenchEnv(
        repo=Path("/repo"),
        workdir=Path("/tmp"),
        static_dir=Path("/tmp"),
        python="python3",
        venv_python="/venv/bin/python",
        server_cpu=None,
        handler_threads=handler_threads,
    )


def _blocking_command(name: str, env: servers.BenchEnv) -> list[str]:
    build = servers.spec(name).command_for("blocking")
    assert build is not None
    return build(env, 8000)


def test_threaded_peers_run_the_blocking_app_with_the_same_thread_count() -> None:
    for name in ("gunicorn-gthread", "waitress"):
        assert servers.spec(name).serves("blocking")
        assert not servers.spec(name).serves("body")
    assert servers.spec("peregrine").serves("body")
    assert servers.spec("peregrine").serves("blocking")
    assert not servers.spec("nginx").serves("blocking")
    gthread = _blocking_command("gunicorn-gthread", _env())
    assert "tools.bench.apps.wsgi_blocking_app:app" in gthread
    assert gthread[gthread.index("--worker-class") + 1] == "gthread"
    assert gthread[gthread.index("--threads") + 1] == "32"
    assert gthread[gthread.index("--workers") + 1] == "1"
    waitress = _blocking_command("waitress", _env(8))
    assert {"--threads=8", "--listen=127.0.0.1:8000"} <= set(waitress)
    assert "tools.bench.apps.wsgi_blocking_app:app" in waitress


def test_peregrine_gets_handler_threads_only_when_asked_and_supported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "peregrine_handler_threads", lambda env, baseline=False: None)
    assert "--handler-threads" not in _blocking_command("peregrine", _env(8))
    monkeypatch.setattr(servers, "peregrine_handler_threads", lambda env, baseline=False: "32")
    assert "--handler-threads" not in _blocking_command("peregrine", _env())
    command = _blocking_command("peregrine", _env(8))
    assert command[command.index("--handler-threads") + 1] == "8"
    assert "tools.bench.apps.peregrine_blocking_app:Handler" in command


def test_handler_threads_default_is_read_from_the_help_text() -> None:
    parser = argparse.ArgumentParser(prog="peregrine")
    parser.add_argument("--workers", metavar="N", help="worker threads (default: auto)")
    assert servers.handler_threads_default(parser.format_help()) is None
    parser.add_argument(
        "--handler-threads",
        metavar="N",
        help="the most handler calls running at once per worker, on a pool of threads, "
        "so that a handler that blocks does not stall other connections (default: 32)",
    )
    parser.add_argument("--backlog", metavar="N", help="listen queue (default: 2048)")
    assert servers.handler_threads_default(parser.format_help()) == "32"
    assert (
        servers.handler_threads_default("  --handler-threads N  threads\n  --x  (default: 5)")
        == "?"
    )


# --- the baseline revision (--baseline) -----------------------------------------------------------


def test_baseline_adds_its_server_after_peregrine_and_is_required_for_it() -> None:
    plan = run.parse_args(["--baseline", "c253d84", "--servers", "peregrine", "waitress"])
    assert plan.baseline == "c253d84"
    assert plan.server_names == ("peregrine", "peregrine-baseline", "waitress")
    named = run.parse_args(
        ["--baseline", "c253d84", "--servers", "peregrine-baseline", "peregrine", "peregrine"]
    )
    assert named.server_names == ("peregrine-baseline", "peregrine")  # order kept, no repeats
    assert run.parse_args(["--quick", "--baseline", "HEAD~1"]).server_names == (
        "peregrine",
        "peregrine-baseline",
        "stdlib",
    )
    everything = run.parse_args(["--baseline", "c253d84"]).server_names
    assert everything[:2] == ("peregrine", "peregrine-baseline")
    assert len(everything) == len(servers.SERVER_NAMES)
    assert "peregrine-baseline" not in run.parse_args([]).server_names
    assert run.parse_args([]).baseline is None
    assert run.server_order(["waitress"], quick=False, baseline_rev="x") == (
        "waitress",
        "peregrine-baseline",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--servers", "peregrine", "peregrine-baseline"],  # no revision to run
        ["--baseline", ""],
        ["--baseline", "--rounds"],
    ],
)
def test_baseline_usage_errors_exit_with_status_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2


def test_baseline_git_commands_check_out_detached_outside_the_repository() -> None:
    repo, workdir = Path("/repo"), Path("/tmp/peregrine-bench-x")
    path = baseline.worktree_path(workdir)
    assert path.parent == workdir
    assert not path.is_relative_to(repo)
    assert baseline.resolve_command(repo, "c253d84") == [
        "git", "-C", "/repo", "rev-parse", "--verify", "--quiet", "c253d84^{commit}",
    ]  # fmt: skip
    assert baseline.add_command(repo, "c" * 40, path) == [
        "git", "-C", "/repo", "worktree", "add", "--detach", "--quiet", str(path), "c" * 40,
    ]  # fmt: skip
    assert baseline.remove_command(repo, path) == [
        "git", "-C", "/repo", "worktree", "remove", "--force", str(path),
    ]  # fmt: skip


def _baseline_env(tmp_path: Path, handler_threads: int | None = None) -> servers.BenchEnv:
    root = tmp_path / "baseline-worktree"
    for dist in ("peregrine-static", "peregrine-core", "peregrine-ws"):
        (root / "packages" / dist / "src").mkdir(parents=True)
    (root / "packages" / "README").write_text("not a package\n")
    checked_out = baseline.Baseline("c253d84", "c253d84" + "0" * 33, "Worker: one _send", root)
    return servers.BenchEnv(
        repo=Path("/repo"),
        workdir=tmp_path,
        static_dir=tmp_path,
        python="python3",
        venv_python=None,
        server_cpu=None,
        handler_threads=handler_threads,
        baseline=checked_out,
    )


def test_baseline_runs_the_peregrine_command_from_the_worktree_packages(tmp_path: Path) -> None:
    env = _baseline_env(tmp_path)
    assert env.baseline is not None
    assert env.baseline.short == "c253d84"
    ours, theirs = servers.spec("peregrine"), servers.spec("peregrine-baseline")
    assert theirs.command is not None
    assert ours.command is not None
    assert theirs.command(env, 8000) == ours.command(env, 8000)
    assert not theirs.ours  # it is compared with, not compared against the peers
    packages = env.baseline.root / "packages"
    assert theirs.environ_for(env)["PYTHONPATH"] == os.pathsep.join(
        [
            str(packages / "peregrine-core" / "src"),
            str(packages / "peregrine-static" / "src"),
            str(packages / "peregrine-ws" / "src"),
            "/repo",  # this checkout's apps
        ]
    )
    checkout = ours.environ_for(env)["PYTHONPATH"].split(os.pathsep)
    assert checkout == [
        "/repo/packages/peregrine-core/src",
        "/repo/packages/peregrine-static/src",
        "/repo",
    ]
    assert servers.spec("waitress").environ_for(env)["PYTHONPATH"] == "/repo"
    without = servers.BenchEnv(Path("/repo"), tmp_path, tmp_path, "python3", None, None)
    with pytest.raises(servers.StartError):
        theirs.environ_for(without)
    assert servers.spec("peregrine-baseline").check(without) is not None


def test_options_missing_from_a_help_text_are_found_whole() -> None:
    help_text = "  --port N\n  --handler-threads-max N\n  --log-level LEVEL  (default: info)\n"
    command = ["python", "-m", "x", "--port", "1", "--handler-threads", "4", "--log-level=warning"]
    assert servers.missing_options(help_text, command) == ["--handler-threads"]
    assert servers.missing_options(help_text + "  --handler-threads N\n", command) == []


def test_baseline_without_handler_threads_sits_out_the_blocking_scenarios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _baseline_env(tmp_path, handler_threads=128)
    old_help = "--host H --port N --workers N --backlog N --log-level L"
    help_of = {False: old_help + " --handler-threads N (default: 32)", True: old_help}

    def fake_help(
        python: str, module: str, env: servers.BenchEnv, *, baseline: bool = False
    ) -> tuple[bool, str]:
        return True, help_of[baseline]

    monkeypatch.setattr(servers, "_help_text", fake_help)
    theirs = servers.spec("peregrine-baseline")
    assert theirs.skip_reason(env, "body") is None
    reason = theirs.skip_reason(env, "blocking")
    assert reason is not None
    assert "c253d84" in reason
    assert "`--handler-threads`" in reason
    assert servers.spec("peregrine").skip_reason(env, "blocking") is None
    assert servers.spec("waitress").skip_reason(env, "body") is None  # does not serve it
    # this checkout's Peregrine gets the flag; the baseline's command is built without it
    assert "--handler-threads" in _blocking_command("peregrine", env)
    assert "--handler-threads" not in _blocking_command("peregrine-baseline", env)
    skips = run._app_skips(env, [servers.spec("peregrine"), theirs])
    assert list(skips) == [("peregrine-baseline", "blocking")]
    notes = run._app_notes(
        run.parse_args(["--baseline", "c253d84", "--handler-threads", "128"]),
        env,
        [loadgen.scenario("wrk-c100"), loadgen.scenario("sleep5-c100")],
        [servers.spec("peregrine"), theirs],
        skips,
    )
    assert any(n.startswith("Not run in sleep5-c100: `peregrine-baseline`") for n in notes)
    # a baseline that has the option runs the blocking scenarios with it
    help_of[True] = help_of[False]
    assert theirs.skip_reason(env, "blocking") is None
    command = _blocking_command("peregrine-baseline", env)
    assert command[command.index("--handler-threads") + 1] == "128"
    assert run._title(theirs, env).startswith("Peregrine at `c253d84`")


def _ab_record(
    round_index: int, server: str, rps: float, cpu_s: float, sys_s: float, p99_us: float
) -> report.RunRecord:
    result = loadgen.LoadResult("wrk", int(rps), 1.0, rps, 900.0, 100.0, p99_us, 0, 0, 0, 800.0)
    return report.RunRecord(round_index, "wrk-c100", server, result, cpu_s, 2**20, sys_s=sys_s)


def test_report_gives_new_over_baseline_ratios_with_user_and_system_cpu() -> None:
    records = [
        _ab_record(1, "peregrine", 1000.0, 0.010, 0.006, 1000.0),
        _ab_record(1, "peregrine-baseline", 1000.0, 0.008, 0.006, 2000.0),
        _ab_record(2, "peregrine", 2000.0, 0.020, 0.012, 1000.0),
        _ab_record(2, "peregrine-baseline", 1000.0, 0.010, 0.006, 1000.0),
    ]
    assert records[0].user_us_per_request == pytest.approx(4.0)
    assert report.RunRecord(1, "wrk-c100", "x", None).user_us_per_request is None
    line = report.ab_line(records, loadgen.scenario("wrk-c100"), "peregrine", "peregrine-baseline")
    assert line.startswith("**peregrine vs peregrine-baseline** in wrk-c100")
    # round 1: the same rate, 10 against 8 µs/req (user 4 against 2), half the p99;
    # round 2: twice the rate, the same CPU per request and p99
    assert "req/s 1.50× (1.00–2.00)" in line
    assert "CPU/req 1.12× (1.00–1.25) (user 1.50× (1.00–2.00), sys 1.00× (1.00–1.00))" in line
    assert "p99 0.75× (0.50–1.00)" in line
    assert "peregrine 10.0 (user 4.0, sys 6.0), peregrine-baseline 9.0 (user 3.0, sys 6.0)" in line
    data = report.ReportInput(
        command_line="run.py",
        started="now",
        machine=[],
        method=[],
        servers=[("peregrine", "p", "1"), ("peregrine-baseline", "b", "1")],
        scenarios=[loadgen.scenario("wrk-c100")],
        ours=["peregrine"],
        records=records,
        revision=["Commit: `abc1234` (x)."],
        ab_pairs=[("peregrine", "peregrine-baseline")],
    )
    text = report.render(data)
    assert line in text
    assert "Commit: `abc1234` (x)." in text
    assert "| peregrine-baseline | 1,000 |" in text  # a row like any server's
    data.records = [records[0], records[2]]  # the baseline did not run: no line
    assert "vs peregrine-baseline" not in report.render(data)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_baseline_worktree_is_checked_out_and_removed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "packages" / "peregrine-core" / "src").mkdir(parents=True)
    (repo / "packages" / "peregrine-core" / "src" / "m.py").write_text("X = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    first = git("rev-parse", "HEAD")
    (repo / "packages" / "peregrine-core" / "src" / "m.py").write_text("X = 2\n")
    git("commit", "-q", "-am", "second")
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(baseline.BaselineError):
        baseline.create(repo, "no-such-revision", workdir)
    checked_out = baseline.create(repo, "HEAD~1", workdir)
    assert (checked_out.commit, checked_out.subject) == (first, "first")
    assert checked_out.src_dirs == [checked_out.root / "packages" / "peregrine-core" / "src"]
    assert (checked_out.src_dirs[0] / "m.py").read_text() == "X = 1\n"
    assert baseline.registered(repo, checked_out.root)
    (checked_out.root / "untracked.pyc").write_bytes(b"")  # what a run leaves there
    assert baseline.remove(repo, checked_out.root) is None
    assert not checked_out.root.exists()
    assert not baseline.registered(repo, checked_out.root)
    head = baseline.commit_of(repo)
    assert head is not None
    assert head[1:] == ("second", [])
    (repo / "new.txt").write_text("x")
    assert baseline.commit_of(repo) == (head[0], "second", ["new.txt"])
    assert baseline.commit_of(repo, ignore="new") == (head[0], "second", [])


def test_source_digest_sees_edits_and_the_runs_are_split_by_version(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "m.py").write_text("X = 1\n")
    before = baseline.source_digest([src])
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert baseline.source_digest([src]) == before  # byte-code is not source
    (src / "pkg" / "m.py").write_text("X = 2\n")
    assert baseline.source_digest([src]) != before
    assert baseline.changed_spans([]) == []
    assert baseline.changed_spans(["a", "a", "a"]) == [(1, 3)]
    assert baseline.changed_spans(["a", "a", "b", "a"]) == [(1, 2), (3, 3), (4, 4)]
    assert run._source_notes(["a", "a"]) == []
    (note,) = run._source_notes(["a", "b", "b"])
    assert "changed during the run" in note
    assert "run 1: version 1; runs 2–3: version 2" in note


# --- the WSGI and streaming scenarios ---------------------------------------------------------------


def test_wsgi_and_stream_scenarios_are_registered_but_not_quick() -> None:
    hello = loadgen.scenario("wsgi-hello-c100")
    assert (hello.tool, hello.connections, hello.path, hello.app) == ("wrk", 100, "/hello", "wsgi")
    assert hello.thread_sleep_s == 0
    sleep5 = loadgen.scenario("wsgi-sleep5-c100")
    assert (sleep5.tool, sleep5.connections, sleep5.path, sleep5.app) == (
        "wrk",
        100,
        "/sleep5",
        "wsgi",
    )
    assert sleep5.thread_sleep_s == SLEEP_S
    stream = loadgen.scenario("stream-1g")
    assert (stream.tool, stream.connections, stream.path, stream.app) == (
        "curl",
        1,
        STREAM_PATH,
        "stream",
    )
    assert stream.stream_bytes == STREAM_BYTES == 1 << 30
    assert loadgen.command(stream, "http://127.0.0.1:9/stream1g", 5)[0] == "curl"
    quick = run.parse_args(["--quick"])
    assert quick.scenario_keys == ("wrk-c100",)
    assert quick.server_names == ("peregrine", "stdlib")
    everything = run.parse_args([])
    assert {"wsgi-hello-c100", "wsgi-sleep5-c100", "stream-1g"} <= set(everything.scenario_keys)
    assert {"peregrine-wsgi", "granian-wsgi"} <= set(everything.server_names)


def test_wsgi_scenarios_are_chosen_with_the_thread_count() -> None:
    plan = run.parse_args(
        [
            "--scenarios", "wsgi-hello-c100", "wsgi-sleep5-c100", "stream-1g",
            "--servers", "peregrine-wsgi", "gunicorn-gthread", "waitress", "granian-wsgi",
            "peregrine", "--handler-threads", "16", "--rounds", "2", "--duration", "5",
        ]
    )  # fmt: skip
    assert plan.scenario_keys == ("wsgi-hello-c100", "wsgi-sleep5-c100", "stream-1g")
    assert plan.server_names[0] == "peregrine-wsgi"
    assert plan.handler_threads == 16
    assert (plan.rounds, plan.duration_s) == (2, 5)
    with pytest.raises(SystemExit) as exc:
        run.parse_args(["--scenarios", "wsgi-nothing"])
    assert exc.value.code == 2


def test_wsgi_servers_serve_the_wsgi_and_stream_apps_only() -> None:
    for name in ("peregrine-wsgi", "gunicorn-gthread", "waitress", "granian-wsgi"):
        spec = servers.spec(name)
        assert spec.serves("wsgi")
        assert spec.serves("stream")
        assert not spec.serves("body")
    for name in ("peregrine-wsgi", "granian-wsgi"):
        assert not servers.spec(name).serves("blocking")
    assert servers.spec("peregrine").serves("stream")
    assert not servers.spec("peregrine").serves("wsgi")
    assert servers.spec("peregrine-wsgi").ours
    for name in ("nginx", "uvicorn", "peregrine-baseline", "gunicorn-sync", "stdlib"):
        assert not servers.spec(name).serves("wsgi")
        assert not servers.spec(name).serves("stream")
    assert "granian-wsgi" in run.VENV_SERVERS


def _command(name: str, app: loadgen.AppKind, env: servers.BenchEnv) -> list[str]:
    build = servers.spec(name).command_for(app)
    assert build is not None
    return build(env, 8000)


def test_wsgi_servers_run_one_process_with_n_threads_on_the_same_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(16)
    for app in ("wsgi", "stream"):
        ours = _command("peregrine-wsgi", app, env)
        assert ours[1:4] == ["-m", "peregrine_core", servers.PEREGRINE_WSGI_HANDLER]
        assert ours[ours.index("--handler-threads") + 1] == "16"
        assert ours[ours.index("--workers") + 1] == "1"
        assert ours[ours.index("--host") + 1] == "127.0.0.1"
        assert ours[ours.index("--backlog") + 1] == str(servers.BACKLOG_CONNECTIONS)
        gthread = _command("gunicorn-gthread", app, env)
        assert gthread[gthread.index("--worker-class") + 1] == "gthread"
        assert gthread[gthread.index("--threads") + 1] == "16"
        assert gthread[gthread.index("--workers") + 1] == "1"
        assert gthread[-1] == servers.WSGI_APP
        waitress = _command("waitress", app, env)
        assert {"--threads=16", "--listen=127.0.0.1:8000", servers.WSGI_APP} <= set(waitress)
        granian = _command("granian-wsgi", app, env)
        assert granian[granian.index("--interface") + 1] == "wsgi"
        assert granian[granian.index("--workers") + 1] == "1"
        assert granian[granian.index("--blocking-threads") + 1] == "16"
        assert granian[granian.index("--runtime-threads") + 1] == "1"
        assert granian[-1] == servers.WSGI_APP
    assert servers.WSGI_APP == "tools.bench.apps.wsgi_scenario_app:app"
    assert servers.PEREGRINE_WSGI_HANDLER == "tools.bench.apps.peregrine_wsgi_app:handler"
    # the default thread count when none is asked for; peregrine-wsgi always gets it
    default = _command("peregrine-wsgi", "wsgi", _env())
    assert default[default.index("--handler-threads") + 1] == "32"
    # available only with a core that has --handler-threads and an importable peregrine_wsgi
    helps = {"peregrine_core": (True, "--host --port --workers --handler-threads N")}
    helps["peregrine_wsgi"] = (True, "usage: python -m peregrine_wsgi APP")
    monkeypatch.setattr(servers, "_help_text", lambda python, module, *a, **k: helps[module])
    assert servers.spec("peregrine-wsgi").check(env) is None
    helps["peregrine_wsgi"] = (False, "No module named peregrine_wsgi")
    reason = servers.spec("peregrine-wsgi").check(env)
    assert reason is not None
    assert "No module named peregrine_wsgi" in reason
    helps["peregrine_core"] = (True, "--host --port --workers")
    reason = servers.spec("peregrine-wsgi").check(env)
    assert reason is not None
    assert "--handler-threads" in reason


def test_peregrine_streams_with_its_core_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "peregrine_handler_threads", lambda env, baseline=False: "32")
    command = _command("peregrine", "stream", _env())
    assert "tools.bench.apps.peregrine_stream_app:Handler" in command
    assert "--handler-threads" not in command
    command = _command("peregrine", "stream", _env(8))
    assert command[command.index("--handler-threads") + 1] == "8"


class _Answers:
    """A WSGI ``start_response`` that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.calls.append((status, headers))

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.calls[-1][1] if n.lower() == name.lower()]
        assert len(values) <= 1
        return values[0] if values else None


def test_wsgi_scenario_app_answers_each_path(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    answers = _Answers()
    hello = wsgi_scenario_app.app({"PATH_INFO": "/hello"}, answers)
    assert isinstance(hello, list)
    assert len(hello) == 1
    assert hello == [wsgi_scenario_app.HELLO_BODY] == [b"Hello, World!\n"]
    assert answers.calls[-1][0] == "200 OK"
    assert answers.header("Content-Length") == "14"
    assert slept == []
    assert b"".join(wsgi_scenario_app.app({"PATH_INFO": "/sleep5"}, answers)) == SMALL_BODY
    assert slept == [SLEEP_S]
    assert answers.header("Content-Length") == str(len(SMALL_BODY))
    assert b"".join(wsgi_scenario_app.app({"PATH_INFO": "/"}, answers)) == BODY
    assert answers.header("Content-Length") == str(BODY_BYTES)
    assert b"".join(wsgi_scenario_app.app({"PATH_INFO": "/nothing"}, answers)) == b"not found\n"
    assert answers.calls[-1][0] == "404 Not Found"
    stream = wsgi_scenario_app.app({"PATH_INFO": STREAM_PATH}, answers)
    assert not isinstance(stream, list)  # a generator: never the whole body at once
    assert answers.calls[-1][0] == "200 OK"
    assert answers.header("Content-Length") == str(STREAM_BYTES)
    count = total = 0
    for piece in stream:
        assert len(piece) == PIECE_BYTES
        count, total = count + 1, total + len(piece)
    assert (count, total) == (STREAM_BYTES // PIECE_BYTES, STREAM_BYTES)
    assert slept == [SLEEP_S]


def test_stream_pieces_add_up_to_the_total_and_are_made_once() -> None:
    assert [len(p) for p in pieces(10, 4)] == [4, 4, 2]
    assert b"".join(pieces(10, 4)) == make_piece(4) * 2 + make_piece(4)[:2]
    assert list(pieces(0)) == []
    first, second = next(iter(pieces())), list(pieces(3 * PIECE_BYTES))[2]
    assert first is second  # one prepared piece, yielded again and again
    assert len(make_piece()) == PIECE_BYTES


class _FakeResponse:
    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = None
        self.stream: tuple[Any, int | None] | None = None

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def set_body(self, body: bytes) -> None:
        self.body = body

    def set_stream(self, body: Any, length: int | None = None) -> None:
        self.stream = (body, length)


class _FakeRequest:
    def __init__(self, path: str) -> None:
        self.path = path


def test_peregrine_stream_handler_sets_a_stream_with_its_length() -> None:
    handler = peregrine_stream_app.Handler()
    resp = _FakeResponse()
    handler.handle_request(_FakeRequest(STREAM_PATH), resp)  # type: ignore[arg-type]
    assert resp.body is None
    assert resp.stream is not None
    body, length = resp.stream
    assert length == STREAM_BYTES
    assert sum(len(p) for p in body) == STREAM_BYTES
    assert ("Content-Type", "application/octet-stream") in resp.headers
    resp = _FakeResponse()
    handler.handle_request(_FakeRequest("/"), resp)  # type: ignore[arg-type]
    assert (resp.status, resp.body, resp.stream) == (200, BODY, None)
    resp = _FakeResponse()
    handler.handle_request(_FakeRequest("/x"), resp)  # type: ignore[arg-type]
    assert resp.status == 404


def test_curl_command_and_output() -> None:
    cmd = loadgen.curl_command("http://127.0.0.1:9/stream1g")
    assert cmd[0] == "curl"
    assert cmd[cmd.index("--output") + 1] == "/dev/null"
    assert cmd[-1] == "http://127.0.0.1:9/stream1g"
    assert "--max-time" in cmd
    done = loadgen.parse_curl("200 1073741824 0.812345\n", 0)
    assert done == loadgen.Download(200, 1073741824, 0.812345, "ok")
    assert loadgen.parse_curl("curl: (18) transfer closed\n200 1000 0.5\n", 18).outcome == "error"
    assert loadgen.parse_curl("000 0 120.0\n", 28).outcome == "timeout"
    with pytest.raises(loadgen.LoadError):
        loadgen.parse_curl("curl: (6) Could not resolve host\n", 6)


class _DownloadHandler(BaseHTTPRequestHandler):
    """``/len`` 300 kB with Content-Length, ``/chunked`` the same chunked, ``/short`` fewer
    bytes than it announces, anything else 404."""

    protocol_version = "HTTP/1.1"
    size = 300_000

    def do_GET(self) -> None:
        piece = make_piece(100_000)
        if self.path in ("/len", "/short"):
            self.send_response(200)
            self.send_header("Content-Length", str(self.size))
            self.end_headers()
            self.wfile.write(piece * (3 if self.path == "/len" else 2))
            if self.path == "/short":
                self.close_connection = True
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(3):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def download_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DownloadHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_python_download_counts_the_body_bytes(download_server: int) -> None:
    base = f"http://127.0.0.1:{download_server}"
    for path in ("/len", "/chunked"):
        one = loadgen.python_download(base + path, buffer_bytes=65536, timeout_s=10)
        assert (one.status, one.size_bytes, one.outcome) == (200, 300_000, "ok")
    short = loadgen.python_download(base + "/short", timeout_s=10)
    assert short.outcome == "error"
    assert short.size_bytes == 200_000
    with pytest.raises(loadgen.LoadError, match=r"only requests 127\.0\.0\.1"):
        loadgen.python_download("http://example.com/")


def test_stream_load_repeats_downloads_and_counts_failures(download_server: int) -> None:
    base = f"http://127.0.0.1:{download_server}"
    result = loadgen.stream_load(base + "/len", 1, 300_000, cpu=None, tool="python")
    assert result.requests >= 1
    assert result.bytes_received == 300_000 * result.requests
    assert (result.errors, result.timeouts, result.non_2xx) == (0, 0, 0)
    assert result.bytes_per_s is not None
    assert result.bytes_per_s > 0
    # a body shorter than expected ends the run after that download, counted as an error
    wrong = loadgen.stream_load(base + "/len", 5, 1 << 30, cpu=None, tool="python")
    assert (wrong.requests, wrong.errors, wrong.non_2xx) == (1, 1, 0)
    missing = loadgen.stream_load(base + "/missing", 5, 300_000, cpu=None, tool="python")
    assert (missing.requests, missing.errors, missing.non_2xx) == (1, 0, 1)
    assert loadgen.stream_load(base + "/len", 0, 300_000, cpu=None, tool="python").requests == 0
    scn = loadgen.scenario("stream-1g")
    with pytest.raises(loadgen.LoadError, match="download"):
        loadgen.run_load(scn, base + "/len", 1, cpu=None, tool="wrk")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_stream_load_with_curl(download_server: int) -> None:
    base = f"http://127.0.0.1:{download_server}"
    result = loadgen.stream_load(base + "/chunked", 1, 300_000, cpu=None, tool="curl")
    assert result.tool == "curl"
    assert result.requests >= 1
    assert result.bytes_received == 300_000 * result.requests
    assert (result.errors, result.timeouts, result.non_2xx) == (0, 0, 0)
    short = loadgen.stream_load(base + "/short", 1, 300_000, cpu=None, tool="curl")
    assert (short.requests, short.errors) == (1, 1)


def test_rss_sampler_keeps_the_peak_of_a_process_tree() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        with proctree.RssSampler(os.getpid(), interval_s=0.01) as sampler:
            assert child.pid in proctree.process_tree(os.getpid())
            grown = bytearray(64 << 20)  # 64 MiB, touched
            for i in range(0, len(grown), 4096):
                grown[i] = 1
            deadline = time.monotonic() + 10
            while sampler.samples < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert sampler.samples >= 3
        assert sampler.peak_bytes >= proctree.rss_bytes(child.pid) + len(grown)
        del grown
    finally:
        child.kill()
        child.wait(timeout=5)


def _stream_record(
    round_index: int, server: str, gb_per_s: float, cpu_s: float, peak_mib: int
) -> report.RunRecord:
    size = 4 * STREAM_BYTES
    seconds = size / (gb_per_s * 1e9)
    result = loadgen.LoadResult(
        "curl", 4, seconds, 4 / seconds, seconds / 4 * 1e6, 0.0, None, 0, 0, 0,
        seconds / 4 * 1e6, bytes_received=size,
    )  # fmt: skip
    return report.RunRecord(
        round_index, "stream-1g", server, result, cpu_s, 50 << 20, sys_s=cpu_s / 2,
        rss_before_bytes=40 << 20, rss_peak_bytes=peak_mib << 20,
    )  # fmt: skip


def _wsgi_record(round_index: int, server: str, rps: float) -> report.RunRecord:
    result = loadgen.LoadResult("wrk", int(rps) * 8, 8.0, rps, None, None, None, 0, 0, 0)
    return report.RunRecord(round_index, "wsgi-sleep5-c100", server, result, cpu_s=1.0)


def _render(records: list[report.RunRecord], scenarios: list[str], threads: int | None) -> str:
    return report.render(
        report.ReportInput(
            command_line="run.py",
            started="now",
            machine=[],
            method=[],
            servers=[
                ("peregrine", "p", "1"),
                ("peregrine-wsgi", "pw", "1"),
                ("waitress", "w", "1"),
            ],
            scenarios=[loadgen.scenario(k) for k in scenarios],
            ours=["peregrine", "peregrine-wsgi"],
            records=records,
            threads=threads,
        )
    )


def test_report_gives_gb_per_s_peak_rss_and_stream_ratios() -> None:
    records = [
        _stream_record(1, "peregrine", 2.0, 2.0, 42),
        _stream_record(1, "peregrine-wsgi", 1.5, 3.0, 44),
        _stream_record(1, "waitress", 0.5, 6.0, 88),
        _stream_record(2, "peregrine", 2.0, 2.0, 42),
        _stream_record(2, "peregrine-wsgi", 1.5, 3.0, 44),
        _stream_record(2, "waitress", 1.0, 4.0, 84),
    ]
    text = _render(records, ["stream-1g"], None)
    assert "## stream-1g:" in text
    assert "| server | GB/s | s per download | downloads |" in text
    # 2.0 GB/s, 4 downloads of 1 GiB in each of 2 rounds; CPU 2 s per 4.29 GB
    assert "| **peregrine** | 2.00 | 0.54 | 8 | 0 | 0 | 0 | 0.47 | 0.23 | 40 | 42 |" in text
    assert "| waitress | 0.75 |" in text
    assert "2.00 / 2.00" in text
    assert "0.50 / 1.00" in text
    # ours ÷ waitress GB/s: 4× and 2×; waitress CPU/GB ÷ ours: 3× and 2×; peak RSS 88/42, 84/42
    assert "| `waitress` | 3.00× (2.00–4.00) | 2.50× (2.00–3.00) | 2.05× (2.00–2.10) |" in text
    assert "| latency avg |" not in text  # the download table replaces the requests table


def test_report_gives_the_thread_ceiling_and_each_servers_fraction() -> None:
    records = [
        _wsgi_record(1, "peregrine-wsgi", 6000.0),
        _wsgi_record(1, "waitress", 3200.0),
        _wsgi_record(2, "peregrine-wsgi", 6200.0),
        _wsgi_record(2, "waitress", 3200.0),
    ]
    text = _render(records, ["wsgi-sleep5-c100"], 32)
    assert "32 threads / 5 ms = 6,400 req/s" in text
    assert "`peregrine-wsgi` 6,100 req/s = 95%" in text
    assert "`waitress` 3,200 req/s = 50%" in text
    assert "Ceiling" not in _render(records, ["wsgi-sleep5-c100"], None)
    line = report.ceiling_line(records, loadgen.scenario("wsgi-sleep5-c100"), 16, ["waitress"])
    assert "16 threads / 5 ms = 3,200 req/s" in line
    assert "`waitress` 3,200 req/s = 100%" in line


def test_method_and_notes_say_what_the_wsgi_and_stream_scenarios_measure() -> None:
    plan = run.parse_args(["--scenarios", "wsgi-hello-c100", "wsgi-sleep5-c100", "stream-1g"])
    env = _env()
    scenarios = [loadgen.scenario(k) for k in plan.scenario_keys]
    specs = [servers.spec(n) for n in ("peregrine", "peregrine-wsgi", "waitress", "granian-wsgi")]
    method = " ".join(run._method(plan, env, 0, specs, scenarios, uses_python_client=False))
    assert "wsgi-hello-c100 measures" in method
    assert "32 / 5 ms" not in method
    assert "threads / 5 ms = 6,400 req/s" in method
    assert "stream-1g measures" in method
    assert "1,073,741,824 bytes" in method
    assert "--blocking-threads N" in method
    notes = " ".join(run._app_notes(plan, env, scenarios, specs))
    assert "`peregrine` (wsgi-hello-c100, wsgi-sleep5-c100)" in notes
    assert "32 handler threads each" in notes
    assert "granian, WSGI, 1 worker, 1 runtime thread, 32 blocking threads" in run._title(
        servers.spec("granian-wsgi"), env
    )
    assert "32 handler threads" in run._title(servers.spec("peregrine-wsgi"), env)


def test_servers_that_run_none_of_the_scenarios_are_left_out() -> None:
    keys = ["wsgi-hello-c100", "stream-1g"]
    kept = run.servers_for(servers.SERVER_NAMES, keys)
    assert kept == (
        "peregrine",
        "peregrine-wsgi",
        "gunicorn-gthread",
        "waitress",
        "granian-wsgi",
    )
    assert run.servers_for(servers.SERVER_NAMES, ["wsgi-sleep5-c100"])[0] == "peregrine-wsgi"
    assert "nginx" in run.servers_for(servers.SERVER_NAMES, ["wrk-c100"])
    notes: list[str] = []
    plan = run._servers_for_scenarios(run.parse_args(["--scenarios", *keys]), notes)
    assert plan.server_names == kept
    assert len(notes) == 1
    assert "`nginx`" in notes[0]
    assert "`peregrine-wsgi`" not in notes[0]
    quick: list[str] = []
    assert run._servers_for_scenarios(run.parse_args(["--quick"]), quick).server_names == (
        "peregrine",
        "stdlib",
    )
    assert quick == []
