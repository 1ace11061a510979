"""``H1Protocol``: one connection's HTTP/1 framing, bytes in and requests out, no I/O.

Receiving: ``receive`` takes a read and says whether parsing could tell anything new;
``next_request`` returns a complete request, ``None`` (need more) or raises
``RemoteProtocolError``. Everything about framing is checked at every split of its input:
bodies, pipelining, the empty lines allowed before a request and their bound, and the
trickle shortcut (a read that ``receive`` says is not worth parsing never changes the
outcome). Responding: ``respond`` and ``error`` queue the bytes the server must send,
with the fields the server adds or refuses.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from peregrine_core import FileBody, RemoteProtocolError, Response
from peregrine_core._h1 import Head, HeadMemo, Limits
from peregrine_core._protocol import CONTINUE, H1Protocol, State

ADDR = ("127.0.0.1", 4321)
DATE = b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
LIMITS = Limits()
GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
RANDOM_SPLITS = 8
CORPUS = Path(__file__).parent / "data" / "requests"


def new(limits: Limits = LIMITS, memo: HeadMemo | None = None) -> H1Protocol:
    return H1Protocol(limits, memo, ADDR)


def post(body: bytes, *extra: bytes) -> bytes:
    fields = b"".join(extra)
    return b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        fields,
        body,
    )


def chunked(*chunks: bytes, extra: bytes = b"") -> bytes:
    coded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return (
        b"POST /chunks HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n%s\r\n%s0\r\n\r\n"
        % (extra, coded)
    )


# --- driving ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a connection's reads came to."""

    requests: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = field(default_factory=list)
    status: int | None = None  # the protocol error's status
    state: State = State.IDLE
    receive_results: list[bool] = field(default_factory=list)

    def same_as(self, other: Outcome) -> bool:
        """The same requests and error, and (without an error) the same receive state."""
        if (self.requests, self.status) != (other.requests, other.status):
            return False
        return self.status is not None or self.state == other.state


def feed(
    pieces: Sequence[bytes],
    limits: Limits = LIMITS,
    honour_receive: bool = True,
    protocol: H1Protocol | None = None,
) -> Outcome:
    """Feed reads as the worker does: parse after a read unless ``receive`` said it is not
    worth it (or always, without ``honour_receive``), until a protocol error."""
    if protocol is None:
        protocol = new(limits)
    outcome = Outcome()
    for piece in pieces:
        worth = protocol.receive(piece)
        outcome.receive_results.append(worth)
        if not worth and honour_receive:
            continue
        try:
            while (head := protocol.next_request(1.0)) is not None:
                req = head.request
                outcome.requests.append((req.method, req.target, req.version, req.headers, req.body))
        except RemoteProtocolError as exc:
            outcome.status = exc.status_hint
            break
    outcome.state = protocol.state
    return outcome


def splits(data: bytes, seed: object = 0, every_pair: bool = True) -> Iterator[tuple[str, list[bytes]]]:
    """Whole, one byte at a time, in two at every point, and at seeded random points."""
    yield "whole", [data]
    yield "bytes", [data[i : i + 1] for i in range(len(data))]
    if every_pair:
        for i in range(1, len(data)):
            yield f"at {i}", [data[:i], data[i:]]
    rng = random.Random(repr(seed))
    for k in range(RANDOM_SPLITS):
        if len(data) < 2:
            break
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(16, len(data) - 1))))
        yield f"random{k}", [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def one_request(data: bytes) -> Head:
    protocol = new()
    assert protocol.receive(data)
    head = protocol.next_request(1.0)
    assert head is not None
    return head


# --- receiving a request -------------------------------------------------------------------


def test_a_simple_request_is_returned_whole_with_its_address_and_time() -> None:
    protocol = new()
    assert protocol.receive(GET)
    head = protocol.next_request(12.5)
    assert head is not None
    req = head.request
    assert (req.method, req.target, req.version) == ("GET", "/", "HTTP/1.1")
    assert req.headers == [("Host", "example.com")]
    assert req.body == b""
    assert req.remote_addr == ADDR
    assert req.received_at == 12.5
    assert head.keep_alive
    assert protocol.state == State.IDLE
    assert not protocol.pending
    assert not protocol.inside_request
    assert protocol.next_request(13.0) is None
    assert protocol.out == []


def test_a_request_split_anywhere_is_the_same_request() -> None:
    expected = feed([GET])
    assert len(expected.requests) == 1
    for how, pieces in splits(GET):
        assert feed(pieces).same_as(expected), how


def test_a_partial_head_is_need_more_and_starts_the_head_state() -> None:
    protocol = new()
    assert protocol.receive(GET[:10])
    assert protocol.next_request(1.0) is None
    assert protocol.state == State.HEAD
    assert protocol.inside_request
    assert protocol.pending


def test_pipelined_requests_come_out_one_at_a_time_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % i for i in range(3))
    protocol = new()
    assert protocol.receive(data)
    targets = []
    for _ in range(3):
        assert protocol.pending
        head = protocol.next_request(1.0)
        assert head is not None
        targets.append(head.request.target)
    assert targets == ["/0", "/1", "/2"]
    assert not protocol.pending
    assert protocol.next_request(1.0) is None


