"""The floor of a pure-Python server: an epoll loop that answers without reading the request.

Every ``\\r\\n\\r\\n`` received counts as one complete request and is answered with the same
prepared response (the 6150-byte body, the headers Peregrine sends); nothing is parsed,
checked or timed out, and no handler runs. What it costs per request is what CPython costs
to wait, receive and send, so no pure-Python HTTP server can serve more requests per second
on one core. It is a yardstick for the harness, never something to deploy.

Run: ``python -m tools.bench.apps.floor_app --port P --host 127.0.0.1 [--backlog N]``
"""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
from email.utils import formatdate
from typing import Final

from ._body import BODY, CONTENT_TYPE
from ._cli import listen_args

_END: Final = b"\r\n\r\n"


def response() -> bytes:
    """The 200 Peregrine sends for the benchmark body, with the current date."""
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n\r\n%s" % (
        CONTENT_TYPE.encode("latin-1"),
        len(BODY),
        formatdate(usegmt=True).encode(),
        BODY,
    )


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """Serve on ``listener`` until ``stop`` is set (checked at least once a second)."""
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    rest: dict[int, bytes] = {}  # an incomplete request's bytes, by fd
    pending: dict[int, bytes | memoryview] = {}  # output the socket did not take, by fd
    answer = response()
    date_at = time.monotonic()
    lfd = listener.fileno()
    while not stop.is_set():
        try:
            events = ep.poll(1.0, 64)
        except InterruptedError:
            continue
        if time.monotonic() - date_at >= 1.0:
            answer, date_at = response(), time.monotonic()
        for fd, ev in events:
            if fd == lfd:
                while True:
                    try:
                        sock, _ = listener.accept()
                    except (BlockingIOError, ConnectionAbortedError):
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[sock.fileno()] = sock
                    ep.register(sock.fileno(), select.EPOLLIN)
                continue
            sock = conns[fd]
            if ev & select.EPOLLOUT:
                out = pending.pop(fd)
            else:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    ep.unregister(fd)
                    del conns[fd]
                    rest.pop(fd, None)
                    pending.pop(fd, None)
                    sock.close()
                    continue
                if fd in rest:
                    data = rest.pop(fd) + data
                count = data.count(_END)
                if not data.endswith(_END):
                    rest[fd] = data[data.rfind(_END) + 4 :] if count else data
                if not count:
                    continue
                out = answer if count == 1 else answer * count
            try:
                sent = sock.send(out)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = len(out)  # the peer is gone: its EOF closes it
            if sent < len(out):
                pending[fd] = memoryview(out)[sent:]
                ep.modify(fd, select.EPOLLOUT)
            elif ev & select.EPOLLOUT:
                ep.modify(fd, select.EPOLLIN)
    for sock in conns.values():
        sock.close()
    ep.close()


def main() -> None:
    """Parse ``--host/--port/--backlog`` and serve until interrupted."""
    args = listen_args(__doc__, default_backlog=128)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(args.backlog)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    serve(listener, stop)
    listener.close()


if __name__ == "__main__":
    main()
