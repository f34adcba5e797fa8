"""The third and the configurable indicator formats, against frames written out by hand.

`st_gs` lines are written from the A&D AD-4403 manual's "Data Transmitting Format" table (8-6):
header 1 ST/US/OL, comma, header 2 GS/NT/TR, comma, 8 data characters (polarity, digits, the
decimal point; blank-filled on overflow), a 2-character unit (kg, " t", " g", lb), CR LF. The
`custom` spec is checked by describing a documented format with it: the Yaohua XK3190-A9 tF=0
frame (0x02, sign, 6 digits, decimal places digit, XOR of sign..places as two upper-case ASCII
hex digits, 0x03), whose hand-built frames the built-in parser reads the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge.config import parse_config
from edge.devices.base import Vehicle
from edge.devices.weighbridge.frames import (
    NO_UNIT,
    FieldPos,
    FrameError,
    FrameSpec,
    WeightReading,
    make_framer,
    parse_custom,
    parse_st_gs,
    parse_xk3190,
)
from edge.devices.weighbridge.workflow import WeighbridgeDevice, WeighbridgeWorkflow


def reading(item: object) -> WeightReading:
    assert isinstance(item, WeightReading), item
    return item


def error(item: object) -> FrameError:
    assert isinstance(item, FrameError), item
    return item


# --- st_gs ------------------------------------------------------------------------------------

def test_st_gs_lines_read_as_the_manual_says() -> None:
    stable = reading(parse_st_gs(b"ST,GS,+0012340kg\r\n"))
    assert (stable.weight_kg, stable.motion, stable.net, stable.unit) == (12340, False, False, "kg")
    assert reading(parse_st_gs(b"US,GS,+0012340kg\r\n")).motion is True
    assert reading(parse_st_gs(b"ST,GS,-0000120kg\r\n")).weight_kg == -120
    tonnes = reading(parse_st_gs(b"ST,GS,+012.340 t\r\n"))
    assert (tonnes.unit, tonnes.weight_kg) == ("t", 12340)
    blanks = reading(parse_st_gs(b"ST,G ,+  12340kg\r\n"))  # leading blanks, one-letter header 2
    assert blanks.weight_kg == 12340
    over = reading(parse_st_gs(b"OL,GS,+       kg\r\n"))  # overflow: data blank-filled
    assert over.overload and not over.underrange
    assert reading(parse_st_gs(b"ST,GS,+0012340  \r\n")).unit == NO_UNIT
    net = reading(parse_st_gs(b"ST,NT,+0012340kg\r\n"))
    assert net.net and net.tare_kg is None


@pytest.mark.parametrize(("line", "reason"), [
    (b"ST,TR,+0012000kg\r\n", "tare line"),
    (b"XX,GS,+0012340kg\r\n", "header 1"),
    (b"ST,ZZ,+0012340kg\r\n", "header 2"),
    (b"ST;GS;+0012340kg\r\n", "commas"),
    (b"ST,GS,+00A2340kg\r\n", "not a signed decimal"),
    (b"ST,GS,+0.12.34kg\r\n", "not a signed decimal"),
    (b"ST,GS,*0012340kg\r\n", "not a signed decimal"),
    (b"ST,GS,+0012340KG\r\n", "unit"),
    (b"ST,GS,+012340kg\r\n", "bytes before CR LF"),
])
def test_st_gs_bad_lines_say_why(line: bytes, reason: str) -> None:
    assert reason in error(parse_st_gs(line)).reason


def test_st_gs_framer_reads_lines_in_any_chunking_and_bounds_garbage() -> None:
    stream = b"ST,GS,+0012340kg\r\nUS,GS,+0012360kg\r\n" + b"x" * 500 + b"\r\nST,GS,+0000000kg\r\n"
    for step in (1, 3, 7, len(stream)):
        framer = make_framer("st_gs")
        items = [i for k in range(0, len(stream), step) for i in framer.feed(stream[k : k + step])]
        weights = [i.weight_kg for i in items if isinstance(i, WeightReading)]
        assert weights == [12340, 12360, 0]
        assert [i.reason for i in items if isinstance(i, FrameError)] == ["st_gs line over 72 bytes"]
        assert framer.buffered <= 72


def test_a_net_st_gs_stream_is_refused_as_a_fault_not_weighed() -> None:
    wf = WeighbridgeWorkflow(WeighbridgeDevice(id="wb-1", port="/dev/null", format="st_gs"), {})
    assert wf.on_reading(0.0, reading(parse_st_gs(b"ST,NT,+0012340kg\r\n"))) is None
    assert wf.fault is not None and "net weights without their tare" in wf.fault


# --- custom ------------------------------------------------------------------------------------

XK_SPEC = FrameSpec(start="02", end="03", length=12, weight=FieldPos(2, 6), sign_at=1, decimals_at=8,
                    checksum="xor", checksum_over=FieldPos(1, 8), checksum_at=9, checksum_encoding="hex")
# hand-built XK3190-A9 tF=0 frames: XOR of sign..P, as ASCII hex
XK_28000 = b"\x02" b"+028000" b"0" b"11" b"\x03"  # 2B^30^32^38^30^30^30 ^30 (P) = 0x11
XK_MINUS_12_5 = b"\x02" b"-000125" b"1" b"1A" b"\x03"  # 2D^30^30^30^31^32^35 ^31 (P) = 0x1A


def test_the_hand_built_xk3190_frames_are_right() -> None:
    assert reading(parse_xk3190(XK_28000)).weight_kg == 28000
    assert reading(parse_xk3190(XK_MINUS_12_5)).weight_kg == -12.5


def test_a_spec_describing_xk3190_reads_its_frames_as_the_built_in_parser() -> None:
    for frame in (XK_28000, XK_MINUS_12_5):
        assert reading(parse_custom(frame, XK_SPEC)).weight_kg == reading(parse_xk3190(frame)).weight_kg
    bad = XK_28000[:9] + b"00" + XK_28000[11:]
    assert "checksum mismatch" in error(parse_custom(bad, XK_SPEC)).reason
    framer = make_framer("custom", spec=XK_SPEC)
    items = framer.feed(b"\x02+02" + XK_28000 + b"junk" + XK_MINUS_12_5)
    assert [i.weight_kg for i in items if isinstance(i, WeightReading)] == [28000, -12.5]
    assert any("torn custom frame" in i.reason for i in items if isinstance(i, FrameError))


def test_sum_checksum_raw_byte_reversed_digits_fixed_decimals() -> None:
    """STX, 6 digits lowest first, CR LF; a raw sum byte over the digits; 1 fixed decimal place."""
    spec = FrameSpec(start="02", end="0D0A", length=10, weight=FieldPos(1, 6), digits_reversed=True,
                     decimals=1, checksum="sum", checksum_over=FieldPos(1, 6), checksum_at=7)
    digits = b"543210"  # 012345 sent lowest first -> 1234.5
    frame = b"\x02" + digits + bytes([sum(digits) & 0xFF]) + b"\r\n"
    assert reading(parse_custom(frame, spec)).weight_kg == 1234.5
    assert reading(parse_custom(frame, spec)).unit == "kg"
    assert "checksum" in error(parse_custom(frame[:7] + b"\x00" + frame[8:], spec)).reason
    assert "start/end" in error(parse_custom(frame[:-1] + b"X", spec)).reason


def site(device: dict[str, Any]) -> dict[str, Any]:
    return {"site_id": "s1", "outbox": {"path": "/tmp/x.db"},
            "devices": [{"id": "wb-1", "port": "/dev/null", **device}]}


@pytest.mark.parametrize(("frame", "message"), [
    ({"length": 12, "weight": {"offset": 8, "length": 6}}, "not between the start byte"),
    ({"length": 12, "weight": {"offset": 0, "length": 6}}, "not between the start byte"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "sign_at": 3}, "overlap"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "checksum": "xor"}, "needs checksum_at"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "checksum_at": 9}, "checksum is none"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "end": "0"}, "end"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "start": "0203"}, "one byte"),
    ({"length": 12, "weight": {"offset": 2, "length": 6}, "parity": "E"}, "parity"),
])
def test_a_bad_frame_spec_is_refused_with_a_clear_error(frame: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, msgspec.ValidationError)) as info:
        parse_config(site({"format": "custom", "frame": frame}))
    assert message in str(info.value)


def test_custom_format_needs_its_spec_and_only_it_has_one() -> None:
    with pytest.raises((ValueError, msgspec.ValidationError), match="format: custom"):
        parse_config(site({"format": "custom"}))
    with pytest.raises((ValueError, msgspec.ValidationError), match="format: custom"):
        parse_config(site({"format": "toledo", "frame": {"length": 12, "weight": {"offset": 2,
                                                                                  "length": 6}}}))


def test_a_custom_site_weighs_a_truck(tmp_path: Path) -> None:
    cfg = parse_config({**site({"format": "custom", "frame": msgspec.to_builtins(XK_SPEC)}),
                        "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 40000}]})
    dev = cfg.devices[0]
    assert isinstance(dev, WeighbridgeDevice) and dev.frame == XK_SPEC
    truck = Vehicle(plate="桂B12345", tare_kg=12000, rated_gross_kg=40000)
    wf = WeighbridgeWorkflow(dev, {"桂B12345": truck})
    framer = make_framer(dev.format, spec=dev.frame)
    zero = b"\x02" b"+000000" b"0" b"1B" b"\x03"  # 2B^30*7 = 0x1B
    wf.on_plate(0.0, "桂B12345")
    t, tickets = 0.0, []
    for frame in [zero] * 3 + [XK_28000] * 20 + [zero] * 5:
        t += 0.1
        for item in framer.feed(frame):
            ticket = wf.on_reading(t, reading(item))
            if ticket is not None:
                tickets.append(ticket)
    [ticket] = tickets
    assert (ticket.gross_kg, ticket.net_kg) == (28000, 16000)
