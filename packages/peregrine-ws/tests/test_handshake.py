"""The opening handshake, server side (RFC 6455 §4.2), against Request/Response objects."""

from __future__ import annotations

import pytest

from peregrine_core import LocalProtocolError, Request, Response
from peregrine_ws import DeflateConfig, accept_key, upgrade
from peregrine_ws._handshake import Handshake

from conftest import ws_request


def accepted(req: Request, **kwargs: object) -> Response:
    resp = Response()
    assert upgrade(req, resp, **kwargs) is True  # type: ignore[arg-type]
    assert resp.status == 101
    assert resp.upgrade_protocol == "websocket"
    return resp


def refused(req: Request, status: int, **kwargs: object) -> Response:
    resp = Response()
    assert upgrade(req, resp, **kwargs) is False  # type: ignore[arg-type]
    assert resp.status == status
    assert resp.upgrade_protocol is None
    assert resp.body  # a short explanation
    assert resp.get_header("Sec-WebSocket-Accept") is None
    return resp


def test_accept_key_matches_the_rfc_example() -> None:
    # RFC 6455 §1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_handshake_is_upgraded_with_the_accept_header() -> None:
    resp = accepted(ws_request())
    assert resp.get_header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert resp.get_header("Sec-WebSocket-Protocol") is None
    assert resp.get_header("Sec-WebSocket-Extensions") is None
    assert resp.body == b""


def test_header_values_are_token_lists_compared_case_insensitively() -> None:
    req = ws_request(
        ("Upgrade", "h2c, WebSocket"),
        ("Connection", "keep-alive, UPGRADE"),
        ("Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== "),
    )
    accepted(req)


def test_upgrade_and_connection_tokens_may_come_in_several_fields() -> None:
    req = ws_request(("Connection", "keep-alive"), ("Upgrade", "websocket"))
    req.headers.append(("Connection", "Upgrade"))
    accepted(req)


def test_method_other_than_get_gets_405() -> None:
    req = ws_request()
    req.method = "POST"
    resp = refused(req, 405)
    assert resp.get_header("Allow") == "GET"


def test_http_1_0_gets_400() -> None:
    req = ws_request()
    req.version = "HTTP/1.0"
    refused(req, 400)


@pytest.mark.parametrize(
    "header",
    [
        ("Upgrade", "h2c"),
        ("Upgrade", ""),
        ("Connection", "keep-alive"),
        ("Connection", "upgrades"),
        ("Sec-WebSocket-Key", ""),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"),  # missing padding
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==="),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE="),  # 17 bytes
        ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"),  # 15 bytes
        ("Sec-WebSocket-Key", "dGhlIHNh*XBsZSBub25jZQ=="),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBs ZSBub25jZQ=="),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==é"),
        ("Host", ""),
    ],
)
def test_invalid_handshake_gets_400(header: tuple[str, str]) -> None:
    refused(ws_request(header), 400)


def test_missing_headers_get_400() -> None:
    for name in ("Upgrade", "Connection", "Sec-WebSocket-Key", "Host"):
        req = ws_request()
        req.headers = [h for h in req.headers if h[0] != name]
        refused(req, 400)


