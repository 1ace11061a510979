"""Properties of the HTTP/1.x request codec, checked with Hypothesis.

* Requests written by a small independent serializer (below) parse back identically:
  method, target, version, headers (names as sent, values without their OWS) and body,
  for Content-Length and chunked framing (random chunk sizes, extensions, trailers),
  pipelined, and cut at arbitrary points.
* Random bytes, and valid requests mutated at random, never make the codec raise anything
  but ``RemoteProtocolError`` and never make it hang; and the outcome (requests, status,
  what is left) is the same whether the bytes arrive whole or in pieces.

The feeding driver mirrors ``Worker._process`` (the same one as in ``test_h1.py``; test
modules cannot import each other under ``--import-mode=importlib``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from peregrine_core import RemoteProtocolError
from peregrine_core._h1 import Head, Limits

from feeder import Feeder

SETTINGS = settings(
    max_examples=300,
    deadline=1000,  # ms per example: "never hangs"
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- the feeding driver (mirrors Worker._process) -------------------------------------------


Parsed = tuple[str, str, str, list[tuple[str, str]], bytes]


def summary(head: Head) -> Parsed:
    r = head.request
    return (r.method, r.target, r.version, r.headers, r.body)


def outcome(pieces: Sequence[bytes], limits: Limits) -> tuple[list[Parsed], int | None, bytes, bool]:
    """(requests, error status or None, bytes left, EOF inside a request)."""
    feeder = Feeder(limits)
    try:
        for piece in pieces:
            feeder.feed(piece)
    except RemoteProtocolError as exc:
        assert exc.status_hint in (400, 413, 414, 417, 431, 501, 505)
        return [summary(h) for h in feeder.requests], exc.status_hint, b"", False
    pending = not feeder.closed and (bool(feeder.buf) or feeder.head is not None)
    return [summary(h) for h in feeder.requests], None, feeder.buf, pending


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- an independent serializer --------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
OBS_TEXT = "".join(chr(c) for c in range(0x80, 0x100))
RESERVED = {"content-length", "transfer-encoding", "host", "connection", "expect", "te", "trailer"}

tokens = st.text(alphabet=TCHAR, min_size=1, max_size=10)
field_names = tokens.filter(lambda n: n.lower() not in RESERVED)
# RFC 9110 §6.5.1: fields for framing, routing, authentication or payload handling are not
# trailers; the codec refuses them there (Hypothesis draws such literals from its source).
NOT_TRAILERS = {
    *RESERVED,
    "keep-alive",
    "upgrade",
    "content-type",
    "content-encoding",
    "content-range",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
}
trailer_names = tokens.filter(lambda n: n.lower() not in NOT_TRAILERS)
field_values = st.text(alphabet=VCHAR + OBS_TEXT + " \t", max_size=30).map(lambda v: v.strip(" \t"))
ows = st.sampled_from(["", " ", "\t", "  ", " \t "])
path_chars = VCHAR.replace("#", "")
origin_targets = st.text(alphabet=path_chars, max_size=30).map(lambda p: "/" + p)
hosts = st.from_regex(r"[a-z0-9.\-]{0,20}(:[0-9]{0,5})?", fullmatch=True)
absolute_targets = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https", "HTTP"]),
    st.from_regex(r"[a-z0-9\-]{1,12}(\.[a-z]{2,5})?(:[0-9]{1,5})?", fullmatch=True),
    st.one_of(st.just(""), origin_targets),
)
# CONNECT takes only an authority-form target (RFC 9112 §3.2.3), which the serializer does
# not write: a random token may be "CONNECT" (Hypothesis draws literals from the code under
# test), and that request is rightly refused.
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), tokens.filter(lambda m: m != "CONNECT")
)


@dataclass
class Message:
    wire: bytes
    expected: Parsed


@st.composite
def chunked_encoding(draw: st.DrawFn, body: bytes) -> bytes:
    """Encode ``body`` as chunks of random sizes, with random extensions and trailers."""
    out = []
    pos = 0
    while pos < len(body):
        size = draw(st.integers(1, len(body) - pos))
        out.append(
            draw(chunk_size_text(size)) + draw(extensions()) + b"\r\n" + body[pos : pos + size] + b"\r\n"
        )
        pos += size
    out.append(draw(chunk_size_text(0)) + draw(extensions()) + b"\r\n")
    for _ in range(draw(st.integers(0, 2))):
        name = draw(trailer_names)
        out.append(f"{name}:{draw(ows)}{draw(field_values)}{draw(ows)}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


def chunk_size_text(size: int) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda zeros, upper: (("0" * zeros) + (f"{size:X}" if upper else f"{size:x}")).encode(),
        st.integers(0, 3),
        st.booleans(),
    )


def extensions() -> st.SearchStrategy[bytes]:
    quoted = st.text(alphabet=VCHAR.replace('"', "").replace("\\", "") + " \t", max_size=8).map(
        lambda s: f'"{s}"'
    )
    one = st.builds(
        lambda bws, name, value: f"{bws};{bws}{name}" + ("" if value is None else f"={value}"),
        st.sampled_from(["", " ", "\t"]),
        tokens,
        st.one_of(st.none(), tokens, quoted),
    )
    return st.lists(one, max_size=2).map(lambda exts: "".join(exts).encode("latin-1"))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1"]))
    method = draw(methods)
    target = draw(st.one_of(origin_targets, absolute_targets))
    headers: list[tuple[str, str]] = [
        (draw(field_names), draw(field_values)) for _ in range(draw(st.integers(0, 5)))
    ]
    if version == "HTTP/1.1":
        headers.insert(
            draw(st.integers(0, len(headers))), (draw(st.sampled_from(["Host", "host", "HOST"])), draw(hosts))
        )
    else:
        headers.append(("Connection", "keep-alive"))  # so that pipelined requests follow
    body = draw(st.binary(max_size=80))
    framing = draw(st.sampled_from(["length", "chunked"] if version == "HTTP/1.1" else ["length"]))
    if body or draw(st.booleans()):
        if framing == "length":
            headers.append((draw(st.sampled_from(["Content-Length", "content-length"])), str(len(body))))
        else:
            headers.append((draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"])), "chunked"))
    else:
        framing = "none"
    lines = [f"{method} {target} {version}\r\n"]
    lines += [f"{name}:{draw(ows)}{value}{draw(ows)}\r\n" for name, value in headers]
    head = "".join(lines).encode("latin-1") + b"\r\n"
    encoded = draw(chunked_encoding(body)) if framing == "chunked" else body
    return Message(head + encoded, (method, target, version, headers, body))


# --- properties -------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(messages(), min_size=1, max_size=3), st.lists(st.integers(0, 10_000), max_size=12))
def test_serialized_requests_parse_back_identically_however_they_are_cut(
    msgs: list[Message], points: list[int]
) -> None:
    wire = b"".join(m.wire for m in msgs)
    expected = [m.expected for m in msgs]
    assert outcome([wire], Limits()) == (expected, None, b"", False)
    assert outcome(cut(wire, points), Limits()) == (expected, None, b"", False)


MUTATION_BYTES = b'\r\n\x00\t :;,\x0b\x7f\x85\xa0"=0aZ'

mutations = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "duplicate", "lf-only", "truncate"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.one_of(st.sampled_from(list(MUTATION_BYTES)), st.integers(0, 255)),
)


def mutate(data: bytes, how: str, at: int, other: int, byte: int) -> bytes:
    at %= len(data) + 1
    if how == "insert":
        return data[:at] + bytes([byte]) + data[at:]
    if how == "delete":
        return data[:at] + data[at + 1 :]
    if how == "replace":
        return data[:at] + bytes([byte]) + data[at + 1 :]
    if how == "duplicate":
        end = min(len(data), at + other % 64)
        return data[:end] + data[at:end] + data[end:]
    if how == "lf-only":
        i = data.find(b"\r\n", at)
        return data if i < 0 else data[:i] + data[i + 1 :]
    return data[:at]


LIMITS = st.sampled_from(
    [
        Limits(),
        Limits(max_request_line_bytes=64, max_header_bytes=160, max_header_count=4, max_body_bytes=32),
        Limits(max_request_line_bytes=80, max_header_bytes=80, max_header_count=1, max_body_bytes=1),
    ]
)


@SETTINGS
@given(
    st.lists(messages(), min_size=1, max_size=2),
    st.lists(mutations, min_size=1, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=12),
    LIMITS,
)
def test_mutated_requests_get_the_same_answer_however_they_are_cut(
    msgs: list[Message],
    changes: list[tuple[str, int, int, int]],
    points: list[int],
    limits: Limits,
) -> None:
    data = b"".join(m.wire for m in msgs)
    for change in changes:
        data = mutate(data, *change)
    whole = outcome([data], limits)  # raises if anything but RemoteProtocolError escapes
    event(f"status {whole[1]}, {len(whole[0])} request(s), pending {whole[3]}")
    assert outcome(cut(data, points), limits) == whole
    if len(data) <= 400:
        assert outcome([data[i : i + 1] for i in range(len(data))], limits) == whole


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=8), LIMITS)
def test_random_bytes_only_ever_raise_remote_protocol_error(
    data: bytes, points: list[int], limits: Limits
) -> None:
    whole = outcome([data], limits)
    assert outcome(cut(data, points), limits) == whole


@SETTINGS
@given(
    st.sampled_from(
        [
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nx\r\n0\r\n",
            b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
        ]
    ),
    st.binary(max_size=200),
    st.lists(st.integers(0, 10_000), max_size=8),
    LIMITS,
)
def test_random_bytes_after_a_valid_prefix_only_ever_raise_remote_protocol_error(
    prefix: bytes, data: bytes, points: list[int], limits: Limits
) -> None:
    whole = outcome([prefix + data], limits)
    assert outcome(cut(prefix + data, points), limits) == whole
