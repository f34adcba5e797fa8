"""Issue 11, findings 8 and 9 at the contract: text, household, integer and topic-kind rules.

Every case is an input a careless vendor or an attacker sent; each is refused at decode with a
reason naming the field, and the legitimate look-alikes (real Chinese plates, the edge's own
pseudonyms and status topics) still pass.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from contract import ContractError, decode, encode
from contract.events import (
    Alert,
    Deposit,
    DeviceState,
    DeviceStatus,
    Direction,
    Severity,
    TruckTelemetry,
    Verdict,
    VerdictSource,
    WasteCategory,
    Weighing,
)
from contract.jsonschema import contract_schema
from contract.text import FORBIDDEN, printable
from contract.topics import DEVICE_KINDS, KIND_EVENTS, TopicError, mqtt_topic, parse_mqtt_topic
from edge.devices.sorting_station.pseudonym import ANONYMOUS, Pseudonymiser, generate_key
from edge.mqtt_session import agent_device_id
from stream.validation import Rejection, Routed, validate

TS = datetime(2026, 11, 27, 0, 30, tzinfo=UTC)
BASES: dict[str, Any] = {
    "weighing": Weighing(msg_id="wb-1:1764201600:7", device_id="wb-1", site_id="lz", ts=TS, ticket_id="T7",
                         plate="桂B12345", direction=Direction.INBOUND, gross_kg=30000.0, tare_kg=12000.0,
                         net_kg=18000.0, category=WasteCategory.KITCHEN, origin="d-3"),
    "truck_telemetry": TruckTelemetry(msg_id="tr-3:1:9", device_id="tr-3", site_id="fleet", ts=TS,
                                      plate="桂B66666", lat=24.3, lon=109.4, speed_kmh=35.0, lid_closed=True,
                                      bed_raised=False, load_kg=14000.0, ignition=True),
    "deposit": Deposit(msg_id="ss-9:1:42", device_id="ss-9", site_id="c-1", ts=TS, community_id="c-1",
                       bin=WasteCategory.RECYCLABLE, kg=1.5, household="a1b2c3d4e5f6a7b8",
                       verdict=Verdict.CORRECT, verdict_source=VerdictSource.CAMERA),
    "device_status": DeviceStatus(msg_id="wb-1:1764201600:8", device_id="wb-1", site_id="lz", ts=TS,
                                  state=DeviceState.OFFLINE, outbox_depth=3, last_error="read timeout"),
    "alert": Alert(msg_id="device_offline:0123456789abcdef", device_id="wb-1", site_id="lz", ts=TS,
                   alert_id="device_offline:0123456789abcdef", kind="device_offline",
                   severity=Severity.WARNING, subject="桂B12345", summary="设备离线 10 分钟",
                   evidence=("wb-1:1764201600:8",)),
}


def payload(event: str, **changes: Any) -> bytes:
    message = json.loads(encode(BASES[event]))
    message.update(changes)
    return json.dumps(message, ensure_ascii=False).encode()


@pytest.mark.parametrize("event", sorted(BASES))
def test_the_bases_are_valid(event: str) -> None:
    assert decode(payload(event)) == BASES[event]


BAD_TEXT = {
    "ESC": "桂B\x1b[2J1",
    "NUL": "桂B\x00123",
    "newline": "桂B12345\n",
    "CR": "桂B1\r2345",
    "RLO U+202E": "\u202e54321B桂",
    "LRI U+2066": "桂B\u206612345",
    "ALM U+061C": "桂B\u061c12345",
    "zero-width space": "桂B\u200b12345",
    "tag character": "桂B\U000e004112345",
    "all spaces": "    ",
    "ideographic spaces": "\u3000\u3000",
    "Hangul fillers": "\u3164\u3164",
}
TEXT_FIELDS = [("weighing", "plate"), ("truck_telemetry", "plate"), ("device_status", "last_error"),
               ("alert", "subject"), ("alert", "summary")]


@pytest.mark.parametrize(("event", "field"), TEXT_FIELDS)
@pytest.mark.parametrize("value", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_control_bidi_format_and_blank_text_is_rejected(event: str, field: str, value: str) -> None:
    with pytest.raises(ContractError, match=rf"matching regex \w+ .* at `\$\.{field}`"):
        decode(payload(event, **{field: value}))


@pytest.mark.parametrize(("event", "field", "value"), [
    ("weighing", "plate", "[x](http://e.cn)"),  # a link in DingTalk/WeCom markdown
    ("weighing", "plate", "![x](http://a.b)"),
    ("weighing", "plate", "# 桂B12345"),
    ("weighing", "plate", "桂B12345 "),  # another truck to the double-weighing check
    ("weighing", "plate", " 桂B12345"),
    ("weighing", "plate", "·"),
    ("weighing", "ticket_id", "T7\n"),  # Python's `$` matched before a final newline
    ("weighing", "device_id", "wb-1\n"),
    ("weighing", "origin", "d-3\n"),
    ("weighing", "msg_id", "wb-1:1764201600:7\n"),
    ("weighing", "msg_id", "wb-1:\u202e1:7"),
    ("alert", "kind", "device_offline\n"),
    ("alert", "evidence", ["wb-1:1:8\n"]),
])
def test_markup_padding_and_trailing_newlines_are_rejected(event: str, field: str, value: Any) -> None:
    with pytest.raises(ContractError, match="matching regex"):
        decode(payload(event, **{field: value}))


@pytest.mark.parametrize("plate", [
    "桂B12345", "粤A·D1234", "粤AD12345", "粤A12345D", "桂B1234警", "桂B1234学", "桂B1234挂", "沪A1234领",
    "使014578", "粤Z1234港", "粤Z1234澳", "WJ桂12345", "京A·F0236", "桂B 12345", "桂B-12345",
    "粤Ａ１２３４５", "无牌", "UNKNOWN", "P1",
])
def test_real_chinese_plates_pass(plate: str) -> None:
    for event in ("weighing", "truck_telemetry"):
        assert decode(payload(event, plate=plate)).plate == plate  # type: ignore[union-attr]


@pytest.mark.parametrize("depth", [2**63, 2**70, -1])
def test_outbox_depth_beyond_int64_is_rejected(depth: int) -> None:
    with pytest.raises(ContractError, match="outbox_depth"):
        decode(payload("device_status", outbox_depth=depth))


def test_outbox_depth_up_to_int64_passes() -> None:
    assert decode(payload("device_status", outbox_depth=2**63 - 1)).outbox_depth == 2**63 - 1  # type: ignore[union-attr]


@pytest.mark.parametrize("household", [
    "LZ-CZ-000123",  # the sim's raw card id (finding 8)
    "LZ-CZ-000123-ABCD",
    "04A1B2C3D4E5F6",  # a 7-byte Mifare UID
    "A1B2C3D4E5F6A7B8",  # upper case: not the edge's hexdigest()
    "a1b2c3d4e5f6",  # 12 hex chars
    "a1b2c3d4e5f6a7b8c",  # 17
    "a1b2c3d4e5f6a7b8\n",
    "Anonymous",
    "",
])
def test_a_household_that_is_not_an_edge_pseudonym_is_rejected(household: str) -> None:
    with pytest.raises(ContractError, match=r"PSEUDONYM .* at `\$\.household`"):
        decode(payload("deposit", household=household))


def test_the_edges_pseudonyms_pass() -> None:
    pseudonymise = Pseudonymiser(generate_key().encode())
    for raw in ("LZ-CZ-000123", "04A1B2C3D4E5F6", ""):
        household = pseudonymise(raw)
        assert decode(payload("deposit", household=household)).household == household  # type: ignore[union-attr]
    assert pseudonymise("") == ANONYMOUS


@pytest.mark.parametrize("kind", DEVICE_KINDS)
@pytest.mark.parametrize("event", ["weighing", "deposit", "bin_level", "truck_telemetry", "device_status"])
def test_a_topic_kind_may_carry_only_its_events(kind: str, event: str) -> None:
    topic = mqtt_topic("lz", kind, "wb1", event)
    if event in KIND_EVENTS[kind]:
        assert parse_mqtt_topic(topic).event == event
    else:
        with pytest.raises(TopicError, match=f"a {kind} does not publish {event}"):
            parse_mqtt_topic(topic)


def test_a_weighing_on_a_truck_topic_goes_to_the_dead_letter_with_a_reason() -> None:
    result = validate("ws/v1/lz/truck/wb-1/weighing", payload("weighing"))
    assert isinstance(result, Rejection) and "a truck does not publish weighing" in result.reason
    assert isinstance(validate("ws/v1/lz/weighbridge/wb-1/weighing", payload("weighing")), Routed)


@pytest.mark.parametrize("kind", DEVICE_KINDS)
def test_the_edge_agents_own_status_topic_is_accepted_under_every_kind(kind: str) -> None:
    """The agent reports `{site}-edge` under its first device's kind (edge/agent.py)."""
    device = agent_device_id("lz")
    status = DeviceStatus(msg_id=f"{device}:1764201600:1", device_id=device, site_id="lz", ts=TS,
                          state=DeviceState.ONLINE)
    assert isinstance(validate(mqtt_topic("lz", kind, device, "device_status"), encode(status)), Routed)


