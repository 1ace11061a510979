"""Frame primitives: building frames, masking, close payloads (RFC 6455 §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peregrine_core import LocalProtocolError
from peregrine_ws import (
    CloseCode,
    Opcode,
    ProtocolError,
    build_close_payload,
    build_frame,
    parse_close_payload,
)
from peregrine_ws._frames import frame_header, is_valid_close_code, unmask


def test_short_text_frame_is_fin_opcode_and_length() -> None:
    assert build_frame(Opcode.TEXT, b"Hello") == b"\x81\x05Hello"


def test_rfc_example_masked_hello() -> None:
    # RFC 6455 §5.7: "A single-frame masked text message".
    frame = build_frame(Opcode.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
    assert frame == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"


def test_fragment_without_fin_clears_the_fin_bit() -> None:
    assert build_frame(Opcode.TEXT, b"Hel", fin=False) == b"\x01\x03Hel"
    assert build_frame(Opcode.CONTINUATION, b"lo") == b"\x80\x02lo"


def test_rsv1_sets_bit_0x40() -> None:
    assert build_frame(Opcode.BINARY, b"", rsv1=True) == b"\xc2\x00"


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2**40, b"\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00"),
    ],
)
def test_payload_length_uses_the_minimal_encoding(length: int, header: bytes) -> None:
    assert frame_header(Opcode.BINARY, length) == header


def test_control_frame_payload_over_125_bytes_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        build_frame(Opcode.PING, b"x" * 126)
    assert build_frame(Opcode.PING, b"x" * 125)[:2] == b"\x89\x7d"


def test_fragmented_control_frame_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        build_frame(Opcode.PONG, b"", fin=False)


def test_mask_must_be_four_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        build_frame(Opcode.TEXT, b"x", mask=b"abc")


def test_unmask_of_empty_data_is_empty() -> None:
    assert unmask(b"", b"abcd") == b""


def test_unmask_with_offset_continues_the_key() -> None:
    key = b"\x01\x02\x03\x04"
    data = bytes(range(11))
    whole = unmask(data, key)
    assert unmask(data[:3], key) + unmask(data[3:], key, 3) == whole
    assert unmask(data[:6], key) + unmask(data[6:], key, 6) == whole


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.integers(0, 299))
def test_unmask_matches_the_rfc_definition(data: bytes, key: bytes, cut: int) -> None:
    # RFC 6455 §5.3: "octet i of the transformed data is the XOR of octet i of the original
    # data with octet at index i modulo 4 of the masking key".
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert unmask(data, key) == expected
    cut = min(cut, len(data))
    assert unmask(data[:cut], key) + unmask(data[cut:], key, cut) == expected
    assert unmask(unmask(data, key), key) == data


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_close_codes_allowed_on_the_wire(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535]
)
def test_close_codes_refused_on_the_wire(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(LocalProtocolError):
        build_close_payload(code)
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(code.to_bytes(2, "big"))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_close_payload_is_code_then_utf8_reason() -> None:
    assert build_close_payload(1000, "bye") == b"\x03\xe8bye"
    assert build_close_payload(None) == b""
    assert parse_close_payload(b"\x03\xe8bye") == (1000, "bye")
    assert parse_close_payload(b"\x0f\xa0\xc3\xa9") == (4000, "é")


def test_empty_close_payload_reports_1005() -> None:
    assert parse_close_payload(b"") == (1005, "")


def test_close_payload_of_one_byte_is_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002


def test_close_reason_that_is_not_utf8_is_invalid_data() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03\xe8\xff")
    assert info.value.code == 1007


def test_close_reason_longer_than_123_bytes_is_refused() -> None:
    assert len(build_close_payload(1000, "x" * 123)) == 125
    with pytest.raises(LocalProtocolError):
        build_close_payload(1000, "x" * 124)
    with pytest.raises(LocalProtocolError):
        build_close_payload(1000, "é" * 62)


def test_reason_without_code_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        build_close_payload(None, "why")
