"""permessage-deflate (RFC 7692): negotiation, inflating bounded, compressing."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
from websockets.frames import Frame
from websockets.protocol import Protocol, Side

from peregrine_ws import BinaryMessage, DeflateConfig, FrameDecoder, Opcode, TextMessage
from peregrine_ws._deflate import negotiate_deflate, parse_extensions

from conftest import client_compress, decode_chunks, decode_every_way, deflate_state, masked

ZERO_KEY = b"\x00\x00\x00\x00"


def with_deflate(**overrides: object) -> FrameDecoder:
    return FrameDecoder(deflate=deflate_state(**overrides))


def response_for(header: str, config: DeflateConfig | None = None) -> str | None:
    agreed = negotiate_deflate(parse_extensions([header]), config or DeflateConfig())
    return None if agreed is None else agreed.response


# --- parsing Sec-WebSocket-Extensions ----------------------------------------------------


def test_extension_list_with_parameters_is_parsed_in_order() -> None:
    header = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10", foo'
    assert parse_extensions([header]) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("foo", []),
    ]


def test_several_header_lines_and_empty_elements_are_joined() -> None:
    assert parse_extensions(["a, ,b;x=1", " c "]) == [("a", []), ("b", [("x", "1")]), ("c", [])]


def test_names_are_compared_case_insensitively() -> None:
    assert parse_extensions(["PerMessage-Deflate; Server_No_Context_Takeover"]) == [
        ("permessage-deflate", [("server_no_context_takeover", None)])
    ]


@pytest.mark.parametrize("header", ["a b", "a;", "a;=1", 'a; x="unterminated', "a; x=@", "=a"])
def test_malformed_extension_header_is_refused(header: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions([header])


# --- negotiation (RFC 7692 §7.1) ---------------------------------------------------------


def test_plain_offer_is_accepted_with_our_window() -> None:
    assert response_for("permessage-deflate") == "permessage-deflate; server_max_window_bits=12"


def test_client_window_is_limited_when_the_client_allows_it() -> None:
    assert response_for("permessage-deflate; client_max_window_bits") == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    assert response_for("permessage-deflate; client_max_window_bits=10") == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    )


def test_server_window_never_exceeds_the_offer() -> None:
    assert response_for("permessage-deflate; server_max_window_bits=10") == (
        "permessage-deflate; server_max_window_bits=10"
    )
    config = DeflateConfig(server_max_window_bits=15)
    assert response_for("permessage-deflate", config) == "permessage-deflate"
    assert response_for("permessage-deflate; server_max_window_bits=15", config) == (
        "permessage-deflate; server_max_window_bits=15"
    )


def test_offer_demanding_a_window_of_8_bits_is_declined() -> None:
    # zlib cannot compress with an 8-bit window, and a larger answer is not allowed.
    assert response_for("permessage-deflate; server_max_window_bits=8") is None


def test_next_offer_is_tried_when_the_first_is_declined() -> None:
    header = "permessage-deflate; server_max_window_bits=8, permessage-deflate"
    assert response_for(header) == "permessage-deflate; server_max_window_bits=12"


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "x-webkit-deflate-frame",
    ],
)
def test_invalid_offer_is_declined(offer: str) -> None:
    assert response_for(offer) is None


def test_no_context_takeover_requests_are_granted() -> None:
    header = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert response_for(header) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12"
    )


def test_configured_no_context_takeover_is_announced() -> None:
    config = DeflateConfig(client_no_context_takeover=True, server_no_context_takeover=True)
    assert response_for("permessage-deflate", config) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12"
    )


# --- inflating (RFC 7692 §7.2.3 examples, masked as a client sends them) -------------------


def test_rfc_compressed_hello() -> None:
    frame = b"\xc1\x87" + ZERO_KEY + b"\xf2\x48\xcd\xc9\xc9\x07\x00"
    assert decode_every_way(frame, with_deflate) == ([TextMessage("Hello")], None)


def test_rfc_compressed_hello_in_two_fragments() -> None:
    data = b"\x41\x83" + ZERO_KEY + b"\xf2\x48\xcd" + b"\x80\x84" + ZERO_KEY + b"\xc9\xc9\x07\x00"
    assert decode_every_way(data, with_deflate) == ([TextMessage("Hello")], None)


def test_rfc_second_hello_uses_the_shared_context() -> None:
    first = b"\xc1\x87" + ZERO_KEY + b"\xf2\x48\xcd\xc9\xc9\x07\x00"
    second = b"\xc1\x85" + ZERO_KEY + b"\xf2\x00\x11\x00\x00"
    events, error = decode_every_way(first + second, with_deflate)
    assert events == [TextMessage("Hello"), TextMessage("Hello")]
    assert error is None


def test_rfc_stored_block_and_two_blocks_and_bfinal() -> None:
    stored = b"\xc1\x8b" + ZERO_KEY + b"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"
    two_blocks = b"\xc1\x8d" + ZERO_KEY + b"\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00"
    bfinal = b"\xc1\x88" + ZERO_KEY + b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00"
    after = masked(Opcode.TEXT, client_compress(b"again"), rsv1=True)
    events, error = decode_every_way(stored + two_blocks + bfinal + after, with_deflate)
    assert events == [TextMessage("Hello")] * 3 + [TextMessage("again")]
    assert error is None


def test_uncompressed_message_is_allowed_when_deflate_was_negotiated() -> None:
    assert decode_every_way(masked(Opcode.BINARY, b"raw"), with_deflate) == (
        [BinaryMessage(b"raw")],
        None,
    )


def test_rsv1_on_a_continuation_frame_fails_with_1002() -> None:
    data = masked(Opcode.TEXT, b"\xf2\x48", fin=False, rsv1=True) + masked(
        Opcode.CONTINUATION, b"\xcd", rsv1=True
    )
    assert decode_every_way(data, with_deflate) == ([], 1002)


def test_rsv1_on_a_control_frame_fails_with_1002() -> None:
    assert decode_every_way(b"\xc9\x80" + ZERO_KEY, with_deflate) == ([], 1002)


def test_rsv1_without_negotiated_deflate_fails_with_1002() -> None:
    # GHSA-mq44-7p77-q5h7: compressed frames must not be accepted without the extension.
    frame = masked(Opcode.TEXT, client_compress(b"Hello"), rsv1=True)
    assert decode_every_way(frame) == ([], 1002)


def test_corrupt_compressed_data_fails_with_1007() -> None:
    frame = masked(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True)
    assert decode_every_way(frame, with_deflate) == ([], 1007)


def test_compressed_invalid_utf8_fails_with_1007() -> None:
    frame = masked(Opcode.TEXT, client_compress(b"ok\xff"), rsv1=True)
    assert decode_every_way(frame, with_deflate) == ([], 1007)


def test_message_at_the_limit_once_inflated_is_accepted() -> None:
    frame = masked(Opcode.BINARY, client_compress(b"\x00" * 1000), rsv1=True)
    events, error = decode_chunks(
        [frame], lambda: FrameDecoder(max_message_bytes=1000, deflate=deflate_state())
    )
    assert events == [BinaryMessage(b"\x00" * 1000)]
    assert error is None


def test_message_one_byte_over_the_limit_once_inflated_fails_with_1009() -> None:
    frame = masked(Opcode.BINARY, client_compress(b"\x00" * 1001), rsv1=True)
    events, error = decode_chunks(
        [frame], lambda: FrameDecoder(max_message_bytes=1000, deflate=deflate_state())
    )
    assert (events, error) == ([], 1009)


@pytest.mark.parametrize("piece_bytes", [1 << 20, 997])
def test_compression_bomb_fails_with_1009_without_being_inflated(piece_bytes: int) -> None:
    # CVE-2018-1000518: a small frame that inflates to gigabytes.
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = bytearray()
    zeros = b"\x00" * (1 << 20)
    for _ in range(256):  # 256 MiB of zeros
        bomb += comp.compress(zeros)
    bomb += comp.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 300_000
    frame = masked(Opcode.BINARY, bytes(bomb), rsv1=True)
    decoder = FrameDecoder(max_message_bytes=1 << 20, deflate=deflate_state())
    tracemalloc.start()
    try:
        code = None
        for start in range(0, len(frame), piece_bytes):
            decoder.receive_data(frame[start : start + piece_bytes])
            try:
                assert decoder.next_event() is None
            except Exception as exc:
                code = getattr(exc, "code", None)
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 1009
    assert peak < 8 * (1 << 20)


def test_decompressor_is_freed_after_each_message_without_client_context_takeover() -> None:
    state = deflate_state(client_no_context_takeover=True)
    decoder = FrameDecoder(deflate=state)
    decoder.receive_data(masked(Opcode.TEXT, client_compress(b"Hello"), rsv1=True))
    assert decoder.next_event() == TextMessage("Hello")
    assert state._decompressor is None


# --- compressing -------------------------------------------------------------------------


def test_compressed_hello_matches_the_rfc_example() -> None:
    state = deflate_state()
    assert state.compress(b"Hello") == b"\xf2\x48\xcd\xc9\xc9\x07\x00"


def test_without_server_context_takeover_every_message_stands_alone() -> None:
    state = deflate_state(server_no_context_takeover=True)
    for _ in range(3):
        data = state.compress(b"Hello Hello Hello")
        assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == (b"Hello Hello Hello")
    assert state._compressor is None


def websockets_peer(no_context_takeover: bool = False) -> Protocol:
    """The websockets client with permessage-deflate already agreed."""
    peer = Protocol(Side.CLIENT, max_size=None)
    peer.extensions = [WsDeflate(no_context_takeover, no_context_takeover, 15, 15)]
    return peer


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=2000) | st.text(max_size=500), max_size=6), st.booleans())
def test_compressed_messages_round_trip_with_the_websockets_client(
    msgs: list[bytes | str], no_context_takeover: bool
) -> None:
    peer = websockets_peer(no_context_takeover)
    state = deflate_state(
        server_no_context_takeover=no_context_takeover,
        client_no_context_takeover=no_context_takeover,
    )
    decoder = FrameDecoder(deflate=state, max_message_bytes=None)
    for msg in msgs:
        # Client to server.
        if isinstance(msg, str):
            peer.send_text(msg.encode())
        else:
            peer.send_binary(msg)
        decoder.receive_data(b"".join(peer.data_to_send()))
        event = decoder.next_event()
        assert event == (TextMessage(msg) if isinstance(msg, str) else BinaryMessage(msg))
        # Server to client.
        raw = msg.encode() if isinstance(msg, str) else msg
        payload = state.compress(raw)
        opcode = 0x1 if isinstance(msg, str) else 0x2
        peer.receive_data(
            bytes([0xC0 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload
            if 126 <= len(payload) < 65536
            else bytes([0xC0 | opcode, len(payload)]) + payload
        )
        frames = [e for e in peer.events_received() if isinstance(e, Frame)]
        assert [f.data for f in frames] == [raw]
