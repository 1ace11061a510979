"""A worker: one poller, its connections, the handler calls and the deadlines.

Strategy: level-triggered readiness. A connection is registered for READ while it has no
output queued and for WRITE (only) while it has. Each pass of the loop first reads every
connection the poller reported, then takes the clock (``Request.received_at``: every request
of the pass had been received by then), then parses and answers what was read. Every
complete request is answered in order (up to ``max_pipelined_requests`` per batch); the
responses of a batch are written together. The worker sleeps in ``poll()`` until the next
deadline or a wake-up (new connections, results of handler calls, shutdown); with no
connection it sleeps indefinitely.

Handlers run inline, on the thread driving the loop, so a CPU-only handler costs no thread
switch. A call that blocks for longer than ``handoff_delay`` is detached (see
:mod:`peregrine_core.handoff`): another thread takes the loop over, the blocked one hands its
response back through ``_completions`` when its call returns. Its connection is out of the
poller meanwhile (state ``CALLING``). At most ``handler_threads`` calls run at once; beyond,
requests wait in a queue of ``handler_queue`` (their connections paused likewise), and
beyond that they are answered ``503`` with ``Retry-After``.

Deadlines (one per connection, its meaning given by the state) are checked by a sweep over
the worker's connections, run when the earliest known deadline has passed, at most every
:data:`SWEEP_INTERVAL_SECONDS`. Invariants: only this thread touches its connections; a
connection whose response ends it never has another byte parsed.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ._config import ServerConfig
from ._connection import Connection, State, flush
from ._errors import PluginError, RemoteProtocolError
from ._h1 import Head, HeadMemo, Limits
from ._log import RateLimitedLog, escape
from ._protocol import error_response
from ._response import Response
from ._stream import BodyStream, attach
from ._streaming import StreamingMixin, _close_source, _drop
from .handoff import HandoffPool, Monitor, Unwind
from .poller import ERROR, READ, WRITE, Poller, Waker, make_poller
from .transport import SocketTransport

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["Worker"]

log = logging.getLogger("peregrine_core.server")
access_log = logging.getLogger("peregrine_core.access")

try:  # Linux: the unsent-and-unacknowledged byte count of a TCP socket
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - elsewhere lingering runs its course
    _TIOCOUTQ = None

SWEEP_INTERVAL_SECONDS: Final = 0.25
_INF: Final = float("inf")
LINGER_SECONDS: Final = 2.0
#: At shutdown an idle keep-alive connection is closed once it has been idle this long: a
#: request its client sent just before it learnt of the shutdown is still answered.
SHUTDOWN_IDLE_SECONDS: Final = 0.5
#: After a handler call blocked, calls start on pool threads for this long (each call that
#: blocks again extends it); then they run inline again.
OFFLOAD_SECONDS: Final = 1.0
#: Longest-idle connections closed at once when the process runs out of descriptors.
SHED_CONNECTIONS: Final = 16
# Connection states as module constants: an enum member looked up on its class costs more.
_IDLE: Final = State.IDLE
_HEAD: Final = State.HEAD
_BODY: Final = State.BODY
_LINGER: Final = State.LINGER
_UPGRADED: Final = State.UPGRADED
_CLOSED: Final = State.CLOSED
_CALLING: Final = State.CALLING
_READ_OR_ERROR: Final = READ | ERROR


_DAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (
    b"Jan",
    b"Feb",
    b"Mar",
    b"Apr",
    b"May",
    b"Jun",
    b"Jul",
    b"Aug",
    b"Sep",
    b"Oct",
    b"Nov",
    b"Dec",
)


def http_date(seconds: float) -> bytes:
    """RFC 9110 §5.6.7 IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (locale-free)."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


