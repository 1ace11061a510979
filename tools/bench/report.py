"""The markdown report: the machine, the method, one table per scenario, and the ratios.

Strategy: the harness collects one :class:`RunRecord` per (round, scenario, server); this module
only reads them. Per server and scenario it shows the median over rounds of every figure
(sums for error counts, so one bad round stays visible) and the requests/s of each round.

A scenario whose client kept the latencies of each path apart (``slow1pct-c100``) gets a
second table, one row per server and path, so the fast requests' p99 is not hidden among the
slow ones'. A scenario whose handlers all sleep on N threads (``wsgi-sleep5-c100``) gets the
line "the thread count allows N / sleep requests/s", with each server's fraction of that. A
download scenario (``stream-1g``) gets its own table instead of the requests table: GB/s,
seconds per download, server CPU per GB, and the server's RSS before the measured downloads
and its peak during them (sampled).

Ratios are computed pairwise within a round, then the median over rounds is shown with the
range. An A/B pair (``peregrine`` against ``peregrine-baseline``, an earlier revision of it)
gets one more line per scenario: new ÷ baseline for requests/s, CPU per request (user and
system apart too) and p99. Only a ratio between two servers measured minutes apart on the same machine means
anything on a noisy machine; absolute numbers are indications.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from loadgen import LoadResult, PathStats, Scenario

_DASH: Final = "–"
_MIB: Final = 1024 * 1024
_COLUMNS: Final = (
    "server", "req/s", "latency avg", "latency stdev", "latency p50", "latency p99", "errors",
    "timeouts", "non-2xx", "CPU µs/req", "of which sys", "RSS MiB", "req/s by round",
)  # fmt: skip
_PATH_COLUMNS: Final = (
    "server", "path", "answered", "latency p50", "latency p99", "latency max", "errors",
    "timeouts", "non-2xx",
)  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """One server loaded by one scenario in one round.

    Attributes:
        round_index: 1-based round number.
        scenario: the scenario's key.
        server: the server's name.
        result: what the load generator measured, or ``None`` if the run failed.
        cpu_s: server CPU time (user + system, whole process tree) during the measured run.
        rss_bytes: resident memory of the server's process tree after the run.
        error: why the run failed, or a warning about it.
        sys_s: the system (kernel) part of ``cpu_s``.
        rss_before_bytes: for a download scenario, the tree's RSS just before the measured run.
        rss_peak_bytes: for a download scenario, the largest RSS sampled during it.
    """

    round_index: int
    scenario: str
    server: str
    result: LoadResult | None
    cpu_s: float | None = None
    rss_bytes: int | None = None
    error: str | None = None
    sys_s: float | None = None
    rss_before_bytes: int | None = None
    rss_peak_bytes: int | None = None

    @property
    def cpu_s_per_gb(self) -> float | None:
        """Server CPU seconds per 10^9 body bytes received (download scenarios)."""
        if self.result is None or self.cpu_s is None or self.result.bytes_received <= 0:
            return None
        return self.cpu_s * 1e9 / self.result.bytes_received

    @property
    def sys_s_per_gb(self) -> float | None:
        """Of :attr:`cpu_s_per_gb`, the seconds spent in the kernel."""
        if self.result is None or self.sys_s is None or self.result.bytes_received <= 0:
            return None
        return self.sys_s * 1e9 / self.result.bytes_received

    @property
    def cpu_us_per_request(self) -> float | None:
        """Server CPU microseconds per request answered."""
        if self.result is None or self.cpu_s is None or self.result.requests <= 0:
            return None
        return self.cpu_s * 1e6 / self.result.requests

    @property
    def sys_us_per_request(self) -> float | None:
        """Of :attr:`cpu_us_per_request`, the microseconds spent in the kernel."""
        if self.result is None or self.sys_s is None or self.result.requests <= 0:
            return None
        return self.sys_s * 1e6 / self.result.requests

    @property
    def user_us_per_request(self) -> float | None:
        """Of :attr:`cpu_us_per_request`, the microseconds spent outside the kernel."""
        total, system = self.cpu_us_per_request, self.sys_us_per_request
        return None if total is None or system is None else total - system


@dataclass
class ReportInput:
    """Everything :func:`render` needs."""

    command_line: str
    started: str
    machine: list[tuple[str, str]]
    method: list[str]
    servers: list[tuple[str, str, str]]
    """(name, what runs, version) for every server of the run, in order."""
    scenarios: list[Scenario]
    ours: list[str]
    records: list[RunRecord]
    notes: list[str] = field(default_factory=list)
    revision: list[str] = field(default_factory=list)
    """Lines after the command: the commit measured, the baseline revision."""
    ab_pairs: list[tuple[str, str]] = field(default_factory=list)
    """(new, baseline) server pairs that get the "new vs baseline" line in each scenario."""
    threads: int | None = None
    """The handler threads every server ran in the scenarios with a thread ceiling
    (:attr:`Scenario.thread_sleep_s`); ``None``: no ceiling line."""


# --- the machine --------------------------------------------------------------------------------


def machine_info(python: str) -> list[tuple[str, str]]:
    """CPU model, cores, memory, kernel, OS and Python of this machine."""
    model = _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    memory_kib = _first_value("/proc/meminfo", "MemTotal")
    memory = f"{int(memory_kib.split()[0]) / _MIB:.1f} GiB" if memory_kib else "unknown"
    os_name = "unknown"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.partition("=")[2].strip('"')
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("CPU", model),
        ("logical CPUs", f"{os.cpu_count()} (this process may use {len(os.sched_getaffinity(0))})"),
        ("memory", memory),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("OS", os_name),
        ("Python (servers)", python),
        ("load average at start", load),
    ]


def _first_value(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


# --- formatting -----------------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    """Requests per second with thousands separators."""
    return _DASH if value is None else f"{value:,.0f}"


def fmt_us(value: float | None) -> str:
    """A duration given in microseconds, in the most readable unit."""
    if value is None:
        return _DASH
    if value < 1e3:
        return f"{value:.0f} µs"
    if value < 1e6:
        return f"{value / 1e3:.2f} ms"
    return f"{value / 1e6:.2f} s"


def fmt_cpu(value: float | None) -> str:
    """CPU microseconds per request."""
    return _DASH if value is None else f"{value:.1f}"


def fmt_mib(value: float | None) -> str:
    """Bytes as MiB."""
    return _DASH if value is None else f"{value / _MIB:.0f}"


def fmt_ratio(values: Sequence[float]) -> str:
    """Median ratio, with the range over rounds when there is more than one."""
    if not values:
        return _DASH
    text = f"{statistics.median(values):.2f}×"
    if len(values) > 1:
        text += f" ({min(values):.2f}–{max(values):.2f})"
    return text


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [_row(header), _row(["---:" if a == "r" else "---" for a in align])]
    lines += [_row(r) for r in rows]
    return lines


# --- ratios ---------------------------------------------------------------------------------------


def paired_ratios(
    records: Sequence[RunRecord],
    scenario: str,
    ours: str,
    peer: str,
    figure: Callable[[RunRecord], float | None],
    *,
    peer_over_ours: bool = False,
) -> list[float]:
    """Ratios of ``figure`` between ``ours`` and ``peer``, one per round where both have it.

    ``ours ÷ peer`` by default, ``peer ÷ ours`` with ``peer_over_ours`` (so that a ratio above 1
    always favours ours when the figure is a cost).
    """
    by_round: dict[tuple[int, str], float] = {}
    for r in records:
        if r.scenario == scenario and r.server in (ours, peer):
            value = figure(r)
            if value is not None:
                by_round[(r.round_index, r.server)] = value
    ratios = []
    for (round_index, server), value in sorted(by_round.items()):
        if server != ours:
            continue
        other = by_round.get((round_index, peer))
        if other is None or other <= 0 or value <= 0:
            continue
        ratios.append(other / value if peer_over_ours else value / other)
    return ratios


def _rps(r: RunRecord) -> float | None:
    return r.result.requests_per_s if r.result is not None else None


def _cpu(r: RunRecord) -> float | None:
    return r.cpu_us_per_request


def _stdev(r: RunRecord) -> float | None:
    return r.result.latency_stdev_us if r.result is not None else None


def _bytes_per_s(r: RunRecord) -> float | None:
    return r.result.bytes_per_s if r.result is not None else None


def _cpu_per_gb(r: RunRecord) -> float | None:
    return r.cpu_s_per_gb


def _peak_rss(r: RunRecord) -> float | None:
    return float(r.rss_peak_bytes) if r.rss_peak_bytes else None


def _p99(r: RunRecord) -> float | None:
    return r.result.latency_p99_us if r.result is not None else None


def _user(r: RunRecord) -> float | None:
    return r.user_us_per_request


def _sys(r: RunRecord) -> float | None:
    return r.sys_us_per_request


def _path_p99(path: str) -> Callable[[RunRecord], float | None]:
    def figure(r: RunRecord) -> float | None:
        stats = r.result.path_stats(path) if r.result is not None else None
        return stats.latency_p99_us if stats is not None else None

    return figure


# --- latency by path --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathSummary:
    """One path of one server in one scenario, over the rounds: medians of the latencies
    (p50, p99 and max of each round), totals of the counts."""

    path: str
    rounds: int
    requests: int
    latency_p50_us: float | None
    latency_p99_us: float | None
    latency_max_us: float | None
    errors: int
    timeouts: int
    non_2xx: int


def summarize_paths(records: Sequence[RunRecord]) -> list[PathSummary]:
    """The :class:`PathSummary` of every path in ``records`` (one server, one scenario), in
    the order the paths first appear; runs without per-path figures are left out."""
    by_path: dict[str, list[PathStats]] = {}
    for r in records:
        if r.result is not None:
            for stats in r.result.by_path:
                by_path.setdefault(stats.path, []).append(stats)
    return [
        PathSummary(
            path=path,
            rounds=len(runs),
            requests=sum(x.requests for x in runs),
            latency_p50_us=_median([x.latency_p50_us for x in runs]),
            latency_p99_us=_median([x.latency_p99_us for x in runs]),
            latency_max_us=_median([x.latency_max_us for x in runs]),
            errors=sum(x.errors for x in runs),
            timeouts=sum(x.timeouts for x in runs),
            non_2xx=sum(x.non_2xx for x in runs),
        )
        for path, runs in by_path.items()
    ]


# --- the report -----------------------------------------------------------------------------------


def render(data: ReportInput) -> str:
    """The whole report as markdown."""
    lines = ["# Peregrine side-by-side benchmark", ""]
    lines += [f"Run {data.started}: `{data.command_line}`", ""]
    if data.revision:
        lines += [*data.revision, ""]
    lines += ["## Machine", ""]
    lines += [f"- **{key}**: {value}" for key, value in data.machine]
    lines += ["", "## Method", ""]
    lines += [f"- {line}" for line in data.method]
    lines += ["", "## Servers", ""]
    lines += _table(
        ["server", "what runs", "version"],
        ["l", "l", "l"],
        [[f"`{name}`", title, version] for name, title, version in data.servers],
    )
    ran = [name for name, _, _ in data.servers]
    peers = [name for name in ran if name not in data.ours]
    ours = [name for name in data.ours if name in ran]
    ran_in = {
        s.key: {r.server for r in data.records if r.scenario == s.key} for s in data.scenarios
    }
    columns = [(o, s) for o in ours for s in data.scenarios if o in ran_in[s.key]]
    if columns and peers:
        lines += ["", "## Summary: requests/s ratios (median over rounds)", ""]
        lines += [
            (
                "Each cell: our server's requests/s divided by the peer's, in the same round "
                "(>1: ours serves more)."
            ),
            "",
        ]
        header = ["peer", *[f"{o} · {s.key}" for o, s in columns]]
        rows = []
        for peer in peers:
            cells = [f"`{peer}`"]
            for o, s in columns:
                values = paired_ratios(data.records, s.key, o, peer, _rps)
                cells.append(f"{statistics.median(values):.2f}×" if values else _DASH)
            rows.append(cells)
        lines += _table(header, ["l"] + ["r"] * (len(header) - 1), rows)
    for s in data.scenarios:
        lines += ["", *_scenario_section(data, s, ran, ours, peers)]
    if data.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in data.notes]
    return "\n".join(lines) + "\n"


def _scenario_section(
    data: ReportInput, s: Scenario, ran: Sequence[str], ours: Sequence[str], peers: Sequence[str]
) -> list[str]:
    records = [r for r in data.records if r.scenario == s.key]
    present = {r.server for r in records}
    ours = [name for name in ours if name in present]
    peers = [name for name in peers if name in present]
    tools = sorted({r.result.tool for r in records if r.result is not None})
    lines = [f"## {s.key}: {s.title}", ""]
    if tools and tools != [s.tool]:
        lines += [f"Load generator used: {', '.join(tools)} (not {s.tool}; see the notes).", ""]
    if s.stream_bytes:
        return lines + stream_section(data, s, ran, ours, peers)
    rows = []
    for name in ran:
        mine = sorted((r for r in records if r.server == name), key=lambda r: r.round_index)
        if not mine:
            continue
        good = [r for r in mine if r.result is not None]
        results = [r.result for r in good if r.result is not None]
        failed = len(mine) - len(good)
        by_round = " / ".join(
            fmt_rate(r.result.requests_per_s) if r.result is not None else "failed" for r in mine
        )
        rows.append(
            [
                f"**{name}**" if name in ours else name,
                fmt_rate(_median([x.requests_per_s for x in results])),
                fmt_us(_median([x.latency_avg_us for x in results])),
                fmt_us(_median([x.latency_stdev_us for x in results])),
                fmt_us(_median([x.latency_p50_us for x in results])),
                fmt_us(_median([x.latency_p99_us for x in results])),
                str(sum(x.errors for x in results)),
                str(sum(x.timeouts for x in results)),
                str(sum(x.non_2xx for x in results)),
                fmt_cpu(_median([r.cpu_us_per_request for r in good])),
                fmt_cpu(_median([r.sys_us_per_request for r in good])),
                fmt_mib(_median([float(r.rss_bytes) if r.rss_bytes else None for r in good])),
                by_round + (f" ({failed} failed)" if failed else ""),
            ]
        )
    lines += _table(
        _COLUMNS,
        ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
        rows,
    )
    lines += [
        "",
        (
            "Medians over rounds; errors, timeouts and non-2xx are totals over all rounds. "
            "CPU: the server's process tree, user + system, per request answered; "
            "of which sys: the part spent in the kernel (system calls, the TCP stack). "
            "RSS: the process tree after the run."
        ),
    ]
    if s.thread_sleep_s and data.threads:
        lines += ["", ceiling_line(records, s, data.threads, ran)]
    lines += _path_section(data, s, ran, ours, peers)
    for new, old in data.ab_pairs:
        if new in present and old in present:
            lines += ["", ab_line(records, s, new, old)]
    if ours and peers:
        lines += [
            "",
            (
                f"Ratios in {s.key}, computed round by round (median, range); above 1 favours "
                "ours in every column:"
            ),
            "",
        ]
        header = ["peer"]
        for o in ours:
            header += [f"{o} req/s ÷ peer", f"peer CPU/req ÷ {o}", f"peer latency stdev ÷ {o}"]
        rows = []
        for peer in peers:
            cells = [f"`{peer}`"]
            for o in ours:
                cells.append(fmt_ratio(paired_ratios(data.records, s.key, o, peer, _rps)))
                cells.append(
                    fmt_ratio(
                        paired_ratios(data.records, s.key, o, peer, _cpu, peer_over_ours=True)
                    )
                )
                cells.append(
                    fmt_ratio(
                        paired_ratios(data.records, s.key, o, peer, _stdev, peer_over_ours=True)
                    )
                )
            rows.append(cells)
        lines += _table(header, ["l"] + ["r"] * (len(header) - 1), rows)
    return lines


def ab_line(records: Sequence[RunRecord], s: Scenario, new: str, old: str) -> str:
    """The "new vs baseline" line of scenario ``s``: ratios new ÷ baseline, round by round
    (median, range), of requests/s, CPU per request (with its user and system parts) and p99,
    then the median CPU per request of each, split into user and system."""

    def ratio(figure: Callable[[RunRecord], float | None]) -> str:
        return fmt_ratio(paired_ratios(records, s.key, new, old, figure))

    def cpu(name: str) -> str:
        mine = [r for r in records if r.scenario == s.key and r.server == name]
        total = _median([r.cpu_us_per_request for r in mine])
        user = _median([r.user_us_per_request for r in mine])
        system = _median([r.sys_us_per_request for r in mine])
        return f"{fmt_cpu(total)} (user {fmt_cpu(user)}, sys {fmt_cpu(system)})"

    p99 = f"p99 {ratio(_p99)}"
    if s.slow_every:
        p99 += f", `{s.path}` p99 {ratio(_path_p99(s.path))}"
    return (
        f"**{new} vs {old}** in {s.key}, {new} ÷ {old} round by round, median (range); "
        f"above 1: more requests/s, more CPU per request, a higher p99 for {new}: "
        f"req/s {ratio(_rps)}; CPU/req {ratio(_cpu)} (user {ratio(_user)}, "
        f"sys {ratio(_sys)}); {p99}. "
        f"Median CPU µs/req: {new} {cpu(new)}, {old} {cpu(old)}."
    )


def _path_section(
    data: ReportInput, s: Scenario, ran: Sequence[str], ours: Sequence[str], peers: Sequence[str]
) -> list[str]:
    """The latency of each path apart, and the peers' p99 of the main path over ours."""
    records = [r for r in data.records if r.scenario == s.key]
    rows = []
    for name in ran:
        for p in summarize_paths([r for r in records if r.server == name]):
            rows.append(
                [
                    f"**{name}**" if name in ours else name,
                    f"`{p.path}`",
                    str(p.requests),
                    fmt_us(p.latency_p50_us),
                    fmt_us(p.latency_p99_us),
                    fmt_us(p.latency_max_us),
                    str(p.errors),
                    str(p.timeouts),
                    str(p.non_2xx),
                ]
            )
    if not rows:
        return []
    lines = [
        "",
        (
            f"Latency by path in {s.key}: `{s.path}` is the fast requests, `{s.slow_path}` the "
            f"slow ones (every {s.slow_every}th of a connection)."
        ),
        "",
    ]
    lines += _table(_PATH_COLUMNS, ["l", "l", "r", "r", "r", "r", "r", "r", "r"], rows)
    lines += [
        "",
        (
            "Nearest-rank percentiles and the maximum of each run, median over rounds; the "
            "counts are totals over all rounds (answered: responses received, the drain after "
            "the deadline included)."
        ),
    ]
    if ours and peers:
        header = ["peer", *[f"peer `{s.path}` p99 ÷ {o}" for o in ours]]
        table_rows = [
            [
                f"`{peer}`",
                *[
                    fmt_ratio(
                        paired_ratios(
                            data.records, s.key, o, peer, _path_p99(s.path), peer_over_ours=True
                        )
                    )
                    for o in ours
                ],
            ]
            for peer in peers
        ]
        lines += ["", "Above 1, the fast requests' p99 was lower with ours:", ""]
        lines += _table(header, ["l"] + ["r"] * len(ours), table_rows)
    return lines


