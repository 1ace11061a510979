"""CPU time and memory of a process and all its descendants, read from ``/proc``.

Strategy: one scan of ``/proc/*/stat`` builds the parent-to-children map; the tree of a pid is
walked from it. Servers fork workers (gunicorn, granian, nginx), so every figure is a sum over
the tree, taken at one moment.

Invariants:
- A process that vanishes between the scan and the read is skipped, never an error.
- CPU sums never go backwards when a worker dies: its time moves into its parent's cutime
  and cstime, which are counted too.
"""

from __future__ import annotations

import os
import re
import threading
import time
from types import TracebackType
from typing import Final, NamedTuple, Self

__all__ = ["CpuTimes", "RssSampler", "cpu_times", "process_tree", "rss_bytes"]

_CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (index 0 is field 3, the state), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants (from one scan of ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


class CpuTimes(NamedTuple):
    """CPU seconds of a process tree, split as the kernel accounts them."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def cpu_times(pid: int) -> CpuTimes:
    """User and system CPU time of ``pid``'s process tree, reaped children included.

    Sums utime and cutime, and stime and cstime (fields 14-17 of ``/proc/PID/stat``), over
    every living process of the tree: a worker that dies moves its time into its parent's
    cutime and cstime, so neither sum goes backwards.
    """
    user = system = 0
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields is not None and len(fields) > 14:
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return CpuTimes(user / _CLOCK_TICKS_PER_S, system / _CLOCK_TICKS_PER_S)


_VMRSS = re.compile(r"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)


def rss_bytes(pid: int) -> int:
    """Sum of ``VmRSS`` over ``pid``'s process tree (shared pages counted once per process)."""
    return _rss_of(process_tree(pid))


def _rss_of(members: list[int]) -> int:
    total = 0
    for member in members:
        try:
            with open(f"/proc/{member}/status", encoding="ascii", errors="replace") as f:
                match = _VMRSS.search(f.read())
        except OSError:
            continue
        if match:
            total += int(match.group(1)) * 1024
    return total


class RssSampler:
    """The peak of :func:`rss_bytes` over a stretch of time, sampled on a thread of its own.

    Use as a context manager: every ``interval_s`` it reads ``VmRSS`` of the tree's
    processes (the tree itself is rescanned from ``/proc`` every ``rescan_s``, since a scan
    costs more than the reads), and :attr:`peak_bytes` is the largest sum seen, the first
    sample (taken on entry) and the last (on exit) included.
    """

    def __init__(self, pid: int, *, interval_s: float = 0.02, rescan_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.rescan_s = rescan_s
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._members = process_tree(pid)
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> int:
        """Read the tree's RSS now and fold it into the peak; return it."""
        value = _rss_of(self._members)
        with self._lock:
            self.peak_bytes = max(self.peak_bytes, value)
            self.samples += 1
        return value

    def _run(self) -> None:
        scanned = time.monotonic()
        while not self._stop.wait(self.interval_s):
            if time.monotonic() - scanned >= self.rescan_s:
                self._members = process_tree(self.pid)
                scanned = time.monotonic()
            self.sample()

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._members = process_tree(self.pid)
        self.sample()
