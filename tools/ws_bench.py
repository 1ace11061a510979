#!/usr/bin/env python3
"""WebSocket measurements against the echo example, on loopback only, bounded in time.

    python3 tools/ws_bench.py                   # echo round trips/s: 100 connections, 16-byte text, 10 s
    python3 tools/ws_bench.py --connections 100 --seconds 10 --size 16
    python3 tools/ws_bench.py --idle 5000       # server memory of 5000 idle WebSocket connections
    python3 tools/ws_bench.py --idle 5000 --deflate   # ... each having compressed one message

The script starts ``python -m peregrine_examples.echo --host 127.0.0.1 --port 0`` with
``--server-python`` (this interpreter by default; it needs the four packages installed),
its log discarded, and stops it with SIGTERM at the end.

Round trips: the client is one thread with an epoll loop (a raw-socket client: one
precomputed masked frame per message, so the client spends little CPU per message); each
connection sends a message, waits for its echo, and sends the next, for ``--seconds``
after a one-second warm-up. It prints round trips per second and the server's CPU time per
round trip (from ``/proc/PID/stat``), the steadier figure when the client is the limit.
``--pin`` puts the server on the last CPU and the client on the first.

Idle connections: the soft ``RLIMIT_NOFILE`` is raised (for this process and so for the
server it starts) to fit; the server's RSS (``VmRSS`` of ``/proc/PID/status``) is read once
one connection has been opened and closed (the WebSocket thread then exists), and again
once every connection has completed its handshake (and, with ``--deflate``, echoed one
compressed message, so that both zlib objects exist) and the server has been idle for a
second. Every connection must then still echo a message. Kernel socket buffers are not
part of RSS.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from typing import Final

HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
IO_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 45.0
WARMUP_S: Final = 1.0
MASK: Final = b"\x37\xfa\x21\x3d"
#: RFC 7692 §7.2.1: the compressed payload is the DEFLATE output without this trailer.
DEFLATE_TRAILER: Final = b"\x00\x00\xff\xff"
FD_HEADROOM: Final = 200
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# --- the server --------------------------------------------------------------------------


def start_server(python: str) -> tuple[subprocess.Popen[bytes], int]:
    argv = [python, "-m", "peregrine_examples.echo", "--host", HOST, "--port", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n") and sel.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
    match = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)\n", line)
    if match is None:
        proc.kill()
        proc.wait(10)
        sys.exit(f"the echo example did not start: {' '.join(argv)} printed {line!r}")
    return proc, int(match.group(1))


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


# --- a minimal client --------------------------------------------------------------------


def masked_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """One final client frame (RFC 6455 §5.2), masked with :data:`MASK`."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = (MASK * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + MASK + body


def unmasked_header(opcode: int, n: int) -> bytes:
    """The header of a final server frame (RFC 6455 §5.2: a server never masks)."""
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n)
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127, n)


def connect(port: int, *, deflate: bool = False) -> socket.socket:
    """A blocking socket after a completed opening handshake."""
    sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)  # byte by byte: nothing after the head may be consumed
        if not byte:
            raise ConnectionError(f"connection closed during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101 "):
        raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
    if deflate and b"permessage-deflate" not in head.lower():
        raise ConnectionError("the server did not accept permessage-deflate")
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame, blocking: ``(opcode, payload)`` (payloads are never masked)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed inside a frame")
            data += chunk
        return data

    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return first & 0x0F, exactly(n)


