"""The codec feeding driver shared by the codec tests: reads handled as ``Worker._process`` does."""

from __future__ import annotations

from peregrine_core import RemoteProtocolError
from peregrine_core._chunked import ChunkedReader
from peregrine_core._h1 import Head, HeadMemo, Limits, parse_head

__all__ = ["Feeder"]


class Feeder:
    """Feeds reads to the codec the way ``Worker._process`` does."""

    def __init__(self, limits: Limits, memo: HeadMemo | None = None) -> None:
        self.limits = limits
        self.memo = memo
        self.buf = b""
        self.head: Head | None = None
        self.reader: ChunkedReader | None = None
        self.requests: list[Head] = []
        self.closed = False  # a request ended the connection: nothing more is parsed

    def feed(self, data: bytes) -> None:
        if self.closed:
            self.buf += data
            return
        buf = self.buf + data
        pos = 0
        end = len(buf)
        limits = self.limits
        while pos < end or self.head is not None:
            head = self.head
            if head is not None:
                if self.reader is not None:
                    pos = self.reader.feed(buf, pos)
                    if not self.reader.done:
                        break
                    head.request.body = self.reader.body
                    self.reader = None
                else:
                    if end - pos < head.content_length:
                        break
                    head.request.body = buf[pos : pos + head.content_length]
                    pos += head.content_length
                self.head = None
            else:
                head = parse_head(buf, pos, limits, None, self.memo)
                if head is None:
                    break
                pos = head.end
                if head.chunked or head.content_length:
                    if head.content_length > limits.max_body_bytes:
                        raise RemoteProtocolError("body over the limit", 413)
                    self.head = head
                    if head.chunked:
                        self.reader = ChunkedReader(limits.max_body_bytes, limits.max_header_bytes)
                    continue
            self.requests.append(head)
            if not head.keep_alive:
                self.closed = True
                break
        self.buf = buf[pos:]
