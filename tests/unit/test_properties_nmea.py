"""Properties of the NMEA reader against the truck simulator's independent encoder.

The existing unit tests cover known sentences; these check the reader as a whole: any bytes in any
reads, the statistics it keeps, and that every sentence the simulator writes comes back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.truck.nmea import MAX_SENTENCE, GpsFix, NmeaError, NmeaReader, parse_sentence
from firmware_sim import nmea_encode as enc

FAST = settings(max_examples=150, deadline=None)
RESOLUTION_DEG = 0.00005 / 60 + 1e-9
"""ddmm.mmmm carries minutes to 4 decimals: half a unit of the last digit, in degrees."""


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


# NMEA dates carry no century: 80-99 are 19xx, 00-79 are 20xx; hundredths of a second on the wire
times = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2079, 12, 31, 23, 59, 59)).map(
    lambda t: t.replace(microsecond=t.microsecond // 10_000 * 10_000, tzinfo=UTC)
)
lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
speeds = st.floats(0, 200, allow_nan=False)
courses = st.floats(0, 360, exclude_max=True, allow_nan=False)
talkers = st.sampled_from(["GP", "GN", "BD", "GB", "GL", "GA"])


@st.composite
def sentences(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A valid RMC or GGA sentence from the simulator, and what it says."""
    ts, lat, lon, talker = draw(times), draw(lats), draw(lons), draw(talkers)
    valid = draw(st.booleans())
    if draw(st.booleans()):
        speed, course = draw(speeds), draw(courses)
        line = enc.rmc(ts, lat, lon, speed, course, valid=valid, talker=talker)
        return line, dict(kind="RMC", ts=ts, lat=lat, lon=lon, valid=valid, speed=speed, course=course)
    sats, hdop, alt = draw(st.integers(0, 99)), draw(st.floats(0, 99.9)), draw(st.floats(-400, 9000))
    line = enc.gga(ts, lat, lon, valid=valid, talker=talker, satellites=sats, hdop=hdop, altitude_m=alt)
    return line, dict(kind="GGA", ts=ts, lat=lat, lon=lon, valid=valid, sats=sats, hdop=hdop, alt=alt)


def check_fix(fix: GpsFix | NmeaError | None, want: dict[str, object]) -> None:
    assert isinstance(fix, GpsFix), fix
    assert fix.sentence == want["kind"] and fix.valid is want["valid"]
    ts = want["ts"]
    assert isinstance(ts, datetime)
    assert fix.time_utc == ts.time().replace(tzinfo=None)
    if want["kind"] == "RMC":
        assert fix.timestamp == ts
    if not want["valid"]:
        assert fix.lat is None and fix.lon is None
        return
    assert fix.lat is not None and fix.lon is not None
    assert abs(fix.lat - float(want["lat"])) <= RESOLUTION_DEG  # type: ignore[arg-type]
    assert abs(fix.lon - float(want["lon"])) <= RESOLUTION_DEG  # type: ignore[arg-type]
    if want["kind"] == "RMC":
        assert fix.speed_kmh is not None and abs(fix.speed_kmh - float(want["speed"])) <= 0.005 * 1.852 + 1e-9  # type: ignore[arg-type]
        assert fix.course_deg is not None and 0 <= fix.course_deg < 360
        assert abs((fix.course_deg - float(want["course"]) + 180) % 360 - 180) <= 0.05 + 1e-9  # type: ignore[arg-type]
    else:
        assert fix.quality == 1 and fix.satellites == want["sats"]


@FAST
@given(sentences())
def test_every_simulated_sentence_is_accepted_and_round_trips(s: tuple[bytes, dict[str, object]]) -> None:
    line, want = s
    check_fix(parse_sentence(line), want)


@FAST
@given(st.lists(sentences(), min_size=1, max_size=8), st.lists(st.integers(0, 2_000), max_size=30))
def test_any_chunking_of_a_valid_stream_yields_every_fix(
    ss: list[tuple[bytes, dict[str, object]]], cuts: list[int]
) -> None:
    reader = NmeaReader()
    got = [i for chunk in chunked(b"".join(line for line, _ in ss), cuts) for i in reader.feed(chunk)]
    assert len(got) == len(ss)
    for item, (_, want) in zip(got, ss, strict=True):
        check_fix(item, want)
    assert sum(v for k, v in reader.stats.items() if k.startswith("error:")) == 0


@FAST
@given(sentences())
def test_a_corrupted_checksum_is_always_rejected_with_the_reason(s: tuple[bytes, dict[str, object]]) -> None:
    item = parse_sentence(enc.corrupt_checksum(s[0]))
    assert isinstance(item, NmeaError) and item.reason.startswith("bad checksum")


@FAST
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    reader = NmeaReader()
    out: list[GpsFix | NmeaError] = []
    for chunk in chunks:
        out += reader.feed(chunk)
        assert reader.buffered <= MAX_SENTENCE
    assert all(i.reason.strip() and len(i.raw) <= 64 for i in out if isinstance(i, NmeaError))
    errors = sum(v for k, v in reader.stats.items() if k.startswith("error:"))
    fixes = sum(v for k, v in reader.stats.items() if k.startswith("fix:"))
    assert errors == sum(isinstance(i, NmeaError) for i in out), "stats count exactly what was reported"
    assert fixes == sum(isinstance(i, GpsFix) for i in out)


field_text = st.text(alphabet="0123456789.,-+NSEWAVM ", max_size=80)


@FAST
@given(st.sampled_from(["GPRMC", "GNGGA", "BDRMC", "GPGGA"]), field_text)
def test_any_fields_with_a_valid_checksum_give_a_fix_or_a_reason(address: str, fields: str) -> None:
    """The checksum is right, so the fields themselves are judged: never an exception."""
    item = parse_sentence(enc.sentence(f"{address},{fields}"))
    assert item is not None
    if isinstance(item, NmeaError):
        assert item.reason.startswith("invalid field: ") and len(item.reason) > len("invalid field: ")
    else:
        assert item.lat is None or -90 <= item.lat <= 90
        assert item.lon is None or -180 <= item.lon <= 180
