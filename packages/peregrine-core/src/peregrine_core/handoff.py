"""Handler calls that block do not stall the loop: the loop changes threads instead.

Theory of operation. A loop (an HTTP worker, a WebSocket thread) runs handler code inline,
on the thread that polls: a CPU-only handler then costs no thread switch at all. Before a
call the loop's *driver* (the thread running it) marks the call with :meth:`HandoffPool.begin`;
after it, :meth:`HandoffPool.end` says whether the call is still its own. A monitor thread
(:class:`Monitor`, one per process) looks at every pool each ``delay`` seconds; a call it
sees twice, i.e. one that has run for at least ``delay``, is *detached*: the pool promotes
another thread (a parked one, or a new one) to drive the loop, and the blocked thread,
when its call returns, must not touch the loop again. It hands its result back through the
loop's own completion queue and wake-up, raises :class:`Unwind` to leave the loop's frames,
and waits for work: to drive the loop in turn, or to run a *task*.

Tasks are calls started off the loop from the outset (:meth:`HandoffPool.submit`): once a
loop has seen a call block, waiting ``delay`` before each handoff would serve blocking
handlers one ``delay`` at a time, so for a while it hands every call to a pool thread, as
a thread-pool server does; when calls stop blocking it goes back to running them inline.

Rules that make this safe, with or without a GIL:

1. Only the driver touches the loop's state (poller, connections, queues other than the
   completion queue). A detached thread only finishes its own call and posts the result.
2. A call in progress is a token in a one-item list, ``calls``, that belongs to the
   driver of the moment; the driver's ``end`` and the monitor's detach both take it with
   ``list.pop()``, which is atomic (a per-object lock on free-threaded builds): exactly
   one of them gets it, so a call is either finished inline or handed back, never both.
   A detach also gives the pool a new list for the next driver, so the detached thread's
   own ``end`` later finds *its* list empty, never the new driver's token. (A lock would
   do the same at three times the cost, on every request.)
3. Loop state that a call interrupts must live in the loop's objects, not in the frame of
   the call (a deque of connections still to parse is consumed as it goes, so the next
   driver carries on where the detached one stopped).

``busy`` counts detached calls still running; a loop bounds it (``handler_threads``) by not
starting calls beyond the bound, queueing them instead. The driver itself is never blocked
for longer than about two ``delay`` periods, so the loop keeps answering (a 503, a queued
request, a shutdown) whatever handlers do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["HandoffPool", "Monitor", "Unwind"]

log = logging.getLogger("peregrine_core.server")

#: A pool thread with nothing to do for this long exits (while more than KEEP_THREADS run).
IDLE_THREAD_SECONDS: Final = 10.0
KEEP_THREADS: Final = 2


class Unwind(BaseException):
    """Raised on a thread whose call was detached, after it posted its result.

    A ``BaseException``, so that the loop's ``except Exception`` guards let it through; the
    pool's thread function catches it. Loop code must not catch it.
    """


class HandoffPool:
    """The threads that take turns driving one loop.

    Args:
        name: the prefix of the threads' names.
        drive: runs the loop until it is finished. It returns on the thread that finished
            it; on a detached thread it raises :class:`Unwind`.
        on_detach: called under the pool's lock when the monitor detaches the call marked
            with ``key`` (the new driver learns of it through whatever this records).
    """

    def __init__(
        self,
        name: str,
        drive: Callable[[], None],
        on_detach: Callable[[object], None],
    ) -> None:
        self._name = name
        self._drive = drive
        self._on_detach = on_detach
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self.calls: list[object] = []  # the driver's current call's key, while it runs
        self._seen: object = None  # the call the monitor saw at its last look
        self.in_pass = False  # the driver is handling what a poll returned
        self._busy = 0
        self._idle = 0  # threads waiting for work
        self._promotions = 0  # drivers wanted
        self._tasks: deque[Callable[[], None]] = deque()
        self._finished = False
        self._threads = 0
        self._count = 0
        self._done = threading.Event()
        self.monitor: Monitor | None = None

    # --- the driver ----------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Detached calls still running."""
        return self._busy

    def begin_pass(self) -> None:
        """On the driver, before it may call handlers (until its next poll): the monitor
        watches from now on (and may sleep otherwise)."""
        self.in_pass = True
        monitor = self.monitor
        if monitor is not None and monitor.sleeping:
            monitor.arm()

    def end_pass(self) -> None:
        """On the driver, before it polls again."""
        self.in_pass = False

    def begin(self, key: object) -> list[object]:
        """Mark the start of a call, on the driver, inside a pass; pass what it returns to
        :meth:`end`. ``key`` must be a new object for each call (the monitor tells calls
        apart by identity). A loop may inline this as ``calls = pool.calls;
        calls.append(key)``, reading ``pool.calls`` afresh on each driver."""
        calls = self.calls
        calls.append(key)
        return calls

    def end(self, calls: list[object]) -> bool:
        """Mark the end of the call begun with ``calls``: True when it is still the
        driver's own.

        False means the call was detached: the caller hands its result to the loop with
        :meth:`post` and raises :class:`Unwind`.
        """
        try:
            calls.pop()
        except IndexError:
            return False
        return True

    def post(self, action: Callable[[], None]) -> None:
        """On a detached thread: run ``action`` (queue the result, wake the loop) under the
        pool's lock, unless the loop is finished; then count the call done."""
        with self._lock:
            self._busy -= 1
            if not self._finished:
                action()

    # --- the monitor ---------------------------------------------------------------------

    def check(self) -> None:
        """Detach the driver's call if it was already running at the previous check."""
        calls = self.calls
        try:
            key = calls[0]
        except IndexError:
            self._seen = None
            return
        if self._seen is not key:
            self._seen = key
            return
        self._seen = None
        with self._lock:
            if self._finished:
                return
            try:
                taken = calls.pop()
            except IndexError:
                return  # the call ended just now
            self.calls = []  # the next driver's: the detached thread keeps the old one
            # ``taken`` is the call seen twice, or (if it ended and the next began in
            # between, a window of a few instructions) the next one: detached too early,
            # which costs a thread switch and nothing else.
            self._busy += 1
            self._on_detach(taken)
            self._promote_locked()

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` on a pool thread: a call known to block, started off the loop.

        It counts in :attr:`busy` from now; the task ends with :meth:`post`.
        """
        with self._lock:
            self._busy += 1
            self._tasks.append(task)
            self._wake_locked()

    # --- threads -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the first driver."""
        with self._lock:
            self._promotions += 1
            self._spawn_locked()

    def _promote_locked(self) -> None:
        self._promotions += 1
        self._wake_locked()

    def _wake_locked(self) -> None:
        """An item (a promotion or a task) was added: wake an idle thread, or start one."""
        if self._idle > self._promotions + len(self._tasks) - 1:
            self._cv.notify()
        else:
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        self._count += 1
        self._threads += 1
        name = self._name if self._count == 1 else f"{self._name}.{self._count - 1}"
        threading.Thread(target=self._thread_main, name=name, daemon=True).start()

    def _next_item(self) -> Callable[[], None] | None:
        """Wait for work: ``None`` means drive the loop; return only once there is work.

        Raises:
            _Exit: the loop is finished, or this thread has been idle long enough.
        """
        with self._lock:
            while True:
                if self._finished:
                    raise _Exit
                if self._promotions:
                    self._promotions -= 1
                    return None
                if self._tasks:
                    return self._tasks.popleft()
                # Beyond KEEP_THREADS an idle thread gives up after a while; the ones kept
                # wait without a timeout (an idle server does not wake up periodically).
                spare = self._threads > KEEP_THREADS
                self._idle += 1
                woken = self._cv.wait(IDLE_THREAD_SECONDS if spare else None)
                self._idle -= 1
                if not woken and spare and not self._promotions and not self._tasks:
                    raise _Exit

    def _thread_main(self) -> None:
        try:
            while True:
                task = self._next_item()
                if task is not None:
                    task()  # ends with post(); exceptions are the task's to handle
                    continue
                try:
                    self._drive()
                except Unwind:
                    continue  # detached: the call's result went back to the loop
                self.finish()  # this thread finished the loop
                return
        except _Exit:
            pass
        finally:
            with self._lock:
                self._threads -= 1
                if self._threads == 0:
                    self._done.set()

    def finish(self) -> None:
        """The loop is over: idle threads exit, late results are dropped."""
        with self._lock:
            self._finished = True
            self._busy -= len(self._tasks)  # never started
            self._tasks.clear()
            self._cv.notify_all()

    @property
    def finished(self) -> bool:
        return self._finished

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every thread of this pool has exited."""
        return self._done.wait(timeout)


class _Exit(Exception):
    pass


class Monitor:
    """One thread per process that lets blocked calls hand their loop over.

    It ticks every ``delay`` seconds while some loop's driver may be calling handlers
    (between :meth:`HandoffPool.begin_pass` and its next poll), and sleeps without waking
    up otherwise: a driver that begins such a pass while the monitor sleeps wakes it.
    """

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._pools: list[HandoffPool] = []
        self._lock = threading.Lock()
        self._armed = threading.Event()
        self._stopped = False
        self.sleeping = False
        self._thread = threading.Thread(target=self._run, name="peregrine-monitor", daemon=True)

    def add(self, pool: HandoffPool) -> None:
        with self._lock:
            self._pools = [*self._pools, pool]
            pool.monitor = self

    def remove(self, pool: HandoffPool) -> None:
        with self._lock:
            self._pools = [p for p in self._pools if p is not pool]

    def start(self) -> None:
        self._thread.start()

    def arm(self) -> None:
        """A pass has started: tick until no loop is in one."""
        self._armed.set()

    def stop(self) -> None:
        self._stopped = True
        self._armed.set()
        if self._thread.ident is not None:
            self._thread.join(1.0)

    def _calling(self) -> bool:
        return any(pool.in_pass or pool.calls for pool in self._pools)

    def _run(self) -> None:
        delay = self._delay
        armed = self._armed
        sleep = time.sleep
        while not self._stopped:
            for pool in self._pools:
                try:
                    pool.check()
                except Exception:  # pragma: no cover - a bug; keep the others served
                    log.exception("handoff check failed")
            sleep(delay)
            if not self._calling():
                # Announce the sleep first, then look again: a pass that starts after the
                # look sees ``sleeping`` and arms; one that started before it is seen.
                self.sleeping = True
                armed.clear()
                if not self._calling() and not self._stopped:
                    armed.wait()
                self.sleeping = False