def split_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete server frame off the front of ``buf``."""
    frames = []
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        start = 2
        if n == 126:
            if len(buf) < 4:
                break
            (n,) = struct.unpack_from("!H", buf, 2)
            start = 4
        elif n == 127:
            if len(buf) < 10:
                break
            (n,) = struct.unpack_from("!Q", buf, 2)
            start = 10
        if len(buf) < start + n:
            break
        frames.append((buf[0] & 0x0F, bytes(buf[start : start + n])))
        del buf[: start + n]
    return frames


# --- round trips -------------------------------------------------------------------------


def round_trips(python: str, connections: int, seconds: float, size: int, pin: bool) -> None:
    raise_nofile(connections)
    server, port = start_server(python)
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= 2:
            os.sched_setaffinity(server.pid, {cpus[-1]})
            os.sched_setaffinity(0, {cpus[0]})
        payload = b"x" * size
        frame = masked_frame(0x1, payload)
        echo = unmasked_header(0x1, size) + payload
        socks = [connect(port) for _ in range(connections)]
        sel = selectors.DefaultSelector()
        buffers: dict[socket.socket, bytearray] = {}
        for sock in socks:
            sock.setblocking(False)
            buffers[sock] = bytearray()
            sel.register(sock, selectors.EVENT_READ)
            sock.send(frame)
        count = 0
        started = time.monotonic()
        measure_from = started + WARMUP_S
        end = measure_from + seconds
        counted_from = 0
        cpu_from = 0.0
        measuring = False
        while True:
            now = time.monotonic()
            if not measuring and now >= measure_from:
                measuring, counted_from, cpu_from = True, count, cpu_seconds(server.pid)
                measure_from = now
            if now >= end:
                break
            for key, _ in sel.select(min(end - now, 1.0)):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a connection")
                buf = buffers[conn]
                if data == echo and not buf:  # the usual case: exactly one whole echo
                    count += 1
                    conn.send(frame)
                    continue
                buf += data
                for opcode, body in split_frames(buf):
                    if opcode == 0x1:
                        if body != payload:
                            raise AssertionError(f"wrong echo: {body[:40]!r}")
                        count += 1
                        conn.send(frame)
                    elif opcode == 0x9:
                        conn.send(masked_frame(0xA, body))
                    elif opcode == 0x8:
                        raise ConnectionError(f"the server closed a connection: {body!r}")
        elapsed = time.monotonic() - measure_from
        cpu = cpu_seconds(server.pid) - cpu_from
        done = count - counted_from
        sel.close()
        for sock in socks:
            sock.close()
    finally:
        stop_server(server)
    print(
        f"round trips: {connections} connections, {size}-byte text messages, {elapsed:.1f} s: "
        f"{done} round trips, {done / elapsed:,.0f} round trips/s; "
        f"server CPU {cpu:.2f} s = {cpu / done * 1e6:.1f} µs per round trip"
    )


# --- idle connections --------------------------------------------------------------------


def raise_nofile(connections: int) -> None:
    """Raise the soft open-files limit (inherited by the server) to fit ``connections``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FD_HEADROOM
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            sys.exit(f"{connections} connections need {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def compressed_frame(text: bytes) -> bytes:
    """A text message compressed as permessage-deflate's first message (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TRAILER)
    return masked_frame(0x1, data[: -len(DEFLATE_TRAILER)], rsv1=True)


def idle(python: str, connections: int, deflate: bool) -> None:
    raise_nofile(connections)
    server, port = start_server(python)
    socks: list[socket.socket] = []
    try:
        warm = connect(port, deflate=deflate)
        warm.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
        read_frame(warm)
        warm.close()
        time.sleep(1.0)
        before = rss_bytes(server.pid)
        started = time.monotonic()
        message = b"a compressible message, " * 8
        frame = compressed_frame(message) if deflate else b""
        for _ in range(connections):
            sock = connect(port, deflate=deflate)
            socks.append(sock)
            if deflate:
                sock.sendall(frame)
                opcode, _ = read_frame(sock)
                assert opcode == 0x1, opcode
        opened_s = time.monotonic() - started
        time.sleep(1.0)
        after = rss_bytes(server.pid)
        # Every connection must still be served.
        probe = masked_frame(0x1, b"still there?")
        for sock in socks:
            sock.sendall(probe)
        for sock in socks:
            opcode, body = read_frame(sock)
            assert opcode == 0x1 and (deflate or body == b"still there?"), (opcode, body)
    finally:
        for sock in socks:
            sock.close()
        stop_server(server)
    delta = after - before
    mode = "permessage-deflate, one compressed message each" if deflate else "no compression"
    print(
        f"idle connections: {connections} ({mode}) opened in {opened_s:.1f} s; server RSS "
        f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB: +{delta / 2**20:.1f} MiB, "
        f"{delta / connections / 1024:.1f} KiB per connection"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--idle", type=int, metavar="N", help="measure the memory of N idle connections")
    parser.add_argument("--deflate", action="store_true", help="with --idle: negotiate permessage-deflate")
    parser.add_argument(
        "--connections", type=int, default=100, help="round trips: connections (default: 100)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="round trips: duration (default: 10)")
    parser.add_argument("--size", type=int, default=16, help="round trips: message bytes (default: 16)")
    parser.add_argument("--pin", action="store_true", help="round trips: server and client on their own CPU")
    parser.add_argument("--server-python", default=sys.executable, help="runs the echo example")
    ns = parser.parse_args(argv)
    if ns.idle is not None:
        idle(ns.server_python, ns.idle, ns.deflate)
    else:
        round_trips(ns.server_python, ns.connections, ns.seconds, ns.size, ns.pin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
