"""Frame parsers: known bytes, every bad-input case, fragmentation and resync."""

from __future__ import annotations

import random

import pytest

from edge.devices.weighbridge.frames import (
    FrameError,
    WeightReading,
    make_framer,
    parse_toledo,
    parse_xk3190,
)

# 31 000 kg, count-by 20 (dummy zero XXXXX0 + increment x2), kg, gross, stable; checksum ','
TOLEDO_31000 = b"\x0210 003100000000\r,"
# 31 200 kg, 0 decimals; XOR of b"+0312000" is 0x1B
XK_31200 = b"\x02+03120001B\x03"


def readings(items: list) -> list[WeightReading]:
    return [i for i in items if isinstance(i, WeightReading)]


def errors(items: list) -> list[FrameError]:
    return [i for i in items if isinstance(i, FrameError)]


def test_toledo_known_frame() -> None:
    r = parse_toledo(TOLEDO_31000)
    assert isinstance(r, WeightReading)
    assert r.weight_kg == 31000 and r.division_kg == 20 and r.tare_kg == 0
    assert r.motion is False and not r.overload and not r.underrange and not r.net and r.unit == "kg"


def test_toledo_status_bits() -> None:
    # SWA: code 3 (XXXXX.X), x5 -> 0x20|0x18|0x03 = ';'; SWB: net|neg|motion|kg|bit5 = 0x3B
    body = bytes([0x02, 0x3B, 0x3B, 0x20]) + b"001235000100\r"
    frame = body + bytes([(-sum(body)) & 0x7F])
    r = parse_toledo(frame)
    assert isinstance(r, WeightReading)
    assert r.weight_kg == pytest.approx(-123.5) and r.division_kg == pytest.approx(0.5)
    assert r.tare_kg == pytest.approx(10.0) and r.net and r.motion


def test_toledo_out_of_range_and_pounds() -> None:
    for swb, over, under in ((0x24, True, False), (0x26, False, True)):  # lb, out of range, +/-
        body = bytes([0x02, 0x32, swb, 0x20]) + b"001000000000\r"
        r = parse_toledo(body, checksum=False)
        assert isinstance(r, WeightReading)
        assert (r.overload, r.underrange, r.unit) == (over, under, "lb")
        assert abs(r.weight_kg) == pytest.approx(1000 * 0.45359237)


def test_toledo_parity_bit_is_ignored() -> None:
    frame = bytes([TOLEDO_31000[0], TOLEDO_31000[1] | 0x80, *TOLEDO_31000[2:]])
    assert isinstance(parse_toledo(frame), WeightReading)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (TOLEDO_31000[:-1] + b"-", "checksum"),
        (TOLEDO_31000[:6] + b"x" + TOLEDO_31000[7:16] + b"\r" + bytes([0]), "checksum"),
        (TOLEDO_31000[:-2], "bytes"),
        (b"\x02\x07\x30\x20003100000000\r", "bit 5"),
        (b"\x02\x21\x30\x20003100000000\r", "increment"),
        (b"\x02\x31\x30\x2000310x000000\r", "weight field"),
        (b"\x02\x31\x30\x20003100a00000\r", "tare field"),
    ],
)
def test_toledo_bad_frames(frame: bytes, reason: str) -> None:
    r = parse_toledo(frame, checksum=len(frame) == 18)
    assert isinstance(r, FrameError) and reason in r.reason


def test_xk3190_known_frame() -> None:
    r = parse_xk3190(XK_31200)
    assert isinstance(r, WeightReading) and r.weight_kg == 31200 and r.motion is None


def test_xk3190_negative_and_decimals() -> None:
    body = b"-0012342"
    x = 0
    for c in body:
        x ^= c
    r = parse_xk3190(b"\x02" + body + f"{x:02X}".encode() + b"\x03")
    assert isinstance(r, WeightReading) and r.weight_kg == pytest.approx(-12.34)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x02+03120001C\x03", "checksum"),
        (b"\x02+03120001b\x03", "checksum"),  # lower-case hex is not the A9's encoding
        (b"\x02*0312000" + b"11" + b"\x03", "checksum"),
        (b"\x02+0312000\x03", "bytes"),
        (b"\x02+03120001B\x04", "ETX"),
    ],
)
def test_xk3190_bad_frames(frame: bytes, reason: str) -> None:
    r = parse_xk3190(frame)
    assert isinstance(r, FrameError) and reason in r.reason


