"""JT/T 808 framing and headers against packets written BY HAND from the standard's field tables.

Each packet below is the standard's layout, field by field (JT/T 808-2013 / -2019, section 4:
flag 0x7e, header table 2, body, XOR check code, flag; 0x7e -> 7d 02 and 0x7d -> 7d 01 after
the check code). The check codes were worked out by XOR of the unescaped header and body;
`test_hand_check_codes` re-does that XOR here independently of the code under test.
"""

from __future__ import annotations

import functools
import operator

from hypothesis import given
from hypothesis import strategies as st

from edge.devices.jt808 import codec

# 0x0200 location, 2013 header: msg id 0200, properties 0032 (body 50 bytes, no sub-package,
# no encryption, version flag 0), phone BCD[6] 013912345678, serial 0007. The body's speed is
# 0x007e (12.6 km/h) and its direction 0x007d (125 degrees): both escaped on the wire.
LOC_BODY = (
    "00000000"  # alarm word
    "00000303"  # status: ACC on (bit 0), positioned (bit 1), load full (bits 8-9 = 11)
    "01732f70"  # latitude 24.326000 N x 10^6
    "0685bd20"  # longitude 109.428000 E x 10^6
    "005a"  # altitude 90 m
    "007e"  # speed 126 x 0.1 km/h
    "007d"  # direction 125
    "261207203000"  # 2026-12-07 20:30:00 GMT+8
    "0104000004d2"  # 0x01 mileage 1234 x 0.1 km
    "250400010000"  # 0x25 extended signal word, bit 16 set
    "2a020000"  # 0x2a IO status
    "300119"  # 0x30 signal strength 25
    "31010c"  # 0x31 12 GNSS satellites
)
LOC_2013_WIRE = bytes.fromhex(
    "7e" "0200" "0032" "013912345678" "0007"
    "00000000" "00000303" "01732f70" "0685bd20" "005a" "007d02" "007d01" "261207203000"
    "0104000004d2" "250400010000" "2a020000" "300119" "31010c"
    "81" "7e")
# the same body with a 2019 header: properties 4032 (bit 14), protocol version 01,
# phone BCD[10] 00000000013912345678, serial 0008
LOC_2019_WIRE = bytes.fromhex(
    "7e" "0200" "4032" "01" "00000000013912345678" "0008"
    "00000000" "00000303" "01732f70" "0685bd20" "005a" "007d02" "007d01" "261207203000"
    "0104000004d2" "250400010000" "2a020000" "300119" "31010c"
    "cf" "7e")
# 0x0002 heartbeat, 2013: empty body, serial 0001; check 0x33
HEARTBEAT_WIRE = bytes.fromhex("7e" "0002" "0000" "013912345678" "0001" "33" "7e")


