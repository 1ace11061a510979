"""The frame decoder, driven by byte literals (RFC 6455 §5, §6.2, §7.4).

Every input is decoded whole, one byte at a time and at random split points
(``decode_every_way``); the three must give the same events and the same error.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.protocol import Protocol, Side

from peregrine_ws import (
    BinaryMessage,
    Close,
    Event,
    FrameDecoder,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
    build_close_payload,
    build_frame,
)

from conftest import decode_chunks, decode_every_way, masked

# RFC 6455 §5.7 examples, masked with the key 37 fa 21 3d.
MASKED_HELLO = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
MASKED_HEL = b"\x01\x83\x37\xfa\x21\x3d\x7f\x9f\x4d"
MASKED_LO = b"\x80\x82\x37\xfa\x21\x3d\x5b\x95"
MASKED_PING_HELLO = b"\x89\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
ZERO_KEY = b"\x00\x00\x00\x00"


def small(max_message_bytes: int) -> FrameDecoder:
    return FrameDecoder(max_message_bytes=max_message_bytes)


# --- valid input -------------------------------------------------------------------------


def test_rfc_masked_hello_is_one_text_message() -> None:
    assert decode_every_way(MASKED_HELLO) == ([TextMessage("Hello")], None)


def test_rfc_fragmented_hello_is_reassembled() -> None:
    assert decode_every_way(MASKED_HEL + MASKED_LO) == ([TextMessage("Hello")], None)


def test_ping_between_fragments_is_delivered_first() -> None:
    # §5.4: "Control frames MAY be injected in the middle of a fragmented message."
    events, error = decode_every_way(MASKED_HEL + MASKED_PING_HELLO + MASKED_LO)
    assert events == [Ping(b"Hello"), TextMessage("Hello")]
    assert error is None


def test_several_frames_in_one_buffer_are_all_decoded() -> None:
    data = MASKED_HELLO + masked(Opcode.BINARY, b"\x00\x01") + masked(Opcode.PONG, b"p")
    events, _ = decode_every_way(data)
    assert events == [TextMessage("Hello"), BinaryMessage(b"\x00\x01"), Pong(b"p")]


def test_binary_with_16_bit_length() -> None:
    payload = bytes(range(256))
    frame = b"\x82\xfe\x01\x00" + ZERO_KEY + payload
    assert decode_every_way(frame) == ([BinaryMessage(payload)], None)


def test_binary_with_64_bit_length() -> None:
    payload = b"\xab" * 65536
    frame = b"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00" + ZERO_KEY + payload
    events, error = decode_chunks([frame[:7], frame[7:40000], frame[40000:]], FrameDecoder)
    assert events == [BinaryMessage(payload)]
    assert error is None


def test_empty_messages_and_empty_fragments() -> None:
    data = (
        b"\x81\x80"
        + ZERO_KEY  # empty text
        + b"\x82\x80"
        + ZERO_KEY  # empty binary
        + b"\x01\x80"
        + ZERO_KEY
        + b"\x80\x80"
        + ZERO_KEY  # empty text in two fragments
    )
    events, error = decode_every_way(data)
    assert events == [TextMessage(""), BinaryMessage(b""), TextMessage("")]
    assert error is None


def test_utf8_sequence_split_between_fragments_is_valid() -> None:
    text = "κόσμε".encode()
    data = masked(Opcode.TEXT, text[:3], fin=False) + masked(Opcode.CONTINUATION, text[3:])
    assert decode_every_way(data) == ([TextMessage("κόσμε")], None)


def test_control_frame_of_125_bytes_is_accepted() -> None:
    assert decode_every_way(masked(Opcode.PING, b"x" * 125)) == ([Ping(b"x" * 125)], None)


def test_close_frame_with_code_and_reason() -> None:
    frame = b"\x88\x85" + ZERO_KEY + b"\x03\xe8bye"
    assert decode_every_way(frame) == ([Close(1000, "bye")], None)


def test_close_frame_without_payload_reports_1005() -> None:
    assert decode_every_way(b"\x88\x80" + ZERO_KEY) == ([Close(1005, "")], None)


def test_nothing_is_decoded_after_a_close_frame() -> None:
    # §5.5.1: "The application MUST NOT send any more data frames after sending a Close".
    data = b"\x88\x80" + ZERO_KEY + MASKED_HELLO + b"\xff\xff garbage"
    assert decode_every_way(data) == ([Close(1005, "")], None)


def test_message_of_exactly_the_limit_is_accepted() -> None:
    data = masked(Opcode.BINARY, b"x" * 6, fin=False) + masked(Opcode.CONTINUATION, b"y" * 4)
    events, error = decode_every_way(data, lambda: small(10))
    assert events == [BinaryMessage(b"x" * 6 + b"y" * 4)]
    assert error is None


def test_server_side_decoder_reads_unmasked_server_frames() -> None:
    data = b"\x81\x05Hello\x88\x02\x03\xe9"
    events, error = decode_every_way(data, lambda: FrameDecoder(client=False))
    assert events == [TextMessage("Hello"), Close(1001, "")]
    assert error is None


# --- protocol errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"\x81\x05Hello", 1002, id="unmasked client frame"),
        pytest.param(b"\xc1\x80" + ZERO_KEY, 1002, id="RSV1 without extension"),
        pytest.param(b"\xa1\x80" + ZERO_KEY, 1002, id="RSV2"),
        pytest.param(b"\x91\x80" + ZERO_KEY, 1002, id="RSV3"),
        pytest.param(b"\x09\x80" + ZERO_KEY, 1002, id="ping without FIN"),
        pytest.param(b"\x89\xfe\x00\x7e" + ZERO_KEY + b"x" * 126, 1002, id="ping of 126 bytes"),
        pytest.param(b"\x88\x81" + ZERO_KEY + b"\x03", 1002, id="close with 1 byte"),
        pytest.param(b"\x88\x82" + ZERO_KEY + b"\x03\xed", 1002, id="close code 1005"),
        pytest.param(b"\x88\x82" + ZERO_KEY + b"\x03\xee", 1002, id="close code 1006"),
        pytest.param(b"\x88\x82" + ZERO_KEY + b"\x03\xf7", 1002, id="close code 1015"),
        pytest.param(b"\x88\x82" + ZERO_KEY + b"\x03\xe7", 1002, id="close code 999"),
        pytest.param(b"\x88\x82" + ZERO_KEY + b"\x13\x88", 1002, id="close code 5000"),
        pytest.param(b"\x88\x83" + ZERO_KEY + b"\x03\xe8\xff", 1007, id="close reason not utf-8"),
        pytest.param(b"\x80\x80" + ZERO_KEY, 1002, id="orphan continuation"),
        pytest.param(MASKED_HEL + MASKED_HELLO, 1002, id="new data frame while a message is unfinished"),
        pytest.param(b"\x82\xfe\x00\x05" + ZERO_KEY + b"12345", 1002, id="16-bit length < 126"),
        pytest.param(
            b"\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff" + ZERO_KEY, 1002, id="64-bit length < 2**16"
        ),
        pytest.param(b"\x82\xff\x80" + b"\x00" * 7 + ZERO_KEY, 1002, id="64-bit length MSB set"),
        pytest.param(b"\x81\x82" + ZERO_KEY + b"\xc3\x28", 1007, id="invalid utf-8"),
        pytest.param(b"\x81\x83" + ZERO_KEY + b"\xed\xa0\x80", 1007, id="utf-8 surrogate"),
        pytest.param(b"\x81\x81" + ZERO_KEY + b"\xc3", 1007, id="text ends inside a sequence"),
        pytest.param(b"\x81\x84" + ZERO_KEY + b"\xf4\x90\x80\x80", 1007, id="beyond U+10FFFF"),
    ],
)
def test_violation_fails_with_close_code(data: bytes, code: int) -> None:
    assert decode_every_way(data) == ([], code)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_with_1002(opcode: int) -> None:
    assert decode_every_way(bytes([0x80 | opcode, 0x80]) + ZERO_KEY) == ([], 1002)


def test_events_before_a_violation_are_delivered() -> None:
    events, error = decode_every_way(MASKED_HELLO + b"\x81\x05Hello")
    assert events == [TextMessage("Hello")]
    assert error == 1002


def test_violation_is_raised_again_on_every_later_call() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x80\x80" + ZERO_KEY)
    for _ in range(2):
        with pytest.raises(ProtocolError) as info:
            decoder.next_event()
        assert info.value.code == 1002
    decoder.receive_data(MASKED_HELLO)
    with pytest.raises(ProtocolError):
        decoder.next_event()


def test_invalid_utf8_fails_before_the_message_is_complete() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(masked(Opcode.TEXT, b"ok \xce\xba\xe1\xbd\xb9\xed\xa0\x80", fin=False))
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert info.value.code == 1007


def test_invalid_utf8_fails_before_the_frame_is_complete() -> None:
    frame = masked(Opcode.TEXT, b"\xff" + b"a" * 1000)
    decoder = FrameDecoder()
    decoder.receive_data(frame[:10])
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert info.value.code == 1007


def test_oversized_frame_fails_with_1009_from_its_header_alone() -> None:
    header = b"\x82\xff\x00\x00\x00\x00\x00\x20\x00\x00" + ZERO_KEY  # 2 MiB declared
    decoder = FrameDecoder(max_message_bytes=1024 * 1024)
    decoder.receive_data(header)
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert info.value.code == 1009
    assert decoder.buffered_bytes == 0


def test_oversized_fragmented_message_fails_with_1009() -> None:
    data = masked(Opcode.BINARY, b"x" * 6, fin=False) + masked(Opcode.CONTINUATION, b"y" * 5)
    assert decode_every_way(data, lambda: small(10)) == ([], 1009)


def test_control_frames_do_not_count_towards_the_message_limit() -> None:
    data = (
        masked(Opcode.TEXT, b"a" * 8, fin=False)
        + masked(Opcode.PING, b"p" * 100)
        + masked(Opcode.CONTINUATION, b"b" * 2)
    )
    events, error = decode_every_way(data, lambda: small(10))
    assert events == [Ping(b"p" * 100), TextMessage("a" * 8 + "bb")]
    assert error is None


def test_server_side_decoder_refuses_masked_frames() -> None:
    events, error = decode_every_way(MASKED_HELLO, lambda: FrameDecoder(client=False))
    assert (events, error) == ([], 1002)


# --- round trips and independent implementations ------------------------------------------

messages = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda t: (Opcode.TEXT, t.encode())),
        st.binary(max_size=300).map(lambda b: (Opcode.BINARY, b)),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(messages, st.data())
def test_fragmented_masked_messages_round_trip(msgs: list[tuple[Opcode, bytes]], data: st.DataObject) -> None:
    wire = bytearray()
    expected: list[Event] = []
    for opcode, payload in msgs:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            key = data.draw(st.binary(min_size=4, max_size=4))
            op = opcode if i == 0 else Opcode.CONTINUATION
            last = i == len(pieces) - 1
            wire += build_frame(op, piece, fin=last, mask=key)
            if last:
                expected.append(
                    TextMessage(payload.decode()) if opcode == Opcode.TEXT else BinaryMessage(payload)
                )
            if data.draw(st.booleans()):
                wire += build_frame(Opcode.PING, b"i", mask=key)
                expected.append(Ping(b"i"))
    points = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    chunks = [bytes(wire[a:b]) for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert decode_chunks(chunks, FrameDecoder) == (expected, None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    decoder = FrameDecoder(max_message_bytes=100)
    decoder.receive_data(data)
    try:
        while decoder.next_event() is not None:
            pass
    except ProtocolError as exc:
        assert exc.code in (1002, 1007, 1009)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_frames_from_the_websockets_client_decode_here(msgs: list[tuple[Opcode, bytes]]) -> None:
    client = Protocol(Side.CLIENT)
    for opcode, payload in msgs:
        if opcode == Opcode.TEXT:
            client.send_text(payload)
        else:
            client.send_binary(payload)
    client.send_close(4001, "done")
    wire = b"".join(client.data_to_send())
    expected: list[Event] = [
        TextMessage(p.decode()) if op == Opcode.TEXT else BinaryMessage(p) for op, p in msgs
    ]
    assert decode_chunks([wire], FrameDecoder) == ([*expected, Close(4001, "done")], None)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_frames_built_here_decode_in_the_websockets_client(
    msgs: list[tuple[Opcode, bytes]],
) -> None:
    client = Protocol(Side.CLIENT, max_size=None)
    wire = b"".join(build_frame(op, p) for op, p in msgs)
    client.receive_data(wire + build_frame(Opcode.CLOSE, build_close_payload(1001, "bye")))
    frames = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, f.data) for f in frames[:-1]] == [
        (WsOpcode.TEXT if op == Opcode.TEXT else WsOpcode.BINARY, p) for op, p in msgs
    ]
    assert client.close_rcvd is not None
    assert (client.close_rcvd.code, client.close_rcvd.reason) == (1001, "bye")