# --- thread ceiling, downloads ------------------------------------------------------------------


def fmt_gb_per_s(value: float | None) -> str:
    """Bytes per second as GB/s (10^9 bytes)."""
    return _DASH if value is None else f"{value / 1e9:.2f}"


def ceiling_line(
    records: Sequence[RunRecord], s: Scenario, threads: int, ran: Sequence[str]
) -> str:
    """The requests/s that ``threads`` handler threads allow when every handler sleeps
    ``s.thread_sleep_s``, and each server's median requests/s as a fraction of it."""
    ceiling = threads / s.thread_sleep_s
    parts = []
    for name in ran:
        rates = [_rps(r) for r in records if r.scenario == s.key and r.server == name]
        median = _median(rates)
        if median is not None:
            parts.append(f"`{name}` {fmt_rate(median)} req/s = {median / ceiling:.0%}")
    return (
        f"Ceiling set by the thread count: {threads} threads / {s.thread_sleep_s * 1e3:g} ms "
        f"= {fmt_rate(ceiling)} req/s (a server cannot answer faster while every handler "
        f"sleeps on one of its {threads} threads). Median req/s and its fraction of the "
        f"ceiling: {'; '.join(parts) if parts else _DASH}."
    )


_STREAM_COLUMNS: Final = (
    "server", "GB/s", "s per download", "downloads", "errors", "timeouts", "non-2xx",
    "CPU s/GB", "of which sys", "RSS before MiB", "peak RSS MiB", "GB/s by round",
)  # fmt: skip


