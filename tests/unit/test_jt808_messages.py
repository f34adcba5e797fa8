"""JT/T 808 bodies and vendor profiles against bodies written by hand from the standard's tables.

Location: table 23 (basic information), 24 (alarm), 25 (status), 26-27 (additional items); batch
0x0704: table 93; register 0x0100: table 8 (2013) / its 2019 widths; authentication 0x0102:
table 10 (2019: code length, code, IMEI, software version); replies 0x8001 (table 4) and 0x8100
(table 9).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.devices.jt808 import messages as m
from edge.devices.jt808.profile import ProfileError, load_profile, read

from .test_jt808_codec import LOC_BODY

LOC = bytes.fromhex(LOC_BODY)


def test_location_fields() -> None:
    loc = m.decode_location(LOC)
    assert isinstance(loc, m.Location), loc
    assert (loc.alarm, loc.status) == (0, 0x303)
    assert (loc.lat, loc.lon) == (24.326, 109.428)
    assert (loc.altitude_m, loc.speed_kmh, loc.direction_deg) == (90, 12.6, 125)
    assert loc.ts == datetime(2026, 12, 7, 12, 30, 0, tzinfo=UTC)  # 20:30 GMT+8
    assert loc.positioned and loc.acc_on
    assert loc.mileage_km == 123.4
    assert loc.dword(m.ITEM_EXT_SIGNAL) == 1 << 16
    assert loc.items[m.ITEM_IO] == b"\x00\x00"
    assert loc.items[m.ITEM_SIGNAL] == b"\x19" and loc.items[m.ITEM_SATELLITES] == b"\x0c"


def test_south_and_west_come_from_status_bits_2_and_3() -> None:
    body = bytearray(LOC)
    body[4:8] = bytes.fromhex("0000030f")  # + bit 2 south, bit 3 west
    loc = m.decode_location(bytes(body))
    assert isinstance(loc, m.Location) and (loc.lat, loc.lon) == (-24.326, -109.428)


@pytest.mark.parametrize(("patch", "reason"), [
    ((8, "05f5e101"), "out of range"),  # latitude 100.000001
    ((20, "0168"), "direction 360 out of 0-359"),
    ((22, "261307203000"), "month must be in 1..12"),
    ((22, "2612072030aa"), "time is not BCD"),
])
def test_bad_basic_fields(patch: tuple[int, str], reason: str) -> None:
    at, value = patch
    body = bytearray(LOC)
    raw = bytes.fromhex(value)
    body[at : at + len(raw)] = raw
    result = m.decode_location(bytes(body))
    assert isinstance(result, m.BodyError) and reason in result.reason, result


def test_bad_additional_items() -> None:
    basic = LOC[:28]
    cases = {
        basic + bytes.fromhex("0103000001"): "0x01 has 3 bytes, the standard says 4",
        basic + bytes.fromhex("2504000100"): "0x25 of 4 bytes runs past the body",
        basic + bytes.fromhex("30"): "torn",
        basic[:20]: "need at least 28",
    }
    for body, reason in cases.items():
        result = m.decode_location(body)
        assert isinstance(result, m.BodyError) and reason in result.reason, (reason, result)
    unknown = m.decode_location(basic + bytes.fromhex("e3020102"))  # a private item is kept raw
    assert isinstance(unknown, m.Location) and unknown.items == {0xE3: b"\x01\x02"}


def test_batch_blind_area_backfill() -> None:
    second = bytearray(LOC[:28])
    second[22:28] = bytes.fromhex("261207203030")  # 30 s later
    body = bytes.fromhex("0002" "01") + bytes.fromhex("0032") + LOC + bytes.fromhex("001c") + bytes(second)
    batch = m.decode_batch(body)
    assert isinstance(batch, m.Batch), batch
    assert batch.backfill and not batch.errors
    assert [loc.ts.second for loc in batch.locations] == [0, 30]


def test_a_bad_batch_item_is_reported_and_the_others_kept() -> None:
    body = bytes.fromhex("0002" "00") + bytes.fromhex("0005") + b"\x00" * 5 + bytes.fromhex("0032") + LOC
    batch = m.decode_batch(body)
    assert isinstance(batch, m.Batch) and not batch.backfill
    assert len(batch.locations) == 1
    assert batch.errors == ["item 0: location body of 5 bytes, need at least 28"]
    for bad, reason in ((bytes.fromhex("0003 00 0032".replace(" ", "")) + LOC, "ends after 1"),
                        (bytes.fromhex("0001 02 0000".replace(" ", "")), "batch type 2"),
                        (bytes.fromhex("0001 00 0032".replace(" ", "")) + LOC + b"\x00", "1 bytes over")):
        result = m.decode_batch(bad)
        assert isinstance(result, m.BodyError) and reason in result.reason, (reason, result)


def test_register_2013_and_2019() -> None:
    plate = "桂B12345".encode("gbk")
    assert plate == bytes.fromhex("b9f0423132333435")
    body13 = bytes.fromhex("002d00c8") + b"WSTST" + b"M1".ljust(20, b"\0") + b"T000001" + b"\x02" + plate
    reg = m.decode_register(body13, is_2019=False)
    assert isinstance(reg, m.Registration)
    assert (reg.province, reg.city, reg.maker, reg.model, reg.terminal_id, reg.plate_colour, reg.plate) == (
        45, 200, "WSTST", "M1", "T000001", 2, "桂B12345")
    body19 = (bytes.fromhex("002d00c8") + b"WSTST".ljust(11, b"\0") + b"M1".ljust(30, b"\0")
              + b"T000001".ljust(30, b"\0") + b"\x02" + plate)
    reg19 = m.decode_register(body19, is_2019=True)
    assert isinstance(reg19, m.Registration) and (reg19.maker, reg19.terminal_id, reg19.plate) == (
        "WSTST", "T000001", "桂B12345")
    short = m.decode_register(body13[:30], is_2019=False)
    assert isinstance(short, m.BodyError) and "need at least 37" in short.reason


def test_authentication_2013_and_2019() -> None:
    auth = m.decode_auth(b"abcd1234", is_2019=False)
    assert isinstance(auth, m.Authentication) and auth.code == "abcd1234"
    body19 = bytes.fromhex("08" "6162636431323334" "383630303030303030303030303031"
                           "56312e322e33" + "00" * 14)
    auth19 = m.decode_auth(body19, is_2019=True)
    assert isinstance(auth19, m.Authentication)
    assert (auth19.code, auth19.imei, auth19.software) == ("abcd1234", "860000000000001", "V1.2.3")
    assert isinstance(m.decode_auth(body19[:20], is_2019=True), m.BodyError)
    assert isinstance(m.decode_auth(b"", is_2019=False), m.BodyError)


def test_platform_replies() -> None:
    assert m.general_reply(7, 0x0200, m.OK) == bytes.fromhex("0007" "0200" "00")
    assert m.general_reply(9, 0x0704, m.BAD_MESSAGE) == bytes.fromhex("0009" "0704" "02")
    assert m.register_reply(1, m.REG_OK, "abc") == bytes.fromhex("0001" "00" "616263")
    assert m.register_reply(1, m.REG_NO_TERMINAL, "abc") == bytes.fromhex("0001" "04")  # no code unless 0


def test_our_location_encoder_writes_the_hand_body() -> None:
    loc = m.decode_location(LOC)
    assert isinstance(loc, m.Location)
    assert m.encode_location(loc) == LOC


# ---------------------------------------------------------------------------------------- profiles


def test_the_shipped_profiles_read_load_cover_and_bed() -> None:
    loc = m.decode_location(LOC)
    assert isinstance(loc, m.Location)
    ext = read(load_profile("ext-signal"), loc)  # 0x25 bit 16 set: cover closed; bit 17 clear: bed down
    assert (ext.load, ext.cover_closed, ext.bed_raised, ext.load_kg) == ("full", True, False, None)
    word = read(load_profile("status-word"), loc)  # status bit 28 clear = cover closed (an "open" contact)
    assert (word.load, word.cover_closed, word.bed_raised, word.load_kg) == ("full", True, False, None)
    body = bytearray(LOC)
    body[4:8] = (0x303 & ~0x300 | 0x100 | 1 << 28 | 1 << 29).to_bytes(4, "big")  # half, open, raised
    loaded = m.decode_location(bytes(body) + bytes.fromhex("e304000003e8"))  # 0xE3: 1000 x 10 kg
    assert isinstance(loaded, m.Location)
    word = read(load_profile("status-word"), loaded)
    assert (word.load, word.cover_closed, word.bed_raised, word.load_kg) == ("half", False, True, 10_000.0)
    no_item = read(load_profile("ext-signal"), m.decode_location(LOC[:28]))  # type: ignore[arg-type]
    assert (no_item.cover_closed, no_item.bed_raised) == (None, None)  # unknown, not "open"


@pytest.mark.parametrize(("text", "reason"), [
    ("cover_closed: {word: io, bit: 20}\nbed_raised: {word: io, bit: 3}", "outside the 16-bit io word"),
    ("cover_closed: {word: ext_signal, bit: 16}\nbed_raised: {word: ext_signal, bit: 16}",
     "already cover_closed"),
    ("cover_closed: {word: status, bit: 1}\nbed_raised: {word: status, bit: 29}", "the standard's own"),
    ("cover_closed: {word: status, bit: 9}\nbed_raised: {word: status, bit: 29}",
     "load: status bit 9 is also"),
    ("cover_closed: {word: gpio, bit: 1}\nbed_raised: {word: status, bit: 29}", "cover_closed.word"),
    ("cover_closed: {word: io, bit: 1}\nbed_raised: {word: io, bit: 2}\nload: {values: {4: full}}",
     "not a 2-bit"),
    ("cover_closed: {word: io, bit: 1}\nbed_raised: {word: io, bit: 2}\nlid: 1", "unknown field `lid`"),
])
def test_a_bad_profile_is_refused_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "vendor.yaml"
    path.write_text("name: vendor\n" + text + "\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=reason) as info:
        load_profile(str(path))
    assert str(path) in str(info.value)


def test_an_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="shipped: ext-signal, status-word"):
        load_profile("no-such-vendor")