def _xor(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


def _unescaped(wire: bytes) -> bytes:
    return wire[1:-1].replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def test_hand_check_codes() -> None:
    for wire in (LOC_2013_WIRE, LOC_2019_WIRE, HEARTBEAT_WIRE):
        raw = _unescaped(wire)
        assert _xor(raw[:-1]) == raw[-1]


def test_a_2013_location_with_escapes_inside_the_body() -> None:
    [pkt] = codec.Unframer().feed(LOC_2013_WIRE)
    assert isinstance(pkt, codec.Packet), pkt
    h = pkt.header
    assert (h.msg_id, h.serial, h.phone, h.version) == (0x0200, 7, "13912345678", None)
    assert (h.total, h.encryption) == (0, 0)
    assert h.phone_bcd == bytes.fromhex("013912345678")
    assert pkt.body == bytes.fromhex(LOC_BODY)  # 7d 02 -> 7e and 7d 01 -> 7d restored
    assert pkt.body[18:22] == b"\x00\x7e\x00\x7d"


def test_a_2019_header() -> None:
    [pkt] = codec.Unframer().feed(LOC_2019_WIRE)
    assert isinstance(pkt, codec.Packet), pkt
    h = pkt.header
    assert (h.msg_id, h.serial, h.phone, h.version, h.is_2019) == (0x0200, 8, "13912345678", 1, True)
    assert h.phone_bcd == bytes.fromhex("00000000013912345678")
    assert pkt.body == bytes.fromhex(LOC_BODY)


def test_our_encoder_writes_the_hand_packets() -> None:
    body = bytes.fromhex(LOC_BODY)
    assert codec.encode(0x0200, body, phone_bcd=bytes.fromhex("013912345678"), serial=7) == LOC_2013_WIRE
    assert codec.encode(0x0200, body, phone_bcd=bytes.fromhex("00000000013912345678"), serial=8,
                        version=1) == LOC_2019_WIRE
    assert codec.encode(0x0002, b"", phone_bcd=bytes.fromhex("013912345678"), serial=1) == HEARTBEAT_WIRE


def test_a_wrong_check_code_is_discarded_and_the_next_packet_still_parses() -> None:
    bad = LOC_2013_WIRE[:-2] + b"\x80" + LOC_2013_WIRE[-1:]
    items = codec.Unframer().feed(bad + HEARTBEAT_WIRE)
    assert isinstance(items[0], codec.BadPacket)
    assert "check code mismatch: got 0x80, computed 0x81" in items[0].reason
    assert isinstance(items[1], codec.Packet) and items[1].header.msg_id == 0x0002
    assert len(items) == 2


def test_a_tcp_stream_split_across_reads() -> None:
    stream = LOC_2013_WIRE + HEARTBEAT_WIRE + LOC_2019_WIRE
    for step in (1, 2, 3, 7, 31, 64):
        unframer, out = codec.Unframer(), []
        for i in range(0, len(stream), step):
            out += unframer.feed(stream[i : i + step])
        assert [type(p) for p in out] == [codec.Packet] * 3, step
        assert [p.header.serial for p in out if isinstance(p, codec.Packet)] == [7, 1, 8]
        assert unframer.close() is None


def test_a_split_in_the_middle_of_an_escape() -> None:
    cut = LOC_2013_WIRE.index(b"\x7d\x02") + 1  # the read ends between 7d and 02
    unframer = codec.Unframer()
    assert unframer.feed(LOC_2013_WIRE[:cut]) == []
    [pkt] = unframer.feed(LOC_2013_WIRE[cut:])
    assert isinstance(pkt, codec.Packet) and pkt.body == bytes.fromhex(LOC_BODY)


def test_garbage_and_a_torn_packet_cost_only_themselves() -> None:
    torn = LOC_2013_WIRE[:30]  # the terminal lost its link mid-packet, then sent the next one
    items = codec.Unframer().feed(b"AT+CSQ\r\n" + torn + HEARTBEAT_WIRE)
    reasons = [i.reason for i in items if isinstance(i, codec.BadPacket)]
    assert len(reasons) == 2 and all(reasons)
    assert any("check code" in r or "body length" in r or "torn" in r for r in reasons)
    assert [i.header.msg_id for i in items if isinstance(i, codec.Packet)] == [0x0002]


def test_a_torn_tail_at_end_of_stream_is_reported() -> None:
    unframer = codec.Unframer()
    assert unframer.feed(LOC_2013_WIRE[:20]) == []
    tail = unframer.close()
    assert tail is not None and "torn packet at end of stream: 19 bytes" in tail.reason


def test_an_oversize_run_is_discarded_once_then_the_stream_recovers() -> None:
    unframer = codec.Unframer()
    items = unframer.feed(b"\x7e" + b"\x11" * (codec.MAX_WIRE + 10))
    items += unframer.feed(b"\x22" * 5000)  # still inside the same run: no second report
    items += unframer.feed(b"\x7e" + HEARTBEAT_WIRE)
    bad = [i for i in items if isinstance(i, codec.BadPacket)]
    assert len(bad) == 1 and bad[0].reason.startswith("oversize")
    assert [i.header.msg_id for i in items if isinstance(i, codec.Packet)] == [0x0002]


def test_bad_escape_bad_length_bad_bcd() -> None:
    cases = {
        "bad escape": bytes.fromhex("0002 0000 013912345678 0001 7d03 33".replace(" ", "")),
        "body length 1 does not match the header's 0": bytes.fromhex("0002 0000 013912345678 0001 00 33"
                                                                     .replace(" ", "")),
        "terminal phone is not BCD": bytes.fromhex("0002 0000 01391234567a 0001 31".replace(" ", "")),
        "torn packet": bytes.fromhex("0002 0000 0139".replace(" ", "")),
    }
    for reason, raw in cases.items():
        [item] = codec.Unframer().feed(b"\x7e" + raw + b"\x7e")
        assert isinstance(item, codec.BadPacket) and reason in item.reason, (reason, item)


def test_sub_package_fields() -> None:
    # 0x0704 part 2 of 3, 2013: properties 2003 (sub-package bit 13, body 3 bytes), serial 0010,
    # then total 0003, index 0002, body 0a0b0c; check worked out by hand as 0x0c
    raw = bytes.fromhex("0704" "2003" "013912345678" "0010" "0003" "0002" "0a0b0c")
    assert _xor(raw) == 0x0C
    [pkt] = codec.Unframer().feed(b"\x7e" + raw + b"\x0c\x7e")
    assert isinstance(pkt, codec.Packet), pkt
    assert (pkt.header.total, pkt.header.index, pkt.header.serial, pkt.body) == (3, 2, 16, b"\x0a\x0b\x0c")
    [bad] = codec.Unframer().feed(codec.encode(0x0704, b"x", phone_bcd=bytes(6), serial=1, total=2, index=3))
    assert isinstance(bad, codec.BadPacket) and "sub-package 3 of 2" in bad.reason


@given(st.binary(max_size=300))
def test_escape_round_trip(data: bytes) -> None:
    wire = codec.escape(data)
    assert b"\x7e" not in wire
    assert codec.unescape(wire) == data


@given(st.binary(max_size=200), st.integers(0, 0xFFFF), st.booleans())
def test_any_body_survives_the_wire(body: bytes, serial: int, v2019: bool) -> None:
    phone = bytes.fromhex("00000000013912345678" if v2019 else "013912345678")
    wire = codec.encode(0x0200, body, phone_bcd=phone, serial=serial, version=1 if v2019 else None)
    [pkt] = codec.Unframer().feed(wire)
    assert isinstance(pkt, codec.Packet) and pkt.body == body and pkt.header.serial == serial
