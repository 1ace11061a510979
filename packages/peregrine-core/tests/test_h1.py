"""The HTTP/1.x request codec (``_h1``), driven by the request corpus in ``data/requests``.

Every corpus input is fed whole, then one byte at a time, then at seeded random split
points, through ``parse_head`` and the body readers exactly as the worker feeds them
(:class:`Feeder` mirrors ``Worker._process``: accumulate, parse a head, then read a
Content-Length body by slicing or a chunked one with ``ChunkedReader``, stop after a
request that ends the connection). The answer must not depend on how the bytes were cut.

The corpus format is described in ``data/requests/README.md``. The rest of this module
checks what a corpus file cannot say well: exact limit boundaries at every split, offsets,
and time bounds against catastrophic regex backtracking and quadratic header handling.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peregrine_core import RemoteProtocolError
from peregrine_core._chunked import ChunkedReader
from peregrine_core._h1 import MEMO_ENTRIES, MEMO_HEAD_BYTES, Head, HeadMemo, Limits, parse_head

from feeder import Feeder

CORPUS = Path(__file__).parent / "data" / "requests"
RANDOM_SPLITS = 4

_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")
_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}


def decode_http(text: str) -> bytes:
    """Turn a corpus ``.http`` file into bytes: newlines dropped, then escapes decoded."""

    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[esc]
        if len(esc) == 3:
            return chr(int(esc[1:], 16))
        raise ValueError(f"unknown escape \\{esc} in a corpus file")

    return _ESCAPE.sub(sub, text.replace("\n", "")).encode("latin-1")


# --- the feeding driver --------------------------------------------------------------------


@dataclass
class Outcome:
    requests: list[Head]
    status: int | None = None  # the error's status, None when there was none
    rest: bytes = b""  # bytes never consumed
    pending: bool = False  # EOF came inside a request
    messages: list[str] = field(default_factory=list)


def run(pieces: Sequence[bytes], limits: Limits, memo: HeadMemo | None = None) -> Outcome:
    feeder = Feeder(limits, memo)
    try:
        for piece in pieces:
            feeder.feed(piece)
    except RemoteProtocolError as exc:
        return Outcome(feeder.requests, exc.status_hint, messages=[str(exc)])
    pending = not feeder.closed and (bool(feeder.buf) or feeder.head is not None)
    return Outcome(feeder.requests, None, feeder.buf, pending)


def splits(data: bytes, seed: str) -> Iterator[tuple[str, list[bytes]]]:
    """The ways every input is cut: whole, byte by byte, and random pieces (seeded)."""
    yield "whole", [data]
    yield "bytes", [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for k in range(RANDOM_SPLITS):
        if len(data) < 2:
            break
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(16, len(data) - 1))))
        bounds = [0, *cuts, len(data)]
        yield f"random{k}", [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- the corpus ----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    data: bytes
    meta: dict[str, Any]

    @property
    def limits(self) -> Limits:
        return Limits(**self.meta.get("limits", {}))


def load_corpus(kind: str) -> list[Case]:
    cases = []
    for http in sorted((CORPUS / kind).glob("*.http")):
        meta = json.loads(http.with_suffix(".json").read_text("utf-8"))
        cases.append(Case(f"{kind}/{http.stem}", decode_http(http.read_text("ascii")), meta))
    return cases


VALID = load_corpus("valid")
INVALID = load_corpus("invalid")

# One HeadMemo per set of limits, shared by every corpus case run with a memo: heads accepted
# in one case are remembered when the next case (valid or not) is parsed.
_MEMOS: dict[str, HeadMemo] = {}


def corpus_memo(case: Case) -> HeadMemo:
    key = json.dumps(case.meta.get("limits", {}), sort_keys=True)
    memo = _MEMOS.get(key)
    if memo is None:
        memo = _MEMOS[key] = HeadMemo(case.limits)
    return memo


def corpus_run(case: Case, pieces: Sequence[bytes], with_memo: bool) -> Outcome:
    if with_memo:
        memo = corpus_memo(case)
        return run(pieces, memo.limits, memo)
    return run(pieces, case.limits)


def check_request(head: Head, expected: dict[str, Any]) -> None:
    req = head.request
    assert req.method == expected["method"]
    assert req.target == expected["target"]
    assert req.version == expected["version"]
    assert req.headers == [(n, v) for n, v in expected["headers"]]
    assert req.body == expected["body"].encode("latin-1")
    for flag in ("keep_alive", "chunked", "expect_continue", "upgrade"):
        if flag in expected:
            assert getattr(head, flag) == expected[flag], flag


def test_corpus_is_there_and_well_formed() -> None:
    assert len(VALID) >= 40
    assert len(INVALID) >= 140
    for case in VALID + INVALID:
        assert case.meta["description"].strip(), case.name
        assert set(case.meta) <= {"description", "limits", "requests", "rest", "status"}, case.name
    for case in INVALID:
        assert case.meta["status"] in (None, 400, 413, 414, 417, 431, 501, 505), case.name


@pytest.mark.parametrize("with_memo", [False, True], ids=["parsed", "memo"])
@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid_request_parses_identically_however_it_is_split(case: Case, with_memo: bool) -> None:
    for how, pieces in splits(case.data, case.name):
        outcome = corpus_run(case, pieces, with_memo)
        assert outcome.status is None, (how, outcome.messages)
        assert not outcome.pending, how
        assert outcome.rest == case.meta.get("rest", "").encode("latin-1"), how
        assert len(outcome.requests) == len(case.meta["requests"]), how
        for head, expected in zip(outcome.requests, case.meta["requests"], strict=True):
            check_request(head, expected)


@pytest.mark.parametrize("with_memo", [False, True], ids=["parsed", "memo"])
@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
def test_invalid_request_gets_the_same_status_however_it_is_split(case: Case, with_memo: bool) -> None:
    expected_requests = case.meta.get("requests", [])
    for how, pieces in splits(case.data, case.name):
        outcome = corpus_run(case, pieces, with_memo)
        assert outcome.status == case.meta["status"], (how, outcome.messages)
        if case.meta["status"] is None:
            assert outcome.pending, how  # EOF inside a request: never a complete request
        # Nothing after the first error ever becomes a request.
        assert len(outcome.requests) == len(expected_requests), how
        for head, expected in zip(outcome.requests, expected_requests, strict=True):
            check_request(head, expected)


def test_the_memo_answers_exactly_as_parsing_does_once_the_corpus_primed_it() -> None:
    """Every valid case is remembered, then every case is answered from a primed memo."""
    for case in VALID:
        corpus_run(case, [case.data], True)
    for case in VALID + INVALID:
        for pieces in ([case.data], [case.data[i : i + 1] for i in range(len(case.data))]):
            parsed = corpus_run(case, pieces, False)
            memoized = corpus_run(case, pieces, True)
            assert memoized.status == parsed.status, case.name
            assert memoized.rest == parsed.rest, case.name
            assert [vars_of(h) for h in memoized.requests] == [vars_of(h) for h in parsed.requests]


def vars_of(head: Head) -> tuple[object, ...]:
    req = head.request
    return (
        req.method,
        req.target,
        req.version,
        req.headers,
        req.body,
        head.end,
        head.content_length,
        head.chunked,
        head.keep_alive,
        head.expect_continue,
        head.upgrade,
    )


def test_a_remembered_head_gives_a_new_request_each_time() -> None:
    limits = Limits()
    memo = HeadMemo(limits)
    data = b"GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    first = parse_head(data, 0, limits, ("127.0.0.1", 1), memo)
    assert first is not None and list(memo.heads) == [data]
    first.request.headers.append(("X-Added", "by a handler"))
    first.request.body = b"changed"
    second = parse_head(b"xx" + data, 2, limits, ("127.0.0.1", 2), memo)
    assert second is not None and second.request is not first.request
    assert second.request.headers == [("Host", "x"), ("Accept", "*/*")]
    assert second.request.body == b""
    assert second.request.remote_addr == ("127.0.0.1", 2)
    assert second.end == len(data) + 2
    assert (second.request.method, second.request.target, second.request.path) == ("GET", "/a?b", "/a")
    third = parse_head(b"\r\n\r\n" + data, 0, limits, None, memo)  # after empty lines (RFC 9112 §2.2)
    assert third is not None and third.end == len(data) + 4
    assert third.request.headers == [("Host", "x"), ("Accept", "*/*")]
    assert list(memo.heads) == [data]


def test_the_memo_keys_on_the_version_so_a_field_valid_in_1_1_is_still_refused_in_1_0() -> None:
    limits = Limits()
    memo = HeadMemo(limits)
    section = b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    head = parse_head(b"POST / HTTP/1.1\r\n" + section, 0, limits, None, memo)
    assert head is not None and head.chunked
    parse_head(b"POST / HTTP/1.0\r\nHost: x\r\n\r\n", 0, limits, None, memo)  # a 1.0 head known
    with pytest.raises(RemoteProtocolError, match=r"HTTP/1\.0"):
        parse_head(b"POST / HTTP/1.0\r\n" + section, 0, limits, None, memo)


def test_the_memo_never_keeps_a_refused_head_and_stays_bounded() -> None:
    limits = Limits()
    memo = HeadMemo(limits)
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 0, limits, None, memo)
    assert not memo.heads
    for i in range(3 * MEMO_ENTRIES):
        assert parse_head(b"GET /%d HTTP/1.1\r\nHost: h%d\r\n\r\n" % (i, i), 0, limits, None, memo)
    assert len(memo.heads) == MEMO_ENTRIES
    newest = 3 * MEMO_ENTRIES - 1
    assert b"GET /%d HTTP/1.1\r\nHost: h%d\r\n\r\n" % (newest, newest) in memo.heads
    assert b"GET /0 HTTP/1.1\r\nHost: h0\r\n\r\n" not in memo.heads  # the oldest dropped
    big = b"X-Big: " + b"v" * MEMO_HEAD_BYTES + b"\r\n"
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", 0, limits, None, memo)
    assert all(len(key) <= MEMO_HEAD_BYTES for key in memo.heads)


def test_a_memo_is_only_used_with_its_own_limits() -> None:
    memo = HeadMemo(Limits())
    with pytest.raises(ValueError, match="Limits"):
        parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, Limits(), None, memo)


def test_corpus_file_decoding_is_exact() -> None:
    assert decode_http("GET / HTTP/1.1\\r\\n\nA: \\x00\\t\\\\\n") == b"GET / HTTP/1.1\r\nA: \x00\t\\"
    with pytest.raises(ValueError, match="unknown escape"):
        decode_http("\\q")


# --- heads: offsets, flags, limits at every split ------------------------------------------


def test_parse_head_returns_none_until_the_head_is_complete() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for i in range(len(data)):
        assert parse_head(data[:i], 0, Limits()) is None
    head = parse_head(data, 0, Limits())
    assert head is not None
    assert head.end == len(data)


def test_parse_head_starts_at_the_offset_given_and_ends_after_the_final_crlf() -> None:
    first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    second = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    buf = first + second + b"GET /3"
    head = parse_head(buf, len(first), Limits(), ("127.0.0.1", 1))
    assert head is not None
    assert head.request.target == "/2"
    assert head.end == len(first) + len(second)
    assert head.request.remote_addr == ("127.0.0.1", 1)
    assert parse_head(buf, head.end, Limits()) is None


def test_head_flags_for_keep_alive_continue_and_upgrade() -> None:
    def head(data: bytes) -> Head:
        parsed = parse_head(data, 0, Limits())
        assert parsed is not None
        return parsed

    assert head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive
    assert not head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert not head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
    up = head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert up.upgrade
    assert up.keep_alive
    assert not head(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade
    cont = head(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert cont.expect_continue
    assert cont.content_length == 1
    assert not cont.chunked


def test_request_line_limit_is_exact_at_every_split() -> None:
    limits = Limits(max_request_line_bytes=100, max_header_bytes=400)
    for length in (99, 100):
        line = b"GET /" + b"a" * (length - 14) + b" HTTP/1.1"
        assert len(line) == length
        data = line + b"\r\nHost: a\r\n\r\n"
        for how, pieces in splits(data, f"line{length}"):
            outcome = run(pieces, limits)
            assert outcome.status is None, how
            assert [h.request.target for h in outcome.requests] == [line[4:-9].decode()], how
    line = b"GET /" + b"a" * 87 + b" HTTP/1.1"
    assert len(line) == 101
    for how, pieces in splits(line + b"\r\nHost: a\r\n\r\n", "line101"):
        outcome = run(pieces, limits)
        assert outcome.status == 414, how
        assert "exceeds 100 bytes" in outcome.messages[0]


def test_header_limits_are_exact_at_every_split() -> None:
    limits = Limits(max_request_line_bytes=64, max_header_bytes=200, max_header_count=3)
    prefix = b"GET / HTTP/1.1\r\nHost: a\r\nX: "
    for size, status in ((199, None), (200, None), (201, 431)):
        data = prefix + b"v" * (size - len(prefix) - 4) + b"\r\n\r\n"
        assert len(data) == size
        for how, pieces in splits(data, f"head{size}"):
            assert run(pieces, limits).status == status, (size, how)
    for count, status in ((3, None), (4, 431)):
        data = (
            b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(count - 1)) + b"Host: a\r\n\r\n"
        )
        for how, pieces in splits(data, f"count{count}"):
            assert run(pieces, limits).status == status, (count, how)


def test_errors_say_which_limit_was_crossed() -> None:
    with pytest.raises(RemoteProtocolError, match="request head exceeds 128 bytes") as info:
        parse_head(b"GET / HTTP/1.1\r\nX: " + b"v" * 200, 0, Limits(64, 128))
    assert info.value.status_hint == 431
    with pytest.raises(RemoteProtocolError, match="more than 2 header fields"):
        parse_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 0, Limits(max_header_count=2))


def test_leading_empty_lines_are_skipped_up_to_eight() -> None:
    for n in range(9):
        data = b"\r\n" * n + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        head = parse_head(data, 0, Limits())
        assert head is not None
        assert head.end == len(data)
    assert parse_head(b"\r\n\r\n\r", 0, Limits()) is None


def test_earliest_violation_decides_the_status() -> None:
    # A 505 request line comes before a bad field line; a bare LF before the count limit.
    cases = [
        (b"GET / HTTP/3.0\r\nBad\x00: x\r\n\r\n", 505, Limits()),
        (b"GET / HTTP/1.1\r\nA: 1\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 400, Limits(max_header_count=2)),
        (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD\n: 4\r\n\r\n", 431, Limits(max_header_count=2)),
        (b"GET /\x01" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 400, Limits(64, 128)),
        (b"GET /" + b"a" * 100 + b"\x01 HTTP/1.1\r\n\r\n", 414, Limits(64, 128)),
    ]
    for data, status, limits in cases:
        for how, pieces in splits(data, repr(data)):
            assert run(pieces, limits).status == status, (data, how)


# --- chunked bodies -------------------------------------------------------------------------


def test_chunked_reader_stops_exactly_after_the_final_crlf() -> None:
    body = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\nX: y\r\n\r\n"
    buf = b"HEAD" + body + b"NEXT"
    reader = ChunkedReader(100)
    assert reader.feed(buf, 4) == 4 + len(body)
    assert reader.done
    assert reader.body == b"Wikipedia"
    assert reader.feed(buf, 4 + len(body)) == 4 + len(body)  # done: consumes nothing more


def test_chunked_reader_waits_for_more_and_counts_the_body_as_it_arrives() -> None:
    reader = ChunkedReader(8)
    assert reader.feed(b"5\r\nab", 0) == 5
    assert not reader.done
    assert reader.body == b"ab"
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(b"cde\r\n4\r\n", 0)
    assert info.value.status_hint == 413


def test_chunk_line_limit_is_exact_at_every_split() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for length, status in ((4096, None), (4097, 400)):
        ext = b";e=" + b"v" * (length - 4)
        line = b"1" + ext
        assert len(line) == length
        data = head + line + b"\r\nx\r\n0\r\n\r\n"
        for how, pieces in splits(data, f"chunk{length}"):
            outcome = run(pieces, Limits())
            assert outcome.status == status, (length, how, outcome.messages)
            if status is None:
                assert outcome.requests[0].request.body == b"x"


def test_trailer_budget_is_exact_at_every_split() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    limits = Limits(64, 128)  # the worker gives trailers max_header_bytes
    for size, status in ((127, None), (128, None), (129, 431)):
        field_line = b"T: " + b"t" * (size - 7) + b"\r\n"
        data = head + field_line + b"\r\n"
        assert len(field_line) + 2 == size
        for how, pieces in splits(data, f"trailer{size}"):
            assert run(pieces, limits).status == status, (size, how)


def test_chunked_body_with_many_small_chunks() -> None:
    payload = bytes(range(256)) * 4
    encoded = b"".join(b"%x\r\n%s\r\n" % (1, payload[i : i + 1]) for i in range(len(payload))) + b"0\r\n\r\n"
    reader = ChunkedReader(len(payload))
    assert reader.feed(encoded, 0) == len(encoded)
    assert reader.body == payload


# --- time bounds: no catastrophic backtracking, no quadratic work --------------------------


def timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def expect_status(status: int, data: bytes, limits: Limits) -> None:
    outcome = run([data], limits)
    assert outcome.status == status, outcome.messages


BIG = Limits(
    max_request_line_bytes=1 << 20, max_header_bytes=4 << 20, max_header_count=200, max_body_bytes=1 << 20
)


def test_redos_header_value_ending_in_a_control_character_is_fast() -> None:
    # CVE-2020-5236 (waitress): "Bad-header: xxxx...\x10" made a regex backtrack for minutes.
    data = b"GET / HTTP/1.1\r\nHost: a\r\nBad-header: " + b"x" * 65536 + b"\x10\r\n\r\n"
    assert timed(expect_status, 400, data, BIG) < 0.5
    assert timed(expect_status, 431, data, Limits()) < 0.5


@pytest.mark.parametrize(
    "field_line",
    [
        b"Host: " + b"a" * 65536 + b"@",
        b"Host: [" + b":" * 65536 + b"x",
        b"Host: a" + b":" * 65536,
        b"Content-Length: " + b"1" * 65536 + b"x",
        b"Transfer-Encoding: " + b"chunked, " * 8192 + b"x y",
        b"Connection: " + b"a, " * 20000 + b"b c",
        b"Expect: " + b", " * 30000 + b"x",
        b"Bad name" + b"a" * 65536 + b": v",
    ],
    ids=[
        "host",
        "host-literal",
        "host-port",
        "content-length",
        "te-list",
        "connection-list",
        "expect",
        "name",
    ],
)
def test_long_pathological_fields_are_rejected_in_linear_time(field_line: bytes) -> None:
    data = (
        b"GET / HTTP/1.1\r\n" + (b"Host: a\r\n" if not field_line.startswith(b"Host") else b"") + field_line
    )
    data += b"\r\n\r\n"
    started = time.perf_counter()
    outcome = run([data], BIG)
    assert time.perf_counter() - started < 0.5
    assert outcome.status in (400, 413, 417, 501)


@pytest.mark.parametrize(
    "target",
    [
        b"/" + b"a" * 65536 + b"\x7f",
        b"http://" + b"a" * 65536 + b"@",
        b"http" + b"a" * 65536 + b":/",
        b"x" * 65536 + b":80x",
    ],
    ids=["origin", "absolute-authority", "scheme", "authority-form"],
)
def test_long_pathological_targets_are_rejected_in_linear_time(target: bytes) -> None:
    method = b"CONNECT" if target.startswith(b"x") else b"GET"
    data = method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert timed(expect_status, 400, data, BIG) < 0.5


def test_pathological_chunk_extensions_are_rejected_in_linear_time() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for line in (
        b"1" + b" " * 4000 + b"x",
        b"1;a" + b" " * 4000 + b"x",
        b"1;a=" + b" " * 4000 + b";",
        b"1" + b";a=b" * 1000 + b"=",
        b'1;a="' + b"\\\\" * 2000 + b"x",
    ):
        assert timed(expect_status, 400, head + line + b"\r\nx\r\n0\r\n\r\n", Limits()) < 0.2


def test_many_repeated_fields_at_the_maximum_size_parse_in_linear_time() -> None:
    # CVE-2025-67725 (tornado): quadratic handling of many repeated headers. 100 fields of
    # ~40 KiB each: a quadratic join would copy ~200 MB; linear work is a few ms.
    value = b"v" * 40000
    for name in (b"X-Same", b"Connection", b"Expect", b"Cookie"):
        item = {b"Connection": b"keep-alive, " * 3333, b"Expect": b", " * 20000}.get(name, value)
        data = b"GET / HTTP/1.1\r\nHost: a\r\n" + (name + b": " + item + b"\r\n") * 100 + b"\r\n"
        started = time.perf_counter()
        outcome = run([data], BIG)
        assert time.perf_counter() - started < 0.5, name
        assert outcome.status is None, outcome.messages
        assert len(outcome.requests[0].request.headers) == 101


def test_limits_bound_the_search_whatever_the_buffer_holds() -> None:
    huge = b"GET /" + b"a" * (16 << 20)
    assert timed(expect_status, 414, huge, Limits()) < 0.1
    huge = b"GET / HTTP/1.1\r\nX: " + b"a" * (16 << 20)
    assert timed(expect_status, 431, huge, Limits()) < 0.1
    # A complete head followed by a large body costs the same as the head alone.
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 16777216\r\n\r\n"
    buf = head + b"\r\n" * (8 << 20)
    started = time.perf_counter()
    for _ in range(100):
        parsed = parse_head(buf, 0, Limits())
        assert parsed is not None
    assert time.perf_counter() - started < 0.1


def test_checking_an_incomplete_head_is_cheap() -> None:
    # The worker re-parses a head from its start on each read: the cost of one look at an
    # incomplete 32 KiB head bounds what a client trickling bytes can make us spend.
    partial = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Field: " + b"v" * 32000
    limits = Limits()
    started = time.perf_counter()
    for _ in range(100):
        assert parse_head(partial, 0, limits) is None
    assert (time.perf_counter() - started) / 100 < 0.002
