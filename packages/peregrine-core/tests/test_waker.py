"""``Waker`` after ``close``: a no-op that never writes to a descriptor number reused since.

A closed waker's descriptor number goes back to the OS, and the next ``eventfd``, ``pipe``
or ``open`` may get it. A late ``wake()`` (from another thread, or a signal handler) must
then neither raise nor write to that new file. Each case runs with both implementations:
the eventfd (where the OS has one) and the socket pair.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from peregrine_core.poller import Waker

TIMEOUT = 5.0
RACE_ITERATIONS = 200
RACE_SECONDS = 3.0  # the race test stops early rather than exceed this
WAKERS = 8
HAS_EVENTFD = hasattr(os, "eventfd")
# Kept before the socket-pair runs hide it from ``Waker``; only used where HAS_EVENTFD.
_eventfd = getattr(os, "eventfd", None)
_eventfd_read = getattr(os, "eventfd_read", None)


@pytest.fixture(params=["eventfd", "socketpair"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which descriptor ``Waker`` is built on (the socket pair where there is no eventfd)."""
    name: str = request.param
    if name == "eventfd":
        if not HAS_EVENTFD:
            pytest.skip("no eventfd on this platform")
    else:
        monkeypatch.delattr(os, "eventfd", raising=False)
    yield name


def _write_number(waker: Waker) -> int:
    """The descriptor number ``wake()`` writes to."""
    pair = waker._pair
    return waker.fileno() if pair is None else pair[1].fileno()


def _is_free(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _onto(fd: int, number: int) -> int:
    """Move the new descriptor ``fd`` to ``number`` (a free one) unless it got it already."""
    if fd == number:
        return fd
    assert _is_free(number), "another descriptor took the number meanwhile"
    os.dup2(fd, number)
    os.close(fd)
    return number


def _readable(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def test_wake_makes_the_waker_readable_and_drain_clears_it(kind: str) -> None:
    waker = Waker()
    try:
        assert (waker._pair is None) == (kind == "eventfd")
        assert not _readable(waker.fileno())
        waker.wake()
        waker.wake()
        assert _readable(waker.fileno())
        waker.drain()
        assert not _readable(waker.fileno())
    finally:
        waker.close()


def test_wake_after_close_is_a_no_op(kind: str) -> None:
    waker = Waker()
    waker.close()
    waker.wake()
    waker.wake()
    waker.close()  # twice is harmless too


@pytest.mark.skipif(not HAS_EVENTFD, reason="no eventfd on this platform")
def test_wake_after_close_does_not_write_to_an_eventfd_reusing_the_number(kind: str) -> None:
    waker = Waker()
    number = _write_number(waker)
    waker.close()
    assert _is_free(number)
    assert _eventfd is not None and _eventfd_read is not None
    fd = _onto(_eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC), number)
    try:
        assert fd == number
        waker.wake()
        with pytest.raises(BlockingIOError):
            _eventfd_read(fd)  # the counter is still 0: nothing was written
    finally:
        os.close(fd)


def test_wake_after_close_does_not_write_to_a_pipe_reusing_the_number(kind: str) -> None:
    waker = Waker()
    number = _write_number(waker)
    waker.close()
    assert _is_free(number)
    r, w = os.pipe()
    if r == number:  # the write end is the one a stray wake() could reach
        r = os.dup(r)
        os.close(number)
    w = _onto(w, number)
    os.set_blocking(r, False)
    try:
        assert w == number
        waker.wake()
        with pytest.raises(BlockingIOError):
            os.read(r, 100)  # the pipe is empty
    finally:
        os.close(r)
        os.close(w)


def test_wake_from_its_own_thread_inside_wake_does_not_deadlock(kind: str) -> None:
    """A signal handler may interrupt ``wake`` or ``close`` on the thread that runs it."""
    waker = Waker()
    done = threading.Event()

    def nested() -> None:
        with waker._lock:  # as if interrupted inside wake() or close()
            waker.wake()
            waker.close()
            waker.wake()
        done.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    assert done.wait(TIMEOUT)
    thread.join(TIMEOUT)


def test_concurrent_wakes_while_another_thread_closes_raise_nothing(kind: str) -> None:
    errors: list[BaseException] = []
    deadline = time.monotonic() + RACE_SECONDS
    iterations = 0
    while iterations < RACE_ITERATIONS and time.monotonic() < deadline:
        iterations += 1
        waker = Waker()
        start = threading.Barrier(WAKERS + 1, timeout=TIMEOUT)

        def wake_many(waker: Waker = waker, start: threading.Barrier = start) -> None:
            try:
                start.wait()
                for _ in range(20):
                    waker.wake()
            except BaseException as exc:
                errors.append(exc)

        def close(waker: Waker = waker, start: threading.Barrier = start) -> None:
            try:
                start.wait()
                waker.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wake_many, daemon=True) for _ in range(WAKERS)]
        threads.append(threading.Thread(target=close, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "a wake() or close() hung"
        assert errors == []
        waker.wake()  # closed by now
    assert iterations >= 20, f"only {iterations} iterations in {RACE_SECONDS} s"