def _xk(body: bytes) -> bytes:
    x = 0
    for c in body:
        x ^= c
    return b"\x02" + body + f"{x:02X}".encode() + b"\x03"


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"*0312000", "sign"), (b"+03a2000", "weight"), (b"+0312009", "decimal"), (b"+03 2000", "weight")],
)
def test_xk3190_bad_fields_with_valid_checksum(body: bytes, reason: str) -> None:
    r = parse_xk3190(_xk(body))
    assert isinstance(r, FrameError) and reason in r.reason


@pytest.mark.parametrize(("fmt", "frame"), [("toledo", TOLEDO_31000), ("xk3190", XK_31200)])
def test_fragmented_input_byte_by_byte(fmt: str, frame: bytes) -> None:
    framer = make_framer(fmt)  # type: ignore[arg-type]
    out: list = []
    for b in frame * 3:
        out += framer.feed(bytes([b]))
    assert len(readings(out)) == 3 and not errors(out)
    assert framer.buffered == 0


@pytest.mark.parametrize(("fmt", "frame"), [("toledo", TOLEDO_31000), ("xk3190", XK_31200)])
def test_random_chunking(fmt: str, frame: bytes) -> None:
    rng = random.Random(7)
    stream = frame * 50
    framer = make_framer(fmt)  # type: ignore[arg-type]
    out: list = []
    i = 0
    while i < len(stream):
        n = rng.randint(1, 40)
        out += framer.feed(stream[i : i + n])
        i += n
    assert len(readings(out)) == 50 and not errors(out)


@pytest.mark.parametrize(("fmt", "frame"), [("toledo", TOLEDO_31000), ("xk3190", XK_31200)])
def test_garbage_and_torn_frames_resync(fmt: str, frame: bytes) -> None:
    framer = make_framer(fmt)  # type: ignore[arg-type]
    stream = b"noise" + frame + frame[:7] + frame + b"\xff\x00" + frame
    out = framer.feed(stream)
    assert len(readings(out)) == 3
    reasons = [e.reason for e in errors(out)]
    assert any("garbage" in r for r in reasons) and any("torn" in r for r in reasons)
    assert framer.errors == len(reasons) == 3


def test_toledo_without_checksum() -> None:
    framer = make_framer("toledo", checksum=False)
    out = framer.feed(TOLEDO_31000[:-1] * 2)
    assert [r.weight_kg for r in readings(out)] == [31000, 31000]


def test_bad_checksum_in_stream_is_one_error() -> None:
    framer = make_framer("xk3190")
    out = framer.feed(XK_31200 + b"\x02+03120001C\x03" + XK_31200)
    assert len(readings(out)) == 2 and len(errors(out)) == 1 and "checksum" in errors(out)[0].reason


def test_missing_end_byte_resyncs() -> None:
    framer = make_framer("toledo")
    broken = TOLEDO_31000[:16] + b"X" + TOLEDO_31000[17:]
    out = framer.feed(broken + TOLEDO_31000)
    assert len(readings(out)) == 1 and errors(out)


def test_buffer_is_bounded() -> None:
    framer = make_framer("toledo", max_buffer=64)
    out = framer.feed(b"\x01" * 10_000)
    assert framer.buffered == 0 and errors(out)
    out = framer.feed(b"\x02" + b"1" * 5)
    assert framer.buffered <= 64
    for _ in range(1000):  # a stuck line that sends only STX-less noise never grows the buffer
        framer.feed(b"abc")
        assert framer.buffered <= 64
    assert all(len(e.raw) <= 64 for e in errors(out))


def test_never_raises_on_random_bytes() -> None:
    rng = random.Random(1)
    for fmt in ("toledo", "xk3190"):
        framer = make_framer(fmt)  # type: ignore[arg-type]
        for _ in range(2000):
            framer.feed(bytes(rng.randrange(256) for _ in range(rng.randint(0, 30))))
            assert framer.buffered < 4096
