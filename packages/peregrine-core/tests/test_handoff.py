"""``HandoffPool`` and ``Monitor``: a handler call that blocks hands its loop to another thread.

The tests drive a tiny fake loop (:class:`Loop`) the way a worker drives its own: an inbox
plays the poller, the completion queue and the wake-up at once; each item "calls a
handler" between ``begin`` and ``end``; a call that ``end`` says was detached hands its
result back with ``post`` and raises ``Unwind``. What must hold: a call blocking longer
than the monitor's delay is detached and the loop carries on on another thread; a short
call never is; every result arrives exactly once, inline or posted; tasks count in
``busy``; a finished pool drops late results and its threads exit; the monitor sleeps
while no loop is in a pass; thread counts stay bounded.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from peregrine_core.handoff import HandoffPool, Monitor, Unwind

TIMEOUT = 5.0
DELAY = 0.02  # the monitor's delay in most tests
_names = iter(range(1_000_000))


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@dataclass
class Call:
    """An item of the loop: a handler call that takes ``seconds``, or waits for ``gate``."""

    ident: int
    seconds: float = 0.0
    gate: threading.Event | None = None
    work: int = 0  # iterations of pure-Python work instead of sleeping


@dataclass
class Posted:
    """A result handed back by a thread whose call was detached."""

    ident: int
    key: object


class _Stop:
    pass


STOP = _Stop()


class Loop:
    """A fake loop driven by a :class:`HandoffPool` (the worker's protocol, in small).

    Only the driver touches ``delivered``; a detached thread only finishes its call and
    posts the result through the inbox (rule 1 of ``handoff``).
    """

    def __init__(self, monitor: Monitor | None) -> None:
        self.name = f"test-handoff-{next(_names)}"
        self.inbox: queue.Queue[Call | Posted | _Stop] = queue.Queue()
        self.delivered: list[tuple[int, str]] = []  # (ident, "inline" | "posted")
        self.detached: list[object] = []  # the keys on_detach was given
        self.lost: list[object] = []  # the keys of calls whose end() returned False
        self.call_threads: dict[int, str] = {}
        self.drivers: set[str] = set()
        self.peak_threads = 0
        self.pool = HandoffPool(self.name, self.drive, self.detached.append)
        if monitor is not None:
            monitor.add(self.pool)

    def pool_threads(self) -> int:
        return sum(1 for t in threading.enumerate() if t.name.split(".")[0] == self.name)

    def handle(self, call: Call) -> int:
        self.call_threads[call.ident] = threading.current_thread().name
        self.peak_threads = max(self.peak_threads, self.pool_threads())
        if call.gate is not None:
            assert call.gate.wait(TIMEOUT), "a gated call was never released"
        elif call.seconds:
            time.sleep(call.seconds)
        for _ in range(call.work):
            pass
        return call.ident

    def drive(self) -> None:
        pool = self.pool
        self.drivers.add(threading.current_thread().name)
        while True:
            pool.end_pass()  # then "poll"
            try:
                event = self.inbox.get(timeout=TIMEOUT)
            except queue.Empty:
                return  # abandoned by a failed test: end the loop
            pool.begin_pass()
            if isinstance(event, _Stop):
                return
            if isinstance(event, Posted):
                self.delivered.append((event.ident, "posted"))
                continue
            key = object()  # a new object per call
            calls = pool.begin(key)
            result = self.handle(event)
            if pool.end(calls):
                self.delivered.append((result, "inline"))
                continue
            # Detached: this thread no longer drives the loop.
            self.lost.append(key)
            pool.post(self.give_back(result, key))
            raise Unwind

    def give_back(self, ident: int, key: object) -> Callable[[], None]:
        """The action a detached thread posts: queue its result and wake the loop."""
        inbox = self.inbox
        return lambda: inbox.put(Posted(ident, key))

    def put(self, *items: Call | _Stop) -> None:
        for item in items:
            self.inbox.put(item)

    def delivered_idents(self) -> list[int]:
        return [ident for ident, _ in self.delivered]

    def has_delivered(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.delivered) >= count

    def has_detached(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.detached) >= count


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    mon = Monitor(DELAY)
    mon.start()
    try:
        yield mon
    finally:
        mon.stop()


@pytest.fixture
def make_loop(monitor: Monitor) -> Iterator[Callable[[], Loop]]:
    loops: list[Loop] = []

    def make() -> Loop:
        loop = Loop(monitor)
        loops.append(loop)
        loop.pool.start()
        return loop

    yield make
    for loop in loops:
        loop.put(STOP)
        assert loop.pool.join(TIMEOUT), "the pool's threads did not exit"
        monitor.remove(loop.pool)


# --- detaching -----------------------------------------------------------------------------


def test_a_call_blocking_longer_than_the_delay_is_detached_and_another_thread_drives_on(
    make_loop: Callable[[], Loop],
) -> None:
    loop = make_loop()
    gate = threading.Event()
    started = time.monotonic()
    loop.put(Call(1, gate=gate), Call(2))
    try:
        assert wait_until(lambda: 2 in loop.delivered_idents())
        elapsed = time.monotonic() - started
        assert not gate.is_set()  # the first call still blocks
        assert loop.delivered == [(2, "inline")]
        assert len(loop.detached) == 1
        assert loop.pool.busy == 1
        assert loop.call_threads[1] != loop.call_threads[2]
        assert elapsed < 1.0, f"the loop was stalled for {elapsed:.2f} s with a delay of {DELAY} s"
    finally:
        gate.set()
    assert wait_until(lambda: 1 in loop.delivered_idents())
    assert loop.delivered == [(2, "inline"), (1, "posted")]
    assert loop.pool.busy == 0
    assert loop.lost == loop.detached


def test_the_detached_thread_drives_the_loop_again_later(make_loop: Callable[[], Loop]) -> None:
    loop = make_loop()
    gates = [threading.Event() for _ in range(3)]
    try:
        for i, gate in enumerate(gates):
            loop.put(Call(i, gate=gate))
            assert wait_until(loop.has_detached(i + 1))
            if i:
                gates[i - 1].set()  # the previous blocked thread goes back to the pool
                assert wait_until(loop.has_delivered(i))  # the previous call's result
    finally:
        for gate in gates:
            gate.set()
    assert wait_until(lambda: sorted(loop.delivered_idents()) == [0, 1, 2])
    assert len(loop.drivers) <= 3  # the threads take turns; they do not pile up
    assert loop.peak_threads <= 3


def test_a_call_shorter_than_the_delay_is_never_detached(
    monitor: Monitor, make_loop: Callable[[], Loop], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = make_loop()
    checks = 0
    check = loop.pool.check

    def counting_check() -> None:
        nonlocal checks
        checks += 1
        check()

    monkeypatch.setattr(loop.pool, "check", counting_check)
    calls = 0
    deadline = time.monotonic() + 0.5  # about 25 looks at the driver's calls
    while time.monotonic() < deadline:
        loop.put(*(Call(calls + i, work=300) for i in range(200)))  # microseconds each
        calls += 200
        assert wait_until(loop.has_delivered(calls))
    assert loop.detached == []
    assert all(how == "inline" for _, how in loop.delivered)
    assert len(loop.drivers) == 1
    assert checks >= 10, "the monitor hardly looked: the test proves nothing"


def test_calls_of_random_durations_around_the_delay_deliver_each_result_exactly_once(
    make_loop: Callable[[], Loop],
) -> None:
    loop = make_loop()
    rng = random.Random(1234)
    calls = 150
    loop.put(*(Call(i, seconds=rng.uniform(0, 2 * DELAY)) for i in range(calls)))
    assert wait_until(lambda: len(loop.delivered) >= calls, timeout=15.0)
    time.sleep(3 * DELAY)  # a result delivered twice would arrive by now
    assert sorted(loop.delivered_idents()) == list(range(calls))
    posted = [ident for ident, how in loop.delivered if how == "posted"]
    assert len(posted) == len(loop.detached) == len(loop.lost)
    assert 0 < len(posted) < calls, "durations around the delay should give both outcomes"
    assert loop.pool.busy == 0
    assert loop.peak_threads <= 20, f"{loop.peak_threads} pool threads for {calls} calls"


class Actor:
    """A thread that runs the steps it is given, one at a time, and returns their results."""

    def __init__(self, name: str) -> None:
        self._steps: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._results: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (step := self._steps.get(timeout=TIMEOUT)) is not None:
            self._results.put(step())

    def do(self, step: Callable[[], object]) -> object:
        self._steps.put(step)
        return self._results.get(timeout=TIMEOUT)

    def stop(self) -> None:
        self._steps.put(None)
        self._thread.join(TIMEOUT)


def test_a_detached_threads_end_does_not_take_the_new_drivers_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old thread's ``end`` must say "detached" even when the new driver has begun a call.

    Played step by step: the monitor's two looks detach the old driver's call; the new
    driver begins the next call; then the old driver's call returns.
    """
    detached: list[object] = []
    pool = HandoffPool("test-handoff-steps", lambda: None, detached.append)
    monkeypatch.setattr(pool, "_promote_locked", lambda: None)  # the actors play the drivers
    old, new = Actor("old-driver"), Actor("new-driver")
    first, second = object(), object()
    try:
        old_calls = old.do(lambda: pool.begin(first))
        pool.check()
        pool.check()  # seen twice: detached
        assert detached == [first]
        new_calls = new.do(lambda: pool.begin(second))
        assert isinstance(old_calls, list) and isinstance(new_calls, list)
        assert old.do(lambda: pool.end(old_calls)) is False, (
            "the detached thread was told its call is still its own"
        )
        assert new.do(lambda: pool.end(new_calls)) is True, "the new driver was told its call was detached"
    finally:
        old.stop()
        new.stop()


def test_the_call_reported_detached_is_the_one_whose_result_is_posted() -> None:
    """With threads: the first call returns while the new driver is inside a call."""
    mon = Monitor(0.05)
    mon.start()
    loop = Loop(mon)
    loop.pool.start()
    first, second = threading.Event(), threading.Event()
    try:
        loop.put(Call(1, gate=first))
        assert wait_until(lambda: len(loop.detached) == 1)
        loop.put(Call(2, gate=second))
        assert wait_until(lambda: 2 in loop.call_threads)  # the new driver is inside call 2
        first.set()  # call 1 returns now, well before call 2 could be detached
        time.sleep(0.2)
        second.set()
        assert wait_until(lambda: sorted(loop.delivered_idents()) == [1, 2])
        assert (1, "posted") in loop.delivered, loop.delivered
        assert {id(k) for k in loop.lost} == {id(k) for k in loop.detached}
    finally:
        first.set()
        second.set()
        loop.put(STOP)
        assert loop.pool.join(TIMEOUT)
        mon.stop()


def test_end_and_detach_race_with_exactly_one_winner_per_call() -> None:
    """``end`` on the driver and ``check`` on the monitor, hammered without sleeps."""
    on_detach: list[object] = []
    pool = HandoffPool("test-handoff-race", lambda: None, on_detach.append)
    pool._promote_locked = lambda: None  # type: ignore[method-assign]  # no driver to promote
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            pool.check()

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    ended: list[object] = []
    lost: list[object] = []
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            key = object()
            calls = pool.begin(key)
            for _ in range(random.randrange(50)):
                pass
            (ended if pool.end(calls) else lost).append(key)
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert pool.calls == []
    assert {id(k) for k in lost} == {id(k) for k in on_detach}
    assert not {id(k) for k in ended} & {id(k) for k in on_detach}
    assert pool.busy == len(lost)


# --- tasks ---------------------------------------------------------------------------------


def test_submitted_tasks_run_on_pool_threads_and_count_as_busy_until_post(
    make_loop: Callable[[], Loop],
) -> None:
    loop = make_loop()
    pool = loop.pool
    tasks = 3
    together = threading.Barrier(tasks, timeout=TIMEOUT)
    release = threading.Event()
    threads: list[str] = []

    def task(ident: int) -> Callable[[], None]:
        def run() -> None:
            threads.append(threading.current_thread().name)
            together.wait()  # every task runs at once, each on a thread of its own
            assert release.wait(TIMEOUT)
            pool.post(loop.give_back(ident, None))

        return run

    for i in range(tasks):
        pool.submit(task(i))
    assert pool.busy == tasks
    assert wait_until(lambda: len(threads) == tasks)
    assert all(name.split(".")[0] == loop.name for name in threads)
    assert threading.current_thread().name not in threads
    assert pool.busy == tasks
    release.set()
    assert wait_until(lambda: len(loop.delivered) == tasks)
    assert sorted(loop.delivered) == [(i, "posted") for i in range(tasks)]
    assert pool.busy == 0
    assert loop.detached == []


def test_a_task_submitted_while_a_thread_is_idle_reuses_it(make_loop: Callable[[], Loop]) -> None:
    loop = make_loop()
    pool = loop.pool
    for i in range(10):
        done = threading.Event()

        def run(i: int = i, done: threading.Event = done) -> None:
            pool.post(loop.give_back(i, None))
            done.set()

        pool.submit(run)
        assert done.wait(TIMEOUT)
        assert wait_until(lambda: pool._idle >= 1)  # the task's thread waits for work again
    assert wait_until(lambda: len(loop.delivered) == 10)
    assert loop.pool_threads() <= 3  # the driver and one reused task thread (or two)


# --- finishing -----------------------------------------------------------------------------


def test_after_finish_a_posted_result_is_dropped_and_the_threads_exit(monitor: Monitor) -> None:
    loop = Loop(monitor)
    loop.pool.start()
    gate = threading.Event()
    loop.put(Call(1, gate=gate))
    try:
        assert wait_until(lambda: len(loop.detached) == 1)
        loop.put(STOP)  # the new driver ends the loop: the pool is finished
        assert wait_until(lambda: loop.pool.finished)
    finally:
        gate.set()
    assert loop.pool.join(TIMEOUT)  # the detached thread exits too, once its call returns
    assert loop.pool_threads() == 0
    assert loop.pool.busy == 0
    assert loop.inbox.empty()  # its result was dropped, not queued
    assert loop.delivered == []
    monitor.remove(loop.pool)


def test_after_finish_idle_threads_exit(monitor: Monitor) -> None:
    loop = Loop(monitor)
    loop.pool.start()
    loop.put(Call(1, seconds=4 * DELAY))  # detached: its thread then idles in the pool
    assert wait_until(lambda: loop.delivered == [(1, "posted")])
    assert wait_until(lambda: loop.pool._idle == 1)
    loop.pool.finish()
    loop.put(STOP)
    assert loop.pool.join(TIMEOUT)
    assert loop.pool_threads() == 0
    monitor.remove(loop.pool)


def test_a_task_posting_after_finish_is_dropped_and_no_longer_busy() -> None:
    pool = HandoffPool("test-handoff-finish", lambda: None, lambda key: None)
    ran: list[int] = []
    started = threading.Event()
    release = threading.Event()
    done = threading.Event()

    def task() -> None:
        started.set()
        assert release.wait(TIMEOUT)
        pool.post(lambda: ran.append(1))
        done.set()

    pool.submit(task)
    assert pool.busy == 1
    assert started.wait(TIMEOUT)
    pool.finish()
    release.set()
    assert done.wait(TIMEOUT)
    assert ran == []
    assert pool.busy == 0
    assert pool.join(TIMEOUT)


def test_the_driver_returning_finishes_the_pool() -> None:
    ran = threading.Event()
    pool = HandoffPool("test-handoff-return", ran.set, lambda key: None)
    pool.start()
    assert ran.wait(TIMEOUT)
    assert pool.join(TIMEOUT)
    assert pool.finished


# --- the monitor ---------------------------------------------------------------------------


class _Counted:
    """A pool that is never started, whose checks are counted; the test is its driver."""

    def __init__(self, monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pool = HandoffPool("test-handoff-counted", lambda: None, lambda key: None)
        self.checks = 0
        check = self.pool.check

        def counting_check() -> None:
            self.checks += 1
            check()

        monkeypatch.setattr(self.pool, "check", counting_check)
        monitor.add(self.pool)

    def checks_during(self, seconds: float) -> int:
        before = self.checks
        time.sleep(seconds)
        return self.checks - before


def test_the_monitor_sleeps_while_no_pool_is_in_a_pass(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _Counted(monitor, monkeypatch)
    assert wait_until(lambda: monitor.sleeping)
    assert counted.checks_during(0.2) <= 1


def test_the_monitor_ticks_every_delay_while_a_pass_is_in_progress(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _Counted(monitor, monkeypatch)
    assert wait_until(lambda: monitor.sleeping)
    counted.pool.begin_pass()  # wakes the sleeping monitor
    try:
        ticks = counted.checks_during(0.2)
    finally:
        counted.pool.end_pass()
    assert ticks >= 4, f"{ticks} checks in 0.2 s with a delay of {DELAY} s"
    assert ticks <= 0.2 / DELAY + 2
    assert wait_until(lambda: monitor.sleeping)  # and sleeps again after the pass
    assert counted.checks_during(0.2) <= 1


def test_the_monitor_ticks_while_a_call_runs_outside_a_pass(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _Counted(monitor, monkeypatch)
    pool = counted.pool
    pool.begin_pass()
    calls = pool.begin(object())
    pool.end_pass()
    try:
        assert counted.checks_during(0.1) >= 2
    finally:
        pool.end(calls)


def test_an_idle_loop_does_not_make_the_monitor_tick(
    monitor: Monitor, make_loop: Callable[[], Loop], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = make_loop()
    loop.put(Call(1))
    assert wait_until(lambda: loop.delivered == [(1, "inline")])
    checks = 0
    check = loop.pool.check

    def counting_check() -> None:
        nonlocal checks
        checks += 1
        check()

    monkeypatch.setattr(loop.pool, "check", counting_check)
    assert wait_until(lambda: monitor.sleeping)
    checks = 0
    time.sleep(0.2)
    assert checks <= 1


def test_stop_returns_promptly_while_the_monitor_sleeps() -> None:
    mon = Monitor(DELAY)
    mon.start()
    assert wait_until(lambda: mon.sleeping)
    started = time.monotonic()
    mon.stop()
    assert time.monotonic() - started < 0.9
    assert not mon._thread.is_alive()


def test_stop_returns_within_about_a_second_even_mid_tick() -> None:
    mon = Monitor(1.5)  # a tick longer than stop() waits
    pool = HandoffPool("test-handoff-tick", lambda: None, lambda key: None)
    mon.add(pool)
    pool.begin_pass()
    mon.start()
    started = time.monotonic()
    mon.stop()
    assert time.monotonic() - started < 1.3
    pool.end_pass()


def test_stop_before_start_returns_at_once() -> None:
    mon = Monitor(DELAY)
    started = time.monotonic()
    mon.stop()
    assert time.monotonic() - started < 0.1


def test_a_removed_pool_is_no_longer_checked(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    counted = _Counted(monitor, monkeypatch)
    counted.pool.begin_pass()
    try:
        assert counted.checks_during(0.1) >= 2
        monitor.remove(counted.pool)
        time.sleep(2 * DELAY)  # a tick in progress may still see it
        assert counted.checks_during(0.1) == 0
    finally:
        counted.pool.end_pass()


# --- thread counts -------------------------------------------------------------------------


def test_many_blocking_calls_in_a_row_keep_the_thread_count_bounded(make_loop: Callable[[], Loop]) -> None:
    baseline = threading.active_count()
    loop = make_loop()
    calls = 30
    loop.put(*(Call(i, seconds=3 * DELAY) for i in range(calls)))
    peak = 0
    deadline = time.monotonic() + 10.0
    while len(loop.delivered) < calls and time.monotonic() < deadline:
        peak = max(peak, threading.active_count() - baseline)
        time.sleep(0.002)
    assert sorted(loop.delivered_idents()) == list(range(calls))
    assert peak <= 8, f"{peak} threads for {calls} blocking calls"
    assert loop.peak_threads <= 8