def test_two_keys_get_400() -> None:
    req = ws_request()
    req.headers.append(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
    refused(req, 400)


@pytest.mark.parametrize("version", ["8", "14", "", "13, 8"])
def test_unsupported_version_gets_426_naming_version_13(version: str) -> None:
    resp = refused(ws_request(("Sec-WebSocket-Version", version)), 426)
    assert resp.get_header("Sec-WebSocket-Version") == "13"
    assert resp.get_header("Upgrade") == "websocket"


def test_missing_version_gets_426() -> None:
    req = ws_request()
    req.headers = [h for h in req.headers if h[0] != "Sec-WebSocket-Version"]
    refused(req, 426)


def test_subprotocol_is_the_first_of_ours_the_client_offered() -> None:
    req = ws_request(("Sec-WebSocket-Protocol", "v1.chat, v2.chat"))
    resp = accepted(req, subprotocols=["v2.chat", "v1.chat"])
    assert resp.get_header("Sec-WebSocket-Protocol") == "v2.chat"
    assert agreed_by(resp).subprotocol == "v2.chat"


def test_no_common_subprotocol_means_none() -> None:
    req = ws_request(("Sec-WebSocket-Protocol", "mqtt"))
    resp = accepted(req, subprotocols=["chat"])
    assert resp.get_header("Sec-WebSocket-Protocol") is None
    assert agreed_by(resp).subprotocol is None


def test_subprotocol_selector_gets_the_offers_in_order() -> None:
    seen: list[list[str]] = []

    def pick(offers: list[str]) -> str | None:
        seen.append(offers)
        return offers[-1]

    req = ws_request(("Sec-WebSocket-Protocol", "a, b"))
    req.headers.append(("sec-websocket-protocol", "c"))
    resp = accepted(req, subprotocols=pick)
    assert seen == [["a", "b", "c"]]
    assert resp.get_header("Sec-WebSocket-Protocol") == "c"


def test_selector_choosing_an_unoffered_subprotocol_is_a_bug() -> None:
    with pytest.raises(LocalProtocolError):
        upgrade(ws_request(), Response(), subprotocols=lambda offers: "mine")


def test_origin_in_the_allowed_list_is_accepted_case_insensitively() -> None:
    accepted(ws_request(("Origin", "https://Example.com")), origins=["https://example.com"])


def test_origin_not_allowed_gets_403() -> None:
    refused(ws_request(("Origin", "https://evil.test")), 403, origins=["https://example.com"])


def test_missing_origin_is_accepted_only_when_none_is_listed() -> None:
    refused(ws_request(), 403, origins=["https://example.com"])
    accepted(ws_request(), origins=["https://example.com", None])


def test_origin_check_function_decides() -> None:
    seen: list[str | None] = []

    def check(origin: str | None) -> bool:
        seen.append(origin)
        return origin == "https://ok.test"

    accepted(ws_request(("Origin", "https://ok.test")), origins=check)
    refused(ws_request(("Origin", "https://no.test")), 403, origins=check)
    assert seen == ["https://ok.test", "https://no.test"]


def test_deflate_is_negotiated_only_when_enabled() -> None:
    offer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
    req = ws_request(offer)
    resp = accepted(req)
    assert resp.get_header("Sec-WebSocket-Extensions") is None
    assert agreed_by(resp).deflate is None
    req = ws_request(offer)
    resp = accepted(req, deflate=DeflateConfig())
    assert resp.get_header("Sec-WebSocket-Extensions") == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    agreed = agreed_by(resp).deflate
    assert agreed is not None
    assert agreed.client_max_window_bits == 12


def test_malformed_extensions_get_400_when_deflate_is_enabled() -> None:
    req = ws_request(("Sec-WebSocket-Extensions", "permessage-deflate;;"))
    refused(req, 400, deflate=DeflateConfig())
    accepted(ws_request(("Sec-WebSocket-Extensions", "permessage-deflate;;")))


def test_the_agreed_handshake_travels_with_the_101_response() -> None:
    resp = accepted(ws_request(("Sec-WebSocket-Protocol", "chat")), subprotocols=["chat"])
    assert resp.upgrade_protocol == "websocket"
    assert agreed_by(resp).subprotocol == "chat"
    assert agreed_by(accepted(ws_request())).subprotocol is None


def test_request_body_is_left_to_the_handler() -> None:
    # The core has read the whole body before the handler runs; upgrading keeps it there.
    req = ws_request(("Content-Length", "5"))
    req.body = b"hello"
    accepted(req)
    assert req.body == b"hello"


def agreed_by(resp: Response) -> Handshake:
    """What the handshake handed to the server with the 101."""
    assert isinstance(resp.upgrade_state, Handshake)
    return resp.upgrade_state
