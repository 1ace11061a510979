"""Checks of the harness's pure parts: output parsing, ratios, the body, the Python client.

Run: ``pytest tools/bench`` (the load generators' outputs below were captured from wrk 4.1.0
and h2load 1.52.0).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

import loadgen
import proctree
import report
from apps._body import BODY, BODY_BYTES, make_body
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