class Worker(StreamingMixin):
    """One worker: its loop, the threads that drive it, and everything they own."""

    def __init__(
        self,
        index: int,
        handler: Any,
        config: ServerConfig,
        release_slot: Callable[[int, int], None],
        get_upgrade: Callable[[str], Any],
    ) -> None:
        self.index = index
        self.name = f"peregrine-worker-{index}"
        self._handle = handler.handle_request
        self._config = config
        self._release_slot = release_slot
        self._get_upgrade = get_upgrade
        self._limits = limits = Limits(
            config.max_request_line_bytes,
            config.max_header_bytes,
            config.max_header_count,
            config.max_body_bytes,
            config.body_buffer_bytes,
        )
        self._memo = HeadMemo(limits)
        self._poller: Poller = make_poller(config.poller)
        self._waker = Waker()
        self._poller.register(self._waker.fileno(), READ)
        self._bad_requests = RateLimitedLog(log)  # one warning per 10 s, with a count
        self._busy_log = RateLimitedLog(log)
        self._inbox: deque[tuple[socket.socket, object]] = deque()
        self._conns: dict[int, Connection] = {}
        self._ready: deque[Connection] = deque()  # connections with buffered requests to parse
        self._read: deque[Connection] = deque()  # read from in this pass, to parse
        self._received = time.monotonic()  # taken after the reads of the latest pass
        # Handler calls. Filled by other threads: _handed (by the monitor, under the pool's
        # lock), _completions (by detached threads, likewise). The rest is the driver's.
        self._pool = HandoffPool(self.name, self._drive, self._on_detach)
        self._handed: deque[tuple[Connection | None, Head, Response | None]] = deque()  # to pause
        self._completions: deque[tuple[Connection, Head, Response, float]] = deque()
        self._waiting: deque[tuple[Connection, Head]] = deque()  # no free handler thread
        # Streamed bodies with news (filled by any thread): connection, stream, head, response.
        self._streams: deque[tuple[Connection, BodyStream, Head, Response]] = deque()
        self._max_busy = config.handler_threads  # a call starts only while fewer run elsewhere
        self._queue_max = config.handler_queue
        self._handoff_delay = config.handoff_delay
        self._offload_until = 0.0  # loop clock: until then calls start on pool threads
        self._careful = False  # calls run elsewhere, or are queued, or offloading is on
        self._attention = False  # a pass has more than reading and answering to do
        self._current: Connection | None = None  # whose request the driver's call serves
        self._current_resp: Response | None = None  # and the response it fills in
        self._shed = False
        self._stopping = False
        self._force = False
        self._stop_deadline = 0.0
        self._stop_started = 0.0
        self._next_deadline = _INF
        self._now = time.monotonic()  # when the last poll() returned: the loop's clock
        self._last_sweep = 0.0
        self._date_line = b""
        self._date_expires = 0.0  # loop clock time when _date_line goes stale
        self._refresh_date()
        self._max_requests = config.max_requests_per_connection
        self._keepalive_timeout = config.keepalive_timeout
        self._read_size = config.read_buffer_size
        self._access_log = config.access_log
        # RFC 9112 §9.3: HTTP/1.1 connections persist by default, so a keep-alive answer
        # to 1.1 needs no header; an HTTP/1.0 client that asked gets it confirmed.
        self._ka10_tail = b"Connection: keep-alive\r\nKeep-Alive: timeout=%d\r\n\r\n" % int(
            config.keepalive_timeout
        )
        self._ended = threading.Event()

    # --- called from other threads -------------------------------------------------------

    @property
    def pool(self) -> HandoffPool:
        """The threads driving this worker's loop (for the handoff monitor)."""
        return self._pool

    @property
    def load(self) -> int:
        """Connections owned or on their way, plus handler calls running elsewhere."""
        return len(self._conns) + len(self._inbox) + self._pool.busy

    def start(self, monitor: Monitor) -> None:
        """Start driving the loop, with ``monitor`` watching its handler calls."""
        monitor.add(self._pool)
        self._pool.start()

    def adopt(self, sock: socket.socket, addr: object) -> None:
        """Hand a freshly accepted socket to this worker (thread-safe)."""
        self._inbox.append((sock, addr))
        self._waker.wake()

    def shed_idle(self) -> None:
        """Ask the worker to close its longest-idle connections (out of descriptors)."""
        self._shed = True
        self._attention = True
        self._waker.wake()

    def stop(self, deadline: float) -> None:
        """Begin a graceful stop: finish in-flight requests until ``deadline`` (monotonic)."""
        self._stop_deadline = deadline
        self._stopping = True
        self._attention = True
        self._waker.wake()

    def force_stop(self) -> None:
        """Close every connection now and exit."""
        self._force = True
        self._stopping = True
        self._attention = True
        self._waker.wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the loop has ended (a detached handler call may still be running)."""
        return self._ended.wait(timeout)

    # --- the loop ----------------------------------------------------------------------------

    def _drive(self) -> None:
        """Run the loop on this thread until it ends, or until this thread's call is
        detached (:class:`Unwind` leaves through here to the pool)."""
        try:
            self._loop()
        except Unwind:
            raise
        except BaseException:
            log.exception("worker %d crashed; closing its connections", self.index)
        self._end_loop()

    def _loop(self) -> None:
        poller = self._poller
        waker = self._waker
        wake_fd = waker.fileno()
        conns = self._conns
        ready = self._ready
        read = self._read
        completions = self._completions
        streams = self._streams  # streamed bodies with more to send
        pool = self._pool
        monotonic = time.monotonic
        monitor = pool.monitor
        assert monitor is not None
        while True:
            if self._attention:  # rare work: detached calls, results, queue, shedding, stop
                if self._attend():
                    return
            timeout: float | None = None
            if ready or completions or read or streams:  # read: left by a detached driver
                timeout = 0.0
            elif conns:
                wake_at = max(self._next_deadline, self._last_sweep + SWEEP_INTERVAL_SECONDS)
                if wake_at != _INF:
                    timeout = max(0.0, wake_at - monotonic())
            if self._stopping:
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            pool.in_pass = False  # HandoffPool.end_pass(), inlined: it runs every pass
            events = poller.poll(timeout)
            self._now = now = monotonic()
            if now >= self._date_expires:
                self._refresh_date()
            for fd, ev in events:
                conn = conns.get(fd)
                if conn is None:
                    if fd == wake_fd:
                        waker.drain()
                        self._take_inbox()
                    continue
                try:
                    if ev & WRITE and conn.writing:
                        self._send(conn)
                    elif ev & _READ_OR_ERROR and not conn.writing:
                        self._on_readable(conn)
                except Exception:
                    self._crashed(conn)
            if read or ready:
                # Handler calls happen from here to the next poll: the monitor watches
                # (HandoffPool.begin_pass(), inlined).
                pool.in_pass = True
                if monitor.sleeping:
                    monitor.arm()
                self._answer_read()  # every ready connection has been read: answer them
            while ready:
                conn = ready.popleft()
                if conn.pending and not conn.writing and conn.state == _IDLE:
                    try:
                        self._process(conn)
                    except Exception:
                        self._crashed(conn)
            if now >= self._next_deadline and now - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
                self._sweep(now)

    def _attend(self) -> bool:
        """The work of a pass that most passes do not have; True when the loop may end.

        ``_attention`` is set by whoever adds such work (other threads included: they add
        it first, then set the flag), and cleared here before the work is looked at, so
        work added meanwhile is seen now or in the next pass.
        """
        self._attention = False
        pool = self._pool
        if self._handed:
            self._pause_handed()
        if self._streams:
            self._take_streams()
        if self._completions or self._waiting:
            pool.begin_pass()
            self._take_completions()
        # Whether a request must look at the handler threads before its call runs here.
        careful = bool(pool._busy or self._waiting or self._now < self._offload_until)
        self._careful = careful
        if self._shed:
            self._shed_idle()
        if self._stopping:
            pool.begin_pass()
            if self._check_stop():
                return True
        if careful or self._stopping or self._completions or self._handed or self._streams:
            self._attention = True  # look again next pass
        return False

    def _end_loop(self) -> None:
        """On the thread that ends the loop: close everything it owns."""
        for conn in list(self._conns.values()):
            self._close(conn)
        while self._inbox:
            sock, _ = self._inbox.popleft()
            sock.close()
            self._release_slot(2, 1)
        for conn, _ in self._waiting:
            self._close(conn)
        self._waiting.clear()
        self._pool.finish()  # from now on results of detached calls are dropped
        for conn, _, resp, _ in self._completions:
            _drop(resp)
            self._close(conn)
        self._completions.clear()
        while self._streams:
            self._streams.popleft()[1].abandon()
        self._poller.close()
        self._waker.close()  # safe: a late wake() after this does nothing (see Waker)
        self._ended.set()

    def _crashed(self, conn: Connection) -> None:
        """A bug surfaced while serving ``conn``: log it, drop that connection, carry on."""
        log.exception("internal error on the connection from %s; closing it", conn.addr)
        try:
            self._close(conn)
        except Exception:
            log.exception("closing the connection from %s failed", conn.addr)

    def _take_inbox(self) -> None:
        inbox = self._inbox
        now = time.monotonic()
        deadline = now + self._config.header_timeout
        while inbox:
            sock, addr = inbox.popleft()
            # Accepted while stopping too: a request it already sent is answered.
            transport = SocketTransport(sock, addr)
            conn = Connection(transport, addr, deadline, self._limits, self._memo, self._ka10_tail)
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, READ)
        self._next_deadline = min(self._next_deadline, deadline)

    def _set_deadline(self, conn: Connection, deadline: float) -> None:
        conn.deadline = deadline
        self._next_deadline = min(self._next_deadline, deadline)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        nearest = _INF
        for conn in list(self._conns.values()):
            if conn.state == _CALLING and not conn.writing:
                continue  # no deadline runs while its handler does (but a streamed body's write does)
            deadline = conn.deadline
            if deadline <= now:
                self._expire(conn)
            elif deadline < nearest:
                nearest = deadline
        self._next_deadline = nearest

    def _expire(self, conn: Connection) -> None:
        state = conn.state
        if conn.writing:
            log.debug("closing %s: no write progress for %.0f s", conn.addr, self._config.write_timeout)
            self._close(conn)
        elif state in (_HEAD, _BODY):
            self._fail(conn, RemoteProtocolError("request not received in time", 408))
        else:  # idle keep-alive, a silent new connection, or the end of a lingering close
            self._close(conn)

    def _idle_since(self, conn: Connection) -> float:
        """When an ``IDLE`` connection's last response was written (or it was accepted)."""
        wait = self._keepalive_timeout if conn.requests else self._config.header_timeout
        return conn.deadline - wait

    def _shed_idle(self) -> None:
        """Close the longest-idle keep-alive connections: the process is out of descriptors."""
        self._shed = False
        idle = [c for c in self._conns.values() if c.state == _IDLE and not c.writing and not c.pending]
        idle.sort(key=self._idle_since)
        for conn in idle[:SHED_CONNECTIONS]:
            self._close(conn)
        if idle:
            self._busy_log.warning(
                "worker %d: out of file descriptors; closed %d idle connection(s)",
                self.index,
                min(len(idle), SHED_CONNECTIONS),
            )

    def _check_stop(self) -> bool:
        """Apply a pending stop; True when the loop may exit."""
        now = time.monotonic()
        if not self._stop_started:
            self._stop_started = now
        if self._force or now >= self._stop_deadline:
            self._report_unfinished()
            for conn in list(self._conns.values()):
                self._close(conn)
            return True
        self._take_inbox()
        # An idle connection is closed once it has been idle for a moment, after a last
        # read: a request already on its way is answered (with Connection: close), and
        # one that arrives before the moment is up likewise.
        quiet = now - SHUTDOWN_IDLE_SECONDS
        idle = [
            c
            for c in self._conns.values()
            if c.state == _IDLE and not c.writing and not c.pending and self._idle_since(c) <= quiet
        ]
        for conn in idle:
            self._on_readable(conn)
        self._answer_read()
        for conn in idle:
            if conn.state == _IDLE and not conn.writing and self._conns.get(conn.fd) is conn:
                self._close(conn)
        # A lingering close protects a response from a reset until the peer has it; once
        # the peer has acknowledged every byte, shutdown need not wait for the rest of it.
        for conn in [c for c in self._conns.values() if c.state == _LINGER]:
            if _unacknowledged(conn.fd) == 0:
                self._close(conn)
        return not self._conns

    def _report_unfinished(self) -> None:
        """At the stop's deadline: say which requests are still unanswered, and why."""
        if not self._conns:
            return
        waiting = {id(c) for c, _ in self._waiting}
        calling = 0
        for conn in self._conns.values():
            if conn.state != _CALLING or conn.calling is None:
                continue
            req = conn.calling.request
            calling += 1
            log.warning(
                "worker %d: %s %s from %s %s at the shutdown deadline; closing its connection",
                self.index,
                escape(req.method),
                escape(req.target),
                conn.addr,
                "still waited for a handler thread" if id(conn) in waiting else "was still in its handler",
            )
        log.info(
            "worker %d: closing %d connection(s) at the deadline (%d with a request unanswered)",
            self.index,
            len(self._conns),
            calling,
        )

    # --- handler calls on other threads ------------------------------------------------------

    def _on_detach(self, key: object) -> None:
        """Monitor thread, under the pool's lock: the driver's call on ``key`` (the head of
        a request of ``_current``) was detached."""
        assert isinstance(key, Head)
        self._handed.append((self._current, key, self._current_resp))
        self._offload_until = time.monotonic() + OFFLOAD_SECONDS
        self._careful = True
        self._attention = True

    def _offload(self, conn: Connection, head: Head) -> None:
        """Start the handler call on a pool thread: calls have been blocking lately."""
        conn.calling = head
        self._pause(conn)
        started = time.perf_counter()
        handle = self._handle
        resp = Response()
        attach(resp, self._announcer(conn, head, resp))  # a streamed body is followed

        def task() -> None:
            nonlocal resp
            req = head.request
            try:
                handle(req, resp)
                if resp._streaming is not None:
                    self._produce(head, resp, False)
            except Exception:
                resp = self._handler_failed(req, resp)
            if time.perf_counter() - started > self._handoff_delay:
                self._offload_until = time.monotonic() + OFFLOAD_SECONDS  # still blocking
                self._careful = True
                self._attention = True
            self._post(conn, head, resp, started if self._access_log else 0.0)

        self._pool.submit(task)

    def _pause(self, conn: Connection) -> None:
        """Take ``conn`` out of the poller while its request waits for a handler."""
        conn.state = _CALLING
        if not conn.paused:
            conn.paused = True
            self._poller.unregister(conn.fd)

    def _resume(self, conn: Connection) -> None:
        conn.state = _IDLE
        conn.calling = None
        if conn.paused:
            conn.paused = False
            conn.writing = False
            self._poller.register(conn.fd, READ)
        # else a streamed body's output is being written: it stays registered for that

    def _pause_handed(self) -> None:
        handed = self._handed
        while handed:
            conn, head, resp = handed.popleft()
            if conn is None:
                continue
            if conn.state != _CLOSED and self._conns.get(conn.fd) is conn:
                conn.calling = head  # names the request if it is unanswered at shutdown
                self._pause(conn)
            if resp is not None:
                # A streamed body is followed (or, its connection gone, its producer stopped).
                attach(resp, self._announcer(conn, head, resp))

    def _take_completions(self) -> None:
        """Start queued requests on the handler threads that came free, then answer the
        requests whose calls came back (starting first: the threads get to work while the
        answers are written)."""
        waiting = self._waiting
        while waiting and self._pool.busy < self._max_busy:
            conn, head = waiting.popleft()
            if conn.state == _CLOSED or self._conns.get(conn.fd) is not conn:
                continue
            self._resume(conn)
            try:
                self._process(conn, head)
            except Exception:
                self._crashed(conn)
        completions = self._completions
        while completions:
            conn, head, resp, started = completions.popleft()
            if conn.state == _CLOSED or self._conns.get(conn.fd) is not conn:
                _drop(resp)
                continue
            self._resume(conn)
            try:
                self._process(conn, head, resp, started)
            except Exception:
                self._crashed(conn)

    def _enqueue(self, conn: Connection, head: Head) -> bool:
        """No handler thread is free: queue the request (True), or refuse it (False)."""
        if len(self._waiting) < self._queue_max:
            conn.calling = head
            self._waiting.append((conn, head))
            self._attention = True
            self._pause(conn)
            return True
        self._busy_log.warning(
            "worker %d: %d handler calls running and %d requests queued; answered 503 to %s",
            self.index,
            self._pool.busy + 1,
            len(self._waiting),
            conn.addr,
        )
        return False

    # --- reading -----------------------------------------------------------------------------

    def _on_readable(self, conn: Connection) -> None:
        try:
            data = conn.transport.recv(self._read_size)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        if conn.state == _LINGER:
            if not data:
                self._close(conn)
            return  # input after the last response is discarded
        if not data:
            # EOF. A complete request that came with it has been answered already;
            # whatever is left is an incomplete request that can never complete.
            if conn.inside_request:
                self._fail(conn, RemoteProtocolError("connection closed inside a request", 400))
            else:
                self._close(conn)
            return
        if not conn._buf and not conn.ended:
            conn._buf = data  # H1Protocol.receive's common case, inlined
            self._read.append(conn)  # parsed once every ready connection has been read
        elif conn.receive(data):
            self._read.append(conn)

    def _answer_read(self) -> None:
        """Parse and answer what ``_on_readable`` read from every ready connection.

        The clock is taken first: every request found was received by then
        (``Request.received_at``). The deque is consumed as it goes, so a driver taking
        over after a detached call carries on with the connections left.
        """
        read = self._read
        if not read:
            return
        self._received = time.monotonic()
        while read:
            conn = read.popleft()
            if conn.state <= _BODY and not conn.writing:  # not closed, lingering or calling
                try:
                    self._process(conn)
                except Exception:
                    self._crashed(conn)

    def _process(
        self,
        conn: Connection,
        head: Head | None = None,
        resp: Response | None = None,
        started: float = 0.0,
    ) -> None:
        """Answer every complete request ``conn`` has received, in order.

        ``head`` is a request parsed earlier that is answered first: with its ``resp``
        when its handler call came back from another thread, else by calling the handler.
        """
        answered = 0
        received = self._received
        batch_max = self._config.max_pipelined_requests
        pool = self._pool
        next_request = conn.next_request
        try:
            while True:
                if head is None:
                    state = conn.state
                    head = next_request(received)
                    if head is None:
                        if conn.state != state:  # a request has begun: its deadline runs
                            if conn.state == _HEAD:
                                self._set_deadline(conn, self._now + self._config.header_timeout)
                            elif conn.state == _BODY:
                                self._set_deadline(conn, self._now + self._config.body_timeout)
                        break
                # A whole request: answer it.
                answered += 1
                if resp is None:
                    if self._careful and (pool._busy >= self._max_busy or self._now < self._offload_until):
                        if pool._busy < self._max_busy:
                            self._offload(conn, head)
                            return  # resumed when the call's result comes back
                        if self._enqueue(conn, head):
                            return  # resumed when a handler thread is free
                        resp = _busy_response()
                    else:
                        # The handler runs here, on the driver. HandoffPool.begin() and
                        # end() are inlined: they run for every request.
                        if self._access_log:
                            started = time.perf_counter()
                        req = head.request
                        resp = Response()
                        self._current = conn  # the connection of the head in calls
                        self._current_resp = resp
                        calls = pool.calls  # this driver's (a detach gives the next one anew)
                        calls.append(head)  # a new object per call
                        rest = None
                        try:
                            self._handle(req, resp)
                            if resp._streaming is not None:
                                rest = self._produce(head, resp, True)
                        except Exception:
                            resp = self._handler_failed(req, resp)
                        try:
                            calls.pop()
                        except IndexError:  # detached: this thread no longer drives the loop
                            self._give_back(conn, head, resp, started, rest)
                        if rest is not None:
                            self._stream_elsewhere(conn, head, resp, rest, started)
                            return  # resumed when the body has been produced
                if not self._finish(conn, head, resp, started):
                    # The connection ends (or switches protocol) after this response:
                    # what follows is never parsed as HTTP.
                    if conn.upgrade is not None:
                        plugin, request, _, upgrade_state = conn.upgrade
                        conn.upgrade = (plugin, request, conn.rest(), upgrade_state)
                    break
                head = resp = None
                if conn._pos >= len(conn._buf):  # all parsed (next_request's quick exit)
                    conn._buf = b""
                    conn._pos = 0
                    break
                if answered >= batch_max:
                    conn.batch_full = True  # flush this batch before parsing more
                    break
        except RemoteProtocolError as exc:
            self._fail(conn, exc)
            return
        if conn.out or conn.close_after_flush:  # (a cut streamed body may leave no output)
            self._send(conn)  # then the keep-alive (or write) deadline is set

    # --- responding ----------------------------------------------------------------------------

    def _handler_failed(self, req: Request, resp: Response) -> Response:
        log.exception("handler failed on %s %s", req.method, escape(req.target))
        state = resp._streaming
        if state is not None and state.stream is not None:
            # Part of a streamed body may be on its way: the loop answers 500 if nothing
            # was sent yet, else it ends the connection (the client sees the body cut).
            _close_source(state.source)
            state.stream.finish(failed=True)
            return resp
        resp._drop_file()
        return error_response(500)

    def _post(self, conn: Connection, head: Head, resp: Response, started: float) -> None:
        """On a pool thread: hand a call's response back to the loop's driver."""
        item = (conn, head, resp, started)
        completions = self._completions
        waker = self._waker

        def give_back() -> None:
            completions.append(item)
            self._attention = True
            waker.wake()

        self._pool.post(give_back)

    def _give_back(
        self,
        conn: Connection,
        head: Head,
        resp: Response,
        started: float,
        rest: Iterator[Any] | None = None,
    ) -> NoReturn:
        """On a thread whose call the monitor detached: produce the rest of a streamed body
        (the loop follows it), hand the response back and leave."""
        if rest is not None:
            state = resp._streaming
            assert state is not None and state.stream is not None
            self._pump(state.stream, state.source, rest, False, head)
        self._post(conn, head, resp, started)
        raise Unwind

    def _finish(self, conn: Connection, head: Head, resp: Response, started: float) -> bool:
        """Queue ``resp`` as the answer to ``head``; False when the connection must end."""
        req = head.request
        state = resp._streaming
        if state is not None and state.active:
            return self._finish_stream(conn, head, resp, started)
        upgrade = resp.upgrade_protocol
        if upgrade is not None:
            try:
                conn.upgrade = (self._get_upgrade(upgrade), req, b"", resp.upgrade_state)
            except Exception as exc:
                if isinstance(exc, PluginError):
                    log.error("cannot upgrade %s %s: %s", req.method, escape(req.target), exc)
                else:
                    log.exception("upgrade plugin failed on %s %s", req.method, escape(req.target))
                resp = error_response(500)
        conn.requests += 1
        keep = conn.respond(  # positional: this runs for every request
            head,
            resp,
            not self._stopping and conn.requests < self._max_requests,
            self._date_line,
            conn.upgrade is not None,
        )
        if started:
            self._log_access(conn, req, resp._status, resp.content_length, started)
        if req._body_file is not None:
            req._discard_file()  # a spooled body's temporary file goes with it
        if not keep and conn.upgrade is None:
            conn.close_after_flush = True
        return keep

    def _refresh_date(self) -> None:
        """Keep ``_date_line`` current: called by the loop when its clock passes the second."""
        wall = time.time()
        self._date_line = b"Date: %s\r\n" % http_date(wall)
        self._date_expires = self._now + (1.0 - wall % 1.0)

    def _log_access(self, conn: Connection, req: Request, status: int, size: int, started: float) -> None:
        if access_log.isEnabledFor(logging.INFO):
            addr = conn.addr[0] if isinstance(conn.addr, tuple) else conn.addr
            access_log.info(
                '%s "%s %s %s" %d %d %.3fms',
                addr,
                escape(req.method),
                escape(req.target),
                req.version,
                status,
                size,
                (time.perf_counter() - started) * 1000.0,
            )

    def _fail(self, conn: Connection, exc: RemoteProtocolError) -> None:
        """Answer a protocol error and end the connection; nothing after it is parsed."""
        self._bad_requests.warning(
            "rejected request from %s: %d %s", conn.addr, exc.status_hint, escape(str(exc))
        )
        conn.error(exc, self._date_line)
        conn.close_after_flush = True
        self._send(conn)

    # --- writing -------------------------------------------------------------------------------

    def _send(self, conn: Connection) -> None:
        """Write what the socket takes of ``conn``'s output: after a batch of responses, and
        on each writability event while output is left. Once all is written: close, hand
        over, or go on with buffered requests."""
        try:
            done = flush(conn)
        except OSError as exc:
            log.debug("write to %s failed: %s", conn.addr, exc)
            self._close(conn)
            return
        if not done:
            if not conn.writing:
                conn.writing = True
                self._poller.modify(conn.fd, WRITE)
            # From the first write, then from each writable event: writable means progress.
            self._set_deadline(conn, time.monotonic() + self._config.write_timeout)
            return
        if conn.writing:
            if conn.streaming is not None:  # a streamed body's call is still producing
                self._stream_drained(conn)
                return
            conn.writing = False
            self._poller.modify(conn.fd, READ)
        if conn.upgrade is not None:
            self._hand_over(conn)
        elif conn.close_after_flush:
            self._linger(conn)
        elif conn.batch_full:
            conn.batch_full = False
            self._ready.append(conn)  # parsed by the loop, after this batch
        elif conn.state == _IDLE:
            # From now, not from the loop's clock: a slow handler must not shorten it.
            # Inline rather than _set_deadline: every keep-alive response passes here.
            deadline = conn.deadline = time.monotonic() + self._keepalive_timeout
            self._next_deadline = min(self._next_deadline, deadline)

    def _linger(self, conn: Connection) -> None:
        conn.state = _LINGER
        conn.close_after_flush = False
        try:
            conn.transport.shutdown_write()
        except OSError:
            self._close(conn)
            return
        self._set_deadline(conn, time.monotonic() + LINGER_SECONDS)

    def _hand_over(self, conn: Connection) -> None:
        assert conn.upgrade is not None
        plugin, request, data, state = conn.upgrade
        conn.upgrade = None
        conn.calling = None
        conn.state = _UPGRADED
        self._poller.unregister(conn.fd)
        del self._conns[conn.fd]
        # The upgraded connection still counts against max_connections, and its socket
        # against the descriptor budget, until the plugin closes the transport; the
        # descriptor kept for a file body is given back now.
        release = self._release_slot
        release(1, 0)
        transport = conn.transport
        assert isinstance(transport, SocketTransport)
        transport.on_close = lambda: release(1, 1)
        try:
            plugin.adopt(transport, request, data, state)
        except Exception:
            log.exception("protocol plugin failed to adopt the connection from %s", conn.addr)
            transport.close()

    def _close(self, conn: Connection) -> None:
        if conn.state == _CLOSED:
            return
        conn.state = _CLOSED
        if not conn.paused:
            self._poller.unregister(conn.fd)
        self._conns.pop(conn.fd, None)
        stream = conn.streaming
        if stream is not None:
            conn.streaming = None
            stream.abandon()  # its producer stops at its next piece
        conn.discard_output()
        try:
            conn.transport.close()
        finally:
            self._release_slot(2, 1)


def _unacknowledged(fd: int) -> int:
    """Bytes written to ``fd`` that its peer has not acknowledged (-1: cannot tell)."""
    if _TIOCOUTQ is None:
        return -1
    try:
        return struct.unpack("i", fcntl.ioctl(fd, _TIOCOUTQ, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]
    except OSError:
        return -1


def _busy_response() -> Response:
    resp = error_response(503)
    resp.add_header("Retry-After", "1")
    resp.close_connection = True
    return resp