def stream_section(
    data: ReportInput, s: Scenario, ran: Sequence[str], ours: Sequence[str], peers: Sequence[str]
) -> list[str]:
    """The table of a download scenario and its ratios."""
    records = [r for r in data.records if r.scenario == s.key]
    rows = []
    for name in ran:
        mine = sorted((r for r in records if r.server == name), key=lambda r: r.round_index)
        if not mine:
            continue
        good = [r for r in mine if r.result is not None]
        results = [r.result for r in good if r.result is not None]
        failed = len(mine) - len(good)
        by_round = " / ".join(
            fmt_gb_per_s(r.result.bytes_per_s) if r.result is not None else "failed" for r in mine
        )
        rows.append(
            [
                f"**{name}**" if name in ours else name,
                fmt_gb_per_s(_median([x.bytes_per_s for x in results])),
                _fmt_s(_seconds(_median([x.latency_avg_us for x in results]))),
                str(sum(x.requests for x in results)),
                str(sum(x.errors for x in results)),
                str(sum(x.timeouts for x in results)),
                str(sum(x.non_2xx for x in results)),
                _fmt_s(_median([r.cpu_s_per_gb for r in good])),
                _fmt_s(_median([r.sys_s_per_gb for r in good])),
                fmt_mib(_median([_float(r.rss_before_bytes) for r in good])),
                fmt_mib(_median([_float(r.rss_peak_bytes) for r in good])),
                by_round + (f" ({failed} failed)" if failed else ""),
            ]
        )
    lines = _table(
        _STREAM_COLUMNS, ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"], rows
    )
    lines += [
        "",
        (
            f"Each download is {s.stream_bytes:,} bytes; GB/s is 10^9 body bytes per second of "
            "download, all of a run's downloads together. Medians over rounds; downloads, "
            "errors, timeouts and non-2xx are totals. CPU s/GB: the server's process tree, "
            "user + system, per 10^9 bytes sent. RSS before: the tree just before the measured "
            "downloads (after the warm-up's); peak RSS: the largest sum of VmRSS sampled "
            "during them (every 20 ms). Peak close to before: the server streamed the body "
            "without holding it."
        ),
    ]
    if ours and peers:
        header = ["peer"]
        for o in ours:
            header += [f"{o} GB/s ÷ peer", f"peer CPU/GB ÷ {o}", f"peer peak RSS ÷ {o}"]
        table_rows = []
        for peer in peers:
            cells = [f"`{peer}`"]
            for o in ours:
                for figure, inverse in (
                    (_bytes_per_s, False),
                    (_cpu_per_gb, True),
                    (_peak_rss, True),
                ):
                    cells.append(
                        fmt_ratio(
                            paired_ratios(
                                data.records, s.key, o, peer, figure, peer_over_ours=inverse
                            )
                        )
                    )
            table_rows.append(cells)
        lines += [
            "",
            f"Ratios in {s.key}, computed round by round (median, range); above 1 favours ours:",
            "",
        ]
        lines += _table(header, ["l"] + ["r"] * (len(header) - 1), table_rows)
    return lines


def _fmt_s(value: float | None) -> str:
    return _DASH if value is None else f"{value:.2f}"


def _seconds(value_us: float | None) -> float | None:
    return None if value_us is None else value_us / 1e6


def _float(value: int | None) -> float | None:
    return float(value) if value else None