def test_pipelined_requests_with_bodies_split_anywhere_are_the_same_requests() -> None:
    data = post(b"first body") + GET + chunked(b"abc", b"defgh") + post(b"") + GET
    expected = feed([data])
    assert [r[4] for r in expected.requests] == [b"first body", b"", b"abcdefgh", b"", b""]
    assert expected.status is None
    for how, pieces in splits(data):
        assert feed(pieces).same_as(expected), how


def test_a_content_length_body_split_at_every_byte_is_the_whole_body() -> None:
    body = bytes(range(256)) * 3  # every byte value, CR and LF included
    data = post(body)
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status is None, how
        assert [r[4] for r in outcome.requests] == [body], how
        assert outcome.state == State.IDLE, how


def test_a_content_length_body_in_progress_is_the_body_state() -> None:
    protocol = new()
    data = post(b"0123456789")
    assert protocol.receive(data[:-4])
    assert protocol.next_request(1.0) is None
    assert protocol.state == State.BODY
    assert protocol.inside_request
    assert protocol.receive(data[-4:])
    head = protocol.next_request(2.0)
    assert head is not None
    assert head.request.body == b"0123456789"
    assert head.request.received_at == 2.0  # the time its last byte arrived
    assert not protocol.inside_request


def test_a_chunked_body_split_at_every_byte_is_the_whole_body() -> None:
    data = chunked(b"hello", b"\r\n", b" world" * 20)
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status is None, how
        assert [r[4] for r in outcome.requests] == [b"hello\r\n" + b" world" * 20], how
        assert outcome.state == State.IDLE, how


def test_a_chunked_body_with_a_bad_chunk_size_is_400_however_split() -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    for how, pieces in splits(data):
        assert feed(pieces).status == 400, how


# --- 100 Continue and 413 ------------------------------------------------------------------


def test_expect_100_continue_queues_continue_when_the_body_is_awaited() -> None:
    data = post(b"abc", b"Expect: 100-continue\r\n")
    head_only = data[:-3]
    protocol = new()
    assert protocol.receive(head_only)
    assert protocol.next_request(1.0) is None
    assert protocol.out == [CONTINUE]
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert protocol.receive(b"abc")
    head = protocol.next_request(1.0)
    assert head is not None
    assert head.request.body == b"abc"
    assert protocol.out == [CONTINUE]  # once


def test_expect_100_continue_with_a_chunked_body_queues_continue() -> None:
    data = chunked(b"abc", extra=b"Expect: 100-continue\r\n")
    protocol = new()
    assert protocol.receive(data[: data.index(b"\r\n\r\n") + 4])
    assert protocol.next_request(1.0) is None
    assert protocol.out == [CONTINUE]


def test_no_continue_when_the_body_came_with_the_head() -> None:
    protocol = new()
    assert protocol.receive(post(b"abc", b"Expect: 100-continue\r\n"))
    assert protocol.next_request(1.0) is not None
    assert protocol.out == []


