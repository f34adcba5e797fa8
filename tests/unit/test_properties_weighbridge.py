"""Properties of the weighbridge framers and the ANPR line reader, checked against the simulator.

The simulator's encoders (firmware_sim/weighbridge.py) are written from the protocol specs without
the parser, so "every encoded frame parses back to what was encoded" checks both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.text import PLATE as PLATE_RULE
from edge.devices.weighbridge.anpr import MAX_LINE, NO_PLATE, AnprLineReader
from edge.devices.weighbridge.anpr_http import decode_push
from edge.devices.weighbridge.frames import (
    STX,
    FieldPos,
    FrameError,
    FrameReader,
    FrameSpec,
    WeightReading,
    make_framer,
    parse_st_gs,
    parse_toledo,
    parse_xk3190,
)
from firmware_sim.weighbridge import encode_toledo, encode_xk3190

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = [("toledo", True), ("toledo", False), ("xk3190", True)]
FRAME_LEN = {("toledo", True): 18, ("toledo", False): 17, ("xk3190", True): 12}


@dataclass(frozen=True)
class Toledo:
    """One reading as the indicator holds it: a count of divisions, not a float."""

    count: int
    tare_count: int
    division_kg: float
    negative: bool
    motion: bool
    net: bool
    overload: bool
    checksum: bool

    @property
    def unit(self) -> float:
        """Weight of one displayed digit: the division without its x1/x2/x5 step."""
        text = f"{self.division_kg:.5e}"
        return 10.0 ** int(text.split("e")[1])

    @property
    def weight_kg(self) -> float:
        return -self.count * self.unit if self.negative else self.count * self.unit

    def encode(self) -> bytes:
        return encode_toledo(
            self.weight_kg, division_kg=self.division_kg, motion=self.motion, net=self.net,
            tare_kg=self.tare_count * self.unit, overload=self.overload, checksum=self.checksum,
        )


divisions = st.sampled_from([s * 10.0**e for e in range(2, -6, -1) for s in (1, 2, 5)])
toledo_readings = st.builds(
    Toledo,
    count=st.integers(0, 999_999),
    tare_count=st.integers(0, 999_999),
    division_kg=divisions,
    negative=st.booleans(),
    motion=st.booleans(),
    net=st.booleans(),
    overload=st.booleans(),
    checksum=st.booleans(),
)
xk_readings = st.tuples(st.integers(-999_999, 999_999), st.integers(0, 4))


def _xk_weight(count: int, decimals: int) -> float:
    return count / 10**decimals


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (any chunking a serial port might hand us)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def feed_all(framer: FrameReader, chunks: list[bytes]) -> list[WeightReading | FrameError]:
    out: list[WeightReading | FrameError] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


# --- never crash, always a reason, always bounded ------------------------------------------


@FAST
@given(st.sampled_from(FORMATS), st.lists(st.binary(max_size=64), max_size=30))
def test_arbitrary_bytes_never_raise_and_every_error_has_a_reason(
    fmt: tuple[str, bool], chunks: list[bytes]
) -> None:
    framer = make_framer(fmt[0], checksum=fmt[1])  # type: ignore[arg-type]
    emitted_errors = 0
    for chunk in chunks:
        for item in framer.feed(chunk):
            assert isinstance(item, WeightReading | FrameError)
            if isinstance(item, FrameError):
                emitted_errors += 1
                assert item.reason.strip()
                assert len(item.raw) <= 64
        assert framer.buffered < FRAME_LEN[fmt], "a framer buffers at most one partial frame"
    assert framer.errors == emitted_errors, "the error counter counts exactly what was reported"


@FAST
@given(st.sampled_from(FORMATS), st.integers(1, 4), st.binary(min_size=1, max_size=16))
def test_huge_reads_stay_bounded(fmt: tuple[str, bool], kib: int, pattern: bytes) -> None:
    framer = make_framer(fmt[0], checksum=fmt[1], max_buffer=256)  # type: ignore[arg-type]
    items = framer.feed(pattern * (kib * 1024 // len(pattern) + 1))
    assert framer.buffered < FRAME_LEN[fmt]
    assert all(i.reason for i in items if isinstance(i, FrameError))


@FAST
@given(st.binary(max_size=40), st.booleans())
def test_frame_parsers_never_raise(frame: bytes, checksum: bool) -> None:
    for item in (parse_toledo(frame, checksum=checksum), parse_xk3190(frame)):
        assert isinstance(item, WeightReading) or item.reason.strip()


# --- nothing valid rejected, exact round trip ------------------------------------------------


@FAST
@given(toledo_readings)
def test_every_encoded_toledo_frame_parses_back_exactly(r: Toledo) -> None:
    item = parse_toledo(r.encode(), checksum=r.checksum)
    assert isinstance(item, WeightReading), item
    assert item.weight_kg == round(r.weight_kg, 6)
    assert item.tare_kg == round(r.tare_count * r.unit, 6)
    assert item.division_kg == round(r.division_kg, 6)
    assert item.motion is r.motion and item.net is r.net
    signed = r.negative and r.count > 0  # -0 is sent without the sign bit
    assert item.overload is (r.overload and not signed)
    assert item.underrange is (r.overload and signed)


@FAST
@given(xk_readings)
def test_every_encoded_xk3190_frame_parses_back_exactly(reading: tuple[int, int]) -> None:
    count, decimals = reading
    item = parse_xk3190(encode_xk3190(_xk_weight(count, decimals), decimals=decimals))
    assert isinstance(item, WeightReading), item
    assert item.weight_kg == _xk_weight(count, decimals)
    assert item.motion is None


@FAST
@given(st.lists(toledo_readings, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_of_a_toledo_stream_yields_the_same_readings(
    readings: list[Toledo], cuts: list[int]
) -> None:
    checksum = readings[0].checksum
    frames = [
        Toledo(**{**r.__dict__, "checksum": checksum}).encode() for r in readings  # one port, one setting
    ]
    stream = b"".join(frames)
    want = [parse_toledo(f, checksum=checksum) for f in frames]
    got = feed_all(make_framer("toledo", checksum=checksum), chunked(stream, cuts))
    assert got == want


@FAST
@given(st.lists(xk_readings, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_of_an_xk3190_stream_yields_the_same_readings(
    readings: list[tuple[int, int]], cuts: list[int]
) -> None:
    frames = [encode_xk3190(_xk_weight(c, d), decimals=d) for c, d in readings]
    want = [parse_xk3190(f) for f in frames]
    got = feed_all(make_framer("xk3190"), chunked(b"".join(frames), cuts))
    assert got == want


noise = st.binary(max_size=24).map(lambda b: bytes(x for x in b if x != STX))


@FAST
@given(st.lists(st.tuples(noise, xk_readings), min_size=1, max_size=6), st.lists(st.integers(0, 999)))
def test_noise_between_frames_costs_no_valid_frame(
    items: list[tuple[bytes, tuple[int, int]]], cuts: list[int]
) -> None:
    """Line noise without a start byte is reported, and every whole frame after it is still read."""
    frames = [encode_xk3190(_xk_weight(c, d), decimals=d) for _, (c, d) in items]
    stream = b"".join(n + f for (n, _), f in zip(items, frames, strict=True))
    got = feed_all(make_framer("xk3190"), chunked(stream, cuts))
    assert [g for g in got if isinstance(g, WeightReading)] == [parse_xk3190(f) for f in frames]
    assert all(g.reason for g in got if isinstance(g, FrameError))


@FAST
@given(st.lists(st.tuples(noise, toledo_readings), min_size=1, max_size=6), st.lists(st.integers(0, 999)))
def test_noise_between_toledo_frames_costs_no_valid_frame(
    items: list[tuple[bytes, Toledo]], cuts: list[int]
) -> None:
    frames = [Toledo(**{**r.__dict__, "checksum": True}).encode() for _, r in items]
    stream = b"".join(n + f for (n, _), f in zip(items, frames, strict=True))
    got = feed_all(make_framer("toledo"), chunked(stream, cuts))
    assert [g for g in got if isinstance(g, WeightReading)] == [parse_toledo(f) for f in frames]


# --- ANPR plate lines ------------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=16
).filter(lambda p: not any(c.isspace() for c in p))
plates = st.from_regex(PLATE_RULE, fullmatch=True).filter(
    lambda p: 1 <= len(p) <= 16 and " " not in p and p.upper() not in NO_PLATE)


@FAST
@given(st.lists(plates, min_size=1, max_size=10), st.lists(st.integers(0, 5_000), max_size=20))
def test_every_plate_line_is_read_whatever_the_chunking(ps: list[str], cuts: list[int]) -> None:
    stream = "".join(f"PLATE {p}\r\n" for p in ps).encode("utf-8")
    reader = AnprLineReader()
    got = [p for chunk in chunked(stream, cuts) for p in reader.feed(chunk)]
    assert got == ps
    assert reader.errors == 0


@FAST
@given(st.lists(texts, min_size=1, max_size=10))
def test_a_plate_read_is_one_the_contract_accepts_else_a_counted_error(ps: list[str]) -> None:
    """The edge refuses what the bridge would dead-letter: every line is a valid plate or an error."""
    reader = AnprLineReader()
    got = reader.feed("".join(f"PLATE {p}\r\n" for p in ps).encode("utf-8"))
    valid = [p for p in ps if re.match(PLATE_RULE, p)]
    assert got == [p for p in valid if p.upper() not in NO_PLATE]  # 无牌, UNKNOWN...: no read
    assert reader.errors == len(ps) - len(valid)


@FAST
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_anpr_reader_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    reader = AnprLineReader()
    for chunk in chunks:
        for plate in reader.feed(chunk):
            assert 1 <= len(plate) <= 16 and not any(c.isspace() for c in plate)
        assert len(reader._buf) <= MAX_LINE


junk_lines = st.binary(min_size=MAX_LINE, max_size=2 * MAX_LINE).map(lambda b: b"X" + b.replace(b"\n", b""))


@FAST
@given(junk_lines, plates, st.integers(1, 64))
def test_no_plate_is_read_from_the_tail_of_an_over_long_line(junk: bytes, plate: str, step: int) -> None:
    """An over-long line is dropped to its end, whatever the reads; its tail is never a plate."""
    reader = AnprLineReader()
    got = reader.feed(junk)  # one read: judged too long right at its end
    line_end = f"PLATE {plate}\r\n".encode()  # ... and the rest of the same line, in any reads
    got += [p for i in range(0, len(line_end), step) for p in reader.feed(line_end[i : i + step])]
    assert got == []
    assert reader.errors >= 1


# --- the st_gs line, custom frames and the camera push: any bytes, never a crash ----------------

st_gs_lines = st.builds(
    lambda h1, h2, sign, w, unit: f"{h1},{h2},{sign}{w:07d}{unit}\r\n".encode(),
    st.sampled_from(["ST", "US"]), st.sampled_from(["GS", "G "]), st.sampled_from(["+", "-"]),
    st.integers(0, 9_999_999), st.sampled_from(["kg", " t", "lb"]),
)


@FAST
@given(st.lists(st_gs_lines, min_size=1, max_size=10), st.lists(st.integers(0, 400), max_size=20))
def test_every_st_gs_line_is_read_whatever_the_chunking(lines: list[bytes], cuts: list[int]) -> None:
    got = feed_all(make_framer("st_gs"), chunked(b"".join(lines), cuts))
    assert [g for g in got if isinstance(g, WeightReading)] == [parse_st_gs(line) for line in lines]


@FAST
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_st_gs_and_custom_framers_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    spec = FrameSpec(length=12, weight=FieldPos(2, 6), sign_at=1, decimals_at=8, checksum="xor",
                     checksum_over=FieldPos(1, 8), checksum_at=9, checksum_encoding="hex")
    for framer in (make_framer("st_gs"), make_framer("custom", spec=spec)):
        for chunk in chunks:
            for item in framer.feed(chunk):
                assert isinstance(item, WeightReading | FrameError)
            assert framer.buffered <= 4096


@FAST
@given(st.binary(max_size=2000))
def test_decode_push_never_raises_and_reads_only_valid_plates(body: bytes) -> None:
    pushed = decode_push(body)
    assert (pushed.read is None) or re.match(PLATE_RULE, pushed.read.plate)
    assert pushed.read is None or pushed.reason is None