def test_forbidden_covers_every_control_format_separator_and_surrogate_code_point() -> None:
    forbidden = re.compile(f"[{FORBIDDEN}]")
    categories = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    missed = [f"U+{cp:04X}" for cp in range(sys.maxunicode + 1)
              if unicodedata.category(chr(cp)) in categories and not forbidden.match(chr(cp))]
    assert not missed, f"{missed} (Unicode {unicodedata.unidata_version}): add to contract.text.FORBIDDEN"
    assert not forbidden.search("桂B·D1234 粤Ａ 無牌 ü é ß ۱۲۳ 😀 \u3000")


@pytest.mark.parametrize(("raw", "shown"), [
    ("SerialException: read failed\nat port /dev/ttyS0", "SerialException: read failed\\nat port /dev/ttyS0"),
    ("card \x00\x1b[31m", "card \\x00\\x1b[31m"),
    ("\u202eevil", "\\u202eevil"),
    ("   ", "?"),
    ("", "?"),
])
def test_printable_makes_an_edge_error_text_acceptable(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    status = payload("device_status", last_error=printable(raw))
    assert decode(status).last_error == shown  # type: ignore[union-attr]


def test_printable_keeps_within_the_limit() -> None:
    assert len(printable("\n" * 500, limit=300)) == 300


def test_the_json_schema_states_the_rules_in_ecma_262() -> None:
    """Vendors validate with JSON Schema tools (ECMA-262 regexes, `u` flag): no Python-only `\\Z`
    or `\\U0001xxxx`; the same rules as the decoder (checked with node's RegExp when written)."""
    defs = contract_schema()["$defs"]
    patterns = {name: props["pattern"] for d in defs.values()
                for name, props in d.get("properties", {}).items() if "pattern" in props}
    assert {"plate", "household", "subject", "summary", "ticket_id", "device_id", "msg_id"} <= set(patterns)
    for pattern in patterns.values():
        assert "\\Z" not in pattern and "\\U" not in pattern and pattern.endswith("$")
    assert "anyOf" in defs["DeviceStatus"]["properties"]["last_error"]
    assert defs["DeviceStatus"]["properties"]["outbox_depth"]["maximum"] == 2**63 - 1