def test_no_continue_without_a_body() -> None:
    protocol = new()
    assert protocol.receive(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
    assert protocol.next_request(1.0) is not None
    assert protocol.out == []


def test_expect_100_continue_in_http_1_0_is_ignored() -> None:
    data = b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    protocol = new()
    assert protocol.receive(data)
    assert protocol.next_request(1.0) is None
    assert protocol.state == State.BODY
    assert protocol.out == []


def test_a_body_over_the_limit_is_413_before_the_body_arrives() -> None:
    limits = Limits(max_body_bytes=100)
    data = post(b"x" * 101, b"Expect: 100-continue\r\n")
    head_only = data[: data.index(b"\r\n\r\n") + 4]
    protocol = new(limits)
    assert protocol.receive(head_only)
    with pytest.raises(RemoteProtocolError) as info:
        protocol.next_request(1.0)
    assert info.value.status_hint == 413
    assert protocol.out == []  # no 100 Continue: the body will not be read
    assert protocol.ended
    assert not protocol.receive(b"x" * 101)
    assert protocol.next_request(1.0) is None


def test_a_body_at_the_limit_is_accepted_however_split() -> None:
    limits = Limits(max_body_bytes=100)
    for how, pieces in splits(post(b"x" * 100), every_pair=False):
        outcome = feed(pieces, limits)
        assert outcome.status is None, how
        assert [r[4] for r in outcome.requests] == [b"x" * 100], how


def test_a_body_over_the_limit_is_413_however_split() -> None:
    limits = Limits(max_body_bytes=100)
    for how, pieces in splits(post(b"x" * 101), every_pair=False):
        outcome = feed(pieces, limits)
        assert (outcome.status, outcome.requests) == (413, []), how


def test_a_chunked_body_over_the_limit_is_413_however_split() -> None:
    limits = Limits(max_body_bytes=100)
    for how, pieces in splits(chunked(b"x" * 60, b"y" * 41), every_pair=False):
        outcome = feed(pieces, limits)
        assert (outcome.status, outcome.requests) == (413, []), how


# --- empty lines before a request ----------------------------------------------------------


def test_eight_empty_lines_before_a_request_are_skipped_however_split() -> None:
    data = b"\r\n" * 8 + GET
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status is None, how
        assert [r[1] for r in outcome.requests] == ["/"], how


def test_nine_empty_lines_before_a_request_are_400_however_split() -> None:
    data = b"\r\n" * 9 + GET
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert (outcome.status, outcome.requests) == (400, []), how


def test_nine_empty_lines_alone_are_400_however_split() -> None:
    for how, pieces in splits(b"\r\n" * 9):
        assert feed(pieces).status == 400, how


def test_empty_lines_alone_are_kept_not_counted_as_a_request() -> None:
    protocol = new()
    assert protocol.receive(b"\r\n" * 3)
    assert protocol.next_request(1.0) is None
    assert protocol.state == State.IDLE  # no request has begun: no head deadline
    assert not protocol.pending
    assert not protocol.inside_request


def test_empty_lines_arriving_over_several_reads_count_together() -> None:
    four = b"\r\n" * 4
    assert feed([four, four, b"\r\n"]).status == 400
    assert feed([four, four, b"\r\n", GET]).status == 400
    outcome = feed([four, four, GET])
    assert outcome.status is None
    assert len(outcome.requests) == 1


def test_empty_lines_after_a_body_and_before_the_next_request_are_skipped_however_split() -> None:
    data = post(b"abc") + b"\r\n" + GET  # some clients send a CRLF after a body
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status is None, how
        assert [r[1] for r in outcome.requests] == ["/upload", "/"], how


def test_nine_empty_lines_after_a_request_are_400_however_split() -> None:
    data = GET + b"\r\n" * 9 + GET
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status == 400, how
        assert [r[1] for r in outcome.requests] == ["/"], how


def test_eight_empty_lines_after_a_request_then_another_request_are_fine_however_split() -> None:
    data = GET + b"\r\n" * 8 + GET
    for how, pieces in splits(data):
        outcome = feed(pieces)
        assert outcome.status is None, how
        assert len(outcome.requests) == 2, how


# --- the trickle shortcut ------------------------------------------------------------------


def test_the_first_read_is_always_worth_parsing() -> None:
    assert new().receive(b"G")


def test_clean_bytes_added_mid_head_are_not_worth_parsing() -> None:
    protocol = new()
    assert protocol.receive(b"GET /")
    assert protocol.next_request(1.0) is None
    assert protocol.state == State.HEAD
    assert not protocol.receive(b"index.html")
    assert not protocol.receive(b" HTTP/1.1")
    assert not protocol.receive(b"\t")  # HTAB is allowed in a head


@pytest.mark.parametrize(
    "byte",
    [b"\r", b"\n", b"\x00", b"\x01", b"\x1f", b"\x7f"],
    ids=["CR", "LF", "NUL", "SOH", "US", "DEL"],
)
def test_a_line_or_control_byte_mid_head_is_worth_parsing(byte: bytes) -> None:
    protocol = new()
    assert protocol.receive(b"GET / HTTP/1.1")
    assert protocol.next_request(1.0) is None
    assert protocol.receive(b"x" + byte + b"y")


def test_clean_bytes_after_a_cr_at_the_buffers_end_are_worth_parsing() -> None:
    protocol = new()
    assert protocol.receive(b"GET / HTTP/1.1\r")
    assert protocol.next_request(1.0) is None
    assert protocol.receive(b"x")  # a bare CR now: a 400 to find
    with pytest.raises(RemoteProtocolError) as info:
        protocol.next_request(1.0)
    assert info.value.status_hint == 400


def test_clean_bytes_beyond_the_request_line_limit_are_worth_parsing() -> None:
    limits = Limits(max_request_line_bytes=64, max_header_bytes=1024)
    protocol = new(limits)
    assert protocol.receive(b"GET /")
    assert protocol.next_request(1.0) is None
    assert not protocol.receive(b"a" * 59)  # 64 bytes: the CRLF may still come
    assert protocol.receive(b"a")  # 65: the line limit is crossed
    with pytest.raises(RemoteProtocolError) as info:
        protocol.next_request(1.0)
    assert info.value.status_hint == 414


def _trickle_inputs() -> Iterator[tuple[str, Limits, bytes]]:
    """Heads near every limit, with and without defects, plus what the corpus holds."""
    for line_max, head_max in ((64, 64), (64, 65), (64, 128), (100, 100)):
        limits = Limits(max_request_line_bytes=line_max, max_header_bytes=head_max, max_header_count=4)
        at = f"limits {line_max}/{head_max}"
        for size in range(line_max - 2, line_max + 3):
            line = b"GET /" + b"a" * (size - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
            yield f"{at}: line {size}", limits, line + b"\r\nHost: x\r\n\r\n"
            yield f"{at}: line {size}, cut", limits, line
        prefix = b"GET / HTTP/1.1\r\nHost: x\r\nX: "
        for size in range(head_max - 4, head_max + 3):
            value = b"v" * max(0, size - len(prefix))
            yield f"{at}: head {size}, cut", limits, prefix + value
            yield f"{at}: head {size}", limits, prefix + value + b"\r\n\r\n"
            yield f"{at}: head {size}, bare CR", limits, prefix + value + b"\rz"
        yield f"{at}: too many fields", limits, b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 5
    for kind in ("valid", "invalid"):
        for http in sorted((CORPUS / kind).glob("*.http")):
            meta = json.loads(http.with_suffix(".json").read_text("utf-8"))
            yield (
                f"{kind}/{http.stem}",
                Limits(**meta.get("limits", {})),
                _decode_http(http.read_text("ascii")),
            )


def _decode_http(text: str) -> bytes:
    """A corpus ``.http`` file's bytes (see ``data/requests/README.md``)."""
    simple = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}

    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        return simple[esc] if esc in simple else chr(int(esc[1:], 16))

    return re.sub(r"\\(x[0-9A-Fa-f]{2}|.)", sub, text.replace("\n", "")).encode("latin-1")


TRICKLE_INPUTS = list(_trickle_inputs())


@pytest.mark.parametrize(("name", "limits", "data"), TRICKLE_INPUTS, ids=[c[0] for c in TRICKLE_INPUTS])
def test_the_trickle_shortcut_never_changes_the_outcome(name: str, limits: Limits, data: bytes) -> None:
    """Parsing only when ``receive`` says so gives what parsing after every read gives."""
    for how, pieces in splits(data, name, every_pair=False):
        honoured = feed(pieces, limits, honour_receive=True)
        always = feed(pieces, limits, honour_receive=False)
        assert honoured.same_as(always), (how, honoured, always)
        assert honoured.same_as(feed([data], limits)), how


# --- after an error ------------------------------------------------------------------------


def test_after_a_protocol_error_nothing_more_is_parsed() -> None:
    protocol = new()
    assert protocol.receive(b"GET / HTTP/1.1\nHost: x\r\n\r\n" + GET)  # a bare LF
    with pytest.raises(RemoteProtocolError) as info:
        protocol.next_request(1.0)
    assert info.value.status_hint == 400
    assert protocol.ended
    assert protocol.next_request(1.0) is None
    assert not protocol.receive(GET)
    assert protocol.next_request(1.0) is None
    assert not protocol.pending


def test_error_queues_a_plain_text_answer_that_closes_the_connection() -> None:
    protocol = new()
    protocol.error(RemoteProtocolError("request head exceeds 64 bytes", 431), DATE)
    assert protocol.ended
    status, fields, body = parse_response(b"".join(as_bytes(protocol.out)))
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert ("Content-Type", "text/plain; charset=utf-8") in fields
    assert ("Connection", "close") in fields
    assert ("Date", "Mon, 01 Jan 2024 00:00:00 GMT") in fields
    assert ("Content-Length", str(len(body))) in fields
    assert body == b"Request Header Fields Too Large: request head exceeds 64 bytes\n"
    assert not protocol.receive(GET)
    assert protocol.next_request(1.0) is None


# --- rest() after an upgrade ---------------------------------------------------------------


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def test_rest_returns_the_bytes_after_an_upgrade_request() -> None:
    protocol = new()
    assert protocol.receive(UPGRADE + b"\x81\x05hello" + GET)
    head = protocol.next_request(1.0)
    assert head is not None
    assert head.upgrade
    assert protocol.rest() == b"\x81\x05hello" + GET
    assert protocol.rest() == b""  # taken
    assert not protocol.pending


def test_rest_is_empty_when_nothing_followed_the_upgrade_request() -> None:
    protocol = new()
    assert protocol.receive(UPGRADE)
    assert protocol.next_request(1.0) is not None
    assert protocol.rest() == b""


def test_rest_after_an_upgrade_request_split_anywhere_is_what_followed_it() -> None:
    data = UPGRADE + b"frame bytes\r\n"
    for how, pieces in splits(data):
        protocol = new()
        heads: list[Head] = []
        later = b""  # reads after the upgrade request go to the plugin, not to the codec
        for piece in pieces:
            if heads:
                later += piece
            elif protocol.receive(piece) and (head := protocol.next_request(1.0)) is not None:
                heads.append(head)
        assert len(heads) == 1, how
        assert protocol.rest() + later == b"frame bytes\r\n", how


# --- responding ----------------------------------------------------------------------------


def as_bytes(out: Sequence[bytes | memoryview | FileBody]) -> list[bytes]:
    parts = []
    for item in out:
        assert not isinstance(item, FileBody)
        parts.append(bytes(item))
    return parts


def parse_response(data: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    status, *lines = head.split(b"\r\n")
    fields = [(n, v.strip()) for n, _, v in (line.decode("latin-1").partition(":") for line in lines)]
    return status, fields, body


def respond(
    request: bytes,
    resp: Response,
    keep: bool = True,
    upgrade: bool = False,
    protocol: H1Protocol | None = None,
) -> tuple[bool, H1Protocol, tuple[bytes, list[tuple[str, str]], bytes]]:
    protocol = protocol or new()
    assert protocol.receive(request)
    head = protocol.next_request(1.0)
    assert head is not None
    goes_on = protocol.respond(head, resp, keep, DATE, upgrade)
    return goes_on, protocol, parse_response(b"".join(as_bytes(protocol.out)))


def text(body: bytes, status: int = 200) -> Response:
    resp = Response()
    resp.status = status
    resp.add_header("Content-Type", "text/plain")
    resp.set_body(body)
    return resp


def names(fields: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in fields]


def test_respond_adds_content_length_and_date_and_keeps_an_http_1_1_connection() -> None:
    goes_on, protocol, (status, fields, body) = respond(GET, text(b"hello"))
    assert goes_on
    assert not protocol.ended
    assert status == b"HTTP/1.1 200 OK"
    assert fields == [
        ("Content-Type", "text/plain"),
        ("Content-Length", "5"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ]
    assert body == b"hello"
    assert len(protocol.out) == 1  # one buffer, one send


def test_respond_uses_the_handlers_date_instead_of_the_servers() -> None:
    resp = text(b"x")
    resp.add_header("Date", "Tue, 02 Jan 2024 00:00:00 GMT")
    _, _, (_, fields, _) = respond(GET, resp)
    assert [v for n, v in fields if n == "Date"] == ["Tue, 02 Jan 2024 00:00:00 GMT"]


def test_respond_to_an_http_1_0_keep_alive_request_ends_with_the_keep_alive_tail() -> None:
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    protocol = H1Protocol(LIMITS, None, ADDR, b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n")
    goes_on, protocol, (_, fields, body) = respond(request, text(b"ok"), protocol=protocol)
    assert goes_on
    assert not protocol.ended
    assert fields[-2:] == [("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")]
    assert body == b"ok"


def test_respond_to_an_http_1_0_request_without_keep_alive_closes() -> None:
    goes_on, protocol, (_, fields, _) = respond(b"GET / HTTP/1.0\r\n\r\n", text(b"ok"))
    assert not goes_on
    assert protocol.ended
    assert ("Connection", "close") in fields


def test_respond_to_a_request_asking_to_close_closes() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    goes_on, protocol, (_, fields, _) = respond(request, text(b"ok"))
    assert not goes_on
    assert protocol.ended
    assert ("Connection", "close") in fields


def test_respond_with_keep_false_closes_the_connection() -> None:
    goes_on, protocol, (_, fields, body) = respond(GET, text(b"bye"), keep=False)
    assert not goes_on
    assert protocol.ended
    assert ("Connection", "close") in fields
    assert body == b"bye"
    assert not protocol.receive(GET)  # nothing after the last response is parsed
    assert protocol.next_request(1.0) is None


def test_respond_with_close_connection_set_closes_the_connection() -> None:
    resp = text(b"bye")
    resp.close_connection = True
    goes_on, protocol, (_, fields, _) = respond(GET, resp)
    assert not goes_on
    assert protocol.ended
    assert ("Connection", "close") in fields


def test_respond_to_head_frames_the_body_but_sends_none() -> None:
    request = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    goes_on, _, (_, fields, body) = respond(request, text(b"hello"))
    assert goes_on
    assert ("Content-Length", "5") in fields
    assert body == b""


@pytest.mark.parametrize("code", [204, 304, 103])
def test_respond_with_a_bodiless_status_sends_no_content_length_and_no_body(code: int) -> None:
    resp = Response()
    resp.status = code
    resp.set_body(b"ignored")
    goes_on, _, (status, fields, body) = respond(GET, resp)
    assert goes_on
    assert status.startswith(b"HTTP/1.1 %d " % code)
    assert "content-length" not in names(fields)
    assert ("Date", "Mon, 01 Jan 2024 00:00:00 GMT") in fields
    assert body == b""


def test_respond_with_an_empty_body_says_content_length_zero() -> None:
    _, _, (_, fields, body) = respond(GET, Response())
    assert ("Content-Length", "0") in fields
    assert body == b""


def test_respond_with_a_large_body_queues_it_uncopied_after_the_head() -> None:
    body = b"x" * (64 * 1024)
    resp = Response()
    resp.set_body(body)
    protocol = new()
    assert protocol.receive(GET)
    head = protocol.next_request(1.0)
    assert head is not None
    assert protocol.respond(head, resp, True, DATE)
    assert len(protocol.out) == 2
    head_bytes, body_part = protocol.out
    assert body_part is body
    assert isinstance(head_bytes, bytes)
    _, fields, _ = parse_response(head_bytes)
    assert ("Content-Length", str(len(body))) in fields


def test_respond_with_a_file_queues_the_file_region_after_the_head(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    resp = Response()
    with path.open("rb") as f:
        resp.set_file(f, 2, 5)
        protocol = new()
        assert protocol.receive(GET)
        head = protocol.next_request(1.0)
        assert head is not None
        assert protocol.respond(head, resp, True, DATE)
        head_bytes, region = protocol.out
        assert isinstance(region, FileBody)
        assert (region.offset, region.count) == (2, 5)
        assert resp.file is None  # the protocol's out owns it now
        assert isinstance(head_bytes, bytes)
        assert ("Content-Length", "5") in parse_response(head_bytes)[1]
        region.close()


def test_respond_to_head_with_a_file_closes_the_file_and_queues_only_the_head(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    resp = Response()
    f = path.open("rb")
    resp.set_file(f)
    _, protocol, (_, fields, body) = respond(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", resp)
    assert len(protocol.out) == 1
    assert ("Content-Length", "10") in fields
    assert body == b""
    assert f.closed


CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"


@pytest.mark.parametrize("code", [200, 204, 299])
def test_a_2xx_answer_to_connect_becomes_501_and_ends_the_connection(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    resp = text(b"tunnel established", code)
    with caplog.at_level("ERROR", logger="peregrine_core.server"):
        goes_on, protocol, (status, fields, body) = respond(CONNECT, resp)
    assert not goes_on
    assert protocol.ended
    assert status == b"HTTP/1.1 501 Not Implemented"
    assert ("Connection", "close") in fields
    assert ("Content-Length", str(len(body))) in fields
    assert b"tunnel" not in body
    assert any("no tunnel" in r.getMessage() for r in caplog.records)
    assert not protocol.receive(GET)  # what follows a CONNECT is never parsed


def test_a_2xx_answer_to_connect_with_a_file_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    resp = Response()
    f = path.open("rb")
    resp.set_file(f)
    _, protocol, (status, _, _) = respond(CONNECT, resp)
    assert status == b"HTTP/1.1 501 Not Implemented"
    assert f.closed
    assert not any(isinstance(item, FileBody) for item in protocol.out)


def test_a_405_answer_to_connect_stays_405_and_ends_the_connection() -> None:
    goes_on, protocol, (status, fields, body) = respond(CONNECT, text(b"no", 405))
    assert not goes_on
    assert protocol.ended
    assert status == b"HTTP/1.1 405 Method Not Allowed"
    assert ("Connection", "close") in fields
    assert body == b"no"


def test_respond_with_upgrade_sends_101_with_upgrade_fields_and_stops_http() -> None:
    resp = Response()
    resp.upgrade("websocket")
    resp.add_header("Sec-WebSocket-Accept", "abc")
    goes_on, protocol, (status, fields, body) = respond(UPGRADE + b"\x81\x00", resp, upgrade=True)
    assert not goes_on
    assert status == b"HTTP/1.1 101 Switching Protocols"
    assert fields == [
        ("Sec-WebSocket-Accept", "abc"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
    ]
    assert "content-length" not in names(fields)
    assert body == b""
    assert protocol.rest() == b"\x81\x00"


def test_an_upgrade_header_set_by_the_handler_is_listed_in_connection() -> None:
    resp = text(b"ok")
    resp.add_header("Upgrade", "h2c")
    _, _, (_, fields, _) = respond(GET, resp)
    assert ("Connection", "Upgrade, keep-alive") in fields
    _, _, (_, fields, _) = respond(GET, resp, keep=False)
    assert ("Connection", "Upgrade, close") in fields


def test_keep_alive_responses_let_the_next_pipelined_request_through() -> None:
    protocol = new()
    assert protocol.receive(GET + GET)
    for _ in range(2):
        head = protocol.next_request(1.0)
        assert head is not None
        assert protocol.respond(head, text(b"ok"), True, DATE)
    assert protocol.next_request(1.0) is None
    assert len(protocol.out) == 2
