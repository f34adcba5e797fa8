"""Properties of the contract codec, the topic parser and the bridge's gate.

Valid messages are built by hypothesis within the contract's own bounds (msgspec's Meta limits
are invisible to `from_type`, so the strategies spell them out); every one must encode, decode to
an equal struct and be routed on its own topic. Arbitrary bytes, JSON and topics must give a
reason, never an exception.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import encode
from contract.codec import MAX_PAYLOAD_BYTES, TS_MAX, TS_MIN, ContractError, decode
from contract.events import (
    EVENT_TYPES,
    Alert,
    AlertState,
    BinLevel,
    Deposit,
    DeviceState,
    DeviceStatus,
    Direction,
    Envelope,
    Severity,
    TareSource,
    TruckTelemetry,
    Verdict,
    VerdictSource,
    WasteCategory,
    Weighing,
    WeighingFlag,
)
from contract.msgid import device_key
from contract.topics import KIND_EVENTS, TopicError, mqtt_topic, parse_mqtt_topic
from stream.validation import Rejection, Routed, validate

FAST = settings(max_examples=150, deadline=None)
IDENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
KIND = {"weighing": "weighbridge", "device_status": "weighbridge", "deposit": "sorting_station",
        "bin_level": "sorting_station", "truck_telemetry": "truck"}

idents = st.text(alphabet=IDENT_CHARS, min_size=1, max_size=64)
PLATE_CHARS = st.sampled_from("0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcz") | st.characters(
    min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.characters(min_codepoint=0xFF21, max_codepoint=0xFF3A)
plate_parts = st.text(PLATE_CHARS, min_size=1, max_size=7)
plates = plate_parts | st.builds(lambda a, sep, b: a + sep + b, plate_parts, st.sampled_from("· -・•"),
                                 plate_parts)
"""Plates as GA 36-2018 writes them (桂B12345, 粤A·D1234, 使014578...), separators only inside."""
households = st.just("anonymous") | st.text("0123456789abcdef", min_size=16, max_size=16)


def visible(text: str) -> bool:
    """Not only blanks: whitespace, the Hangul fillers and the Braille blank (contract.text.BLANK)."""
    return not all(c.isspace() or c in "\u115f\u1160\u3164\uffa0\u2800" for c in text)


printable = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1,
                    max_size=200).filter(visible)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2199, 1, 1), timezones=offsets)


def kg(hi: float) -> st.SearchStrategy[float]:
    return st.floats(0, hi, allow_nan=False)


@st.composite
def envelope(draw: st.DrawFn) -> dict[str, Any]:
    device = draw(idents)
    epoch, seq = draw(st.integers(0, 1_700_000_000)), draw(st.integers(0, 10**15 - 1))  # epoch: not after now
    msg_id = f"{device}:{epoch}:{seq}"
    return dict(msg_id=msg_id, device_id=device, site_id=draw(idents), ts=draw(times))


@st.composite
def weighings(draw: st.DrawFn) -> Weighing:
    gross = draw(kg(200_000))
    tare = draw(st.floats(0, gross))
    return Weighing(
        **draw(envelope()), ticket_id=draw(idents), plate=draw(plates),
        direction=draw(st.sampled_from(Direction)),
        gross_kg=gross, tare_kg=tare, net_kg=gross - tare, category=draw(st.sampled_from(WasteCategory)),
        origin=draw(idents), tare_source=draw(st.sampled_from(TareSource)), stable=draw(st.booleans()),
        flags=tuple(draw(st.lists(st.sampled_from(WeighingFlag), max_size=6))),
    )


def _build(cls: type[Envelope], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Envelope]:
    return st.builds(lambda env, **kw: cls(**env, **kw), envelope(), **fields)


events: st.SearchStrategy[Envelope] = st.one_of(
    weighings(),
    _build(Deposit, community_id=idents, bin=st.sampled_from(WasteCategory), kg=kg(500),
           household=households, verdict=st.sampled_from(Verdict),
           verdict_source=st.sampled_from(VerdictSource)),
    _build(BinLevel, community_id=idents, bin=st.sampled_from(WasteCategory), fill_pct=kg(100)),
    _build(TruckTelemetry, plate=plates, lat=st.floats(-90, 90), lon=st.floats(-180, 180),
           speed_kmh=kg(200), lid_closed=st.booleans(), bed_raised=st.booleans(), load_kg=kg(200_000),
           ignition=st.booleans(), heading_deg=st.floats(0, 360, exclude_max=True), gps_fix=st.booleans()),
    _build(DeviceStatus, state=st.sampled_from(DeviceState), outbox_depth=st.integers(0, 2**63 - 1),
           last_error=st.none() | printable, clock_offset_s=st.none() | st.floats(-1e9, 1e9)),
)


alerts: st.SearchStrategy[Envelope] = _build(
    Alert, alert_id=idents.map(lambda k: f"{k}:0123456789abcdef"), kind=idents,
    severity=st.sampled_from(Severity), subject=printable.map(lambda t: t[:64]).filter(visible),
    summary=printable, evidence=st.lists(envelope().map(lambda e: e["msg_id"]), max_size=20).map(tuple),
    lat=st.none() | st.floats(-90, 90), lon=st.none() | st.floats(-180, 180),
    state=st.sampled_from(AlertState))

FORBIDDEN = st.sampled_from(["\x1b", "\x00", "\n", "\r", "\t", "\x7f", "\x85", "\u200b", "\u200e",
                             "\u200f", "\u202a", "\u202e", "\u2066", "\u2069", "\u061c", "\u2028", "\ufeff",
                             "\U000e0041"])


def topic_of(event: Envelope) -> str:
    return mqtt_topic(event.site_id, KIND[event.event], event.device_id, event.event)


# --- nothing valid rejected, exact round trip ------------------------------------------------


@FAST
@given(events)
def test_every_valid_event_round_trips_and_is_routed(event: Envelope) -> None:
    payload = encode(event)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    back = decode(payload)
    assert back == event and type(back) is type(event)
    assert decode(payload, type(event)) == event
    routed = validate(topic_of(event), payload)
    assert isinstance(routed, Routed), routed
    assert routed.key == device_key(event.site_id, event.device_id).encode() and routed.payload is payload


@FAST
@given(alerts)
def test_every_valid_alert_round_trips(alert: Envelope) -> None:
    assert decode(encode(alert), Alert) == alert


@FAST
@given(events | alerts, st.data())
def test_a_control_format_or_bidi_character_in_any_text_field_is_rejected(event: Envelope,
                                                                          data: st.DataObject) -> None:
    """Whichever string field (plate, subject, summary, last_error, ids...) and wherever in it."""
    message = json.loads(encode(event))
    if isinstance(event, DeviceStatus) and event.last_error is None:
        message["last_error"] = "read timeout"
    field = data.draw(st.sampled_from(sorted(k for k, v in message.items() if isinstance(v, str))))
    at = data.draw(st.integers(0, len(message[field])))
    message[field] = message[field][:at] + data.draw(FORBIDDEN) + message[field][at:]
    payload = json.dumps(message).encode()
    try:
        decode(payload)
    except ContractError as exc:
        assert "invalid message" in str(exc)
    else:
        raise AssertionError(f"{field}={message[field]!r} accepted")
    if event.event != "alert":
        assert isinstance(validate(topic_of(event), payload), Rejection)


@FAST
@given(events, st.sampled_from([(k, e) for k in KIND_EVENTS for e in EVENT_TYPES
                                if e != "alert" and e not in KIND_EVENTS[k]]))
def test_an_event_on_a_topic_of_a_kind_that_does_not_publish_it_is_rejected(
        event: Envelope, kind_event: tuple[str, str]) -> None:
    kind, topic_event = kind_event
    result = validate(mqtt_topic(event.site_id, kind, event.device_id, topic_event), encode(event))
    assert isinstance(result, Rejection) and f"a {kind} does not publish {topic_event}" in result.reason


@FAST
@given(events, idents)
def test_a_device_publishing_as_another_is_always_rejected(event: Envelope, other: str) -> None:
    spoofed = mqtt_topic(event.site_id, KIND[event.event], other, event.event)
    result = validate(spoofed, encode(event))
    assert isinstance(result, Routed) is (other == event.device_id)
    if isinstance(result, Rejection):
        assert "does not match topic device" in result.reason


@FAST
@given(events, st.sampled_from(["msg_id", "device_id", "site_id", "ts", "type"]))
def test_a_missing_envelope_field_is_rejected_with_its_name(event: Envelope, field: str) -> None:
    message = json.loads(encode(event))
    del message[field]
    result = validate(topic_of(event), json.dumps(message).encode())
    assert isinstance(result, Rejection)
    assert field in result.reason or (field == "type" and "invalid message" in result.reason)


@FAST
@given(events, st.integers(2, 2**31))
def test_another_schema_version_is_rejected(event: Envelope, version: int) -> None:
    message = json.loads(encode(event))
    message["schema"] = version
    result = validate(topic_of(event), json.dumps(message).encode())
    assert isinstance(result, Rejection) and f"schema version {version}" in result.reason


@FAST
@given(events, st.one_of(
    st.datetimes(max_value=datetime(1899, 12, 30), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(2200, 1, 2), timezones=st.just(UTC)),
))
def test_a_timestamp_outside_the_storable_range_is_rejected(event: Envelope, ts: datetime) -> None:
    message = json.loads(encode(event))
    message["ts"] = ts.isoformat()
    result = validate(topic_of(event), json.dumps(message).encode())
    assert isinstance(result, Rejection) and result.reason.startswith("ts ")
    assert not TS_MIN <= ts < TS_MAX


# --- no crash, a reason for every rejection -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid message with one field replaced by any JSON value, or one extra field."""
    message = json.loads(encode(draw(events)))
    key = draw(st.sampled_from(sorted(message)) | st.text(max_size=10))
    message[key] = draw(json_values)
    return json.dumps(message).encode()


@FAST
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), mangled()),
       st.text(max_size=80))
def test_any_payload_on_any_topic_is_routed_or_rejected_with_a_reason(payload: bytes, topic: str) -> None:
    for t in (topic, "ws/v1/site-a/weighbridge/wb-1/weighing"):
        result = validate(t, payload)
        assert isinstance(result, Routed) or result.reason.strip()
    try:
        decode(payload)
    except ContractError as exc:
        assert str(exc).strip()


@FAST
@given(st.text(max_size=120))
def test_any_topic_parses_or_says_why(topic: str) -> None:
    try:
        parsed = parse_mqtt_topic(topic)
    except TopicError as exc:
        assert str(exc).strip()
    else:
        assert mqtt_topic(*parsed) == topic


@FAST
@given(idents, st.sampled_from(sorted(KIND.items())), idents)
def test_every_device_topic_round_trips(site: str, event_kind: tuple[str, str], device: str) -> None:
    event, kind = event_kind
    assert parse_mqtt_topic(mqtt_topic(site, kind, device, event)) == (site, kind, device, event)
