"""NMEA framer and RMC/GGA parser: published sentences, every rejection reason, fragments, fuzzing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.truck.nmea import MAX_SENTENCE, GpsFix, NmeaError, NmeaReader, parse_sentence
from firmware_sim import nmea_encode

# Published examples with their published checksums (NMEA reference pages, u-blox protocol docs).
RMC_CLASSIC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA_CLASSIC = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC_UBLOX = b"$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57"
GGA_UBLOX = b"$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B"
RMC_VOID = b"$GPRMC,,V,,,,,,,,,,N*53"
GNGGA = b"$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,*47"
GNRMC = b"$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B"
RMC_WEST = b"$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68"


def fix(line: bytes) -> GpsFix:
    item = parse_sentence(line)
    assert isinstance(item, GpsFix), item
    return item


def error(line: bytes) -> NmeaError:
    item = parse_sentence(line)
    assert isinstance(item, NmeaError), item
    assert item.reason
    return item


def with_checksum(body: bytes) -> bytes:
    return nmea_encode.sentence(body.decode()).rstrip(b"\r\n")


def test_classic_rmc() -> None:
    f = fix(RMC_CLASSIC)
    assert (f.sentence, f.talker, f.valid) == ("RMC", "GP", True)
    assert f.lat == pytest.approx(48 + 7.038 / 60)
    assert f.lon == pytest.approx(11 + 31.0 / 60)
    assert f.speed_kmh == pytest.approx(22.4 * 1.852)
    assert f.course_deg == pytest.approx(84.4)
    assert f.timestamp == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)


def test_classic_gga() -> None:
    f = fix(GGA_CLASSIC)
    assert (f.sentence, f.valid, f.quality, f.satellites) == ("GGA", True, 1, 8)
    assert f.hdop == pytest.approx(0.9)
    assert f.altitude_m == pytest.approx(545.4)
    assert f.time_utc == time(12, 35, 19)
    assert f.timestamp is None  # GGA has no date


def test_ublox_examples() -> None:
    r = fix(RMC_UBLOX)
    assert r.lat == pytest.approx(47 + 17.11437 / 60)
    assert r.lon == pytest.approx(8 + 33.91522 / 60)
    assert r.time_utc == time(8, 35, 59)
    assert r.date_utc == date(2002, 12, 9)
    g = fix(GGA_UBLOX)
    assert (g.quality, g.satellites, g.hdop) == (1, 8, pytest.approx(1.01))


def test_gn_talker_and_western_southern_hemispheres() -> None:
    g = fix(GNGGA)
    assert g.talker == "GN"
    assert g.lon == pytest.approx(-(121 + 18.85961 / 60))
    assert g.altitude_m == pytest.approx(1113.0)
    r = fix(GNRMC)
    assert r.course_deg is None  # empty course when nearly stationary
    assert r.date_utc == date(2017, 1, 10)
    assert fix(RMC_WEST).lon == pytest.approx(-(123 + 11.12 / 60))
    south = fix(with_checksum(b"GNRMC,010203,A,3351.000,S,15112.000,E,0.0,0.0,010125,,,A"))
    assert south.lat == pytest.approx(-(33 + 51 / 60))


def test_void_fix_is_not_an_error() -> None:
    f = fix(RMC_VOID)
    assert not f.valid and f.lat is None and f.lon is None and f.timestamp is None
    gga = fix(with_checksum(b"GNGGA,101010.00,,,,,0,00,99.9,,M,,M,,"))
    assert not gga.valid and gga.quality == 0
    mode_n = fix(with_checksum(b"GNRMC,101010.00,A,2422.0000,N,10924.0000,E,0.0,0.0,010125,,,N"))
    assert not mode_n.valid  # NMEA 2.3 mode N overrides status A


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (RMC_CLASSIC[:-2] + b"6B", "bad checksum"),
        (RMC_CLASSIC.replace(b"4807", b"4808"), "bad checksum"),
        (RMC_CLASSIC[:-3], "missing checksum"),
        (RMC_CLASSIC[:-2] + b"Z1", "missing checksum"),
        (RMC_CLASSIC[:-1], "missing checksum"),
        (RMC_CLASSIC[20:], "torn sentence"),
        (with_checksum(b"GPRMC,123519,A,9107.038,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4867.038,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4807.038,N,18131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,253519,A,4807.038,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,12a519,A,4807.038,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4807.038,N,01131.000,E,0.0,0.0,320394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,X,4807.038,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4807.038,Q,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4807.038,N,01131.000,E,-1.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,4807.038,N,01131.000,E"), "invalid field"),
        (with_checksum(b"GPRMC,123519,A,,N,01131.000,E,0.0,0.0,230394,,"), "invalid field"),
        (with_checksum(b"GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,"), "invalid field"),
        (with_checksum(b"GPGGA,123519,4807.038,N,01131.000,E,1,x8,0.9,545.4,M,46.9,M,,"), "invalid field"),
    ],
)
def test_rejections_carry_a_reason(line: bytes, kind: str) -> None:
    err = error(line)
    assert err.kind == kind, err.reason
    assert err.raw


def test_unknown_sentences_and_talkers_are_skipped_and_counted() -> None:
    gsv = with_checksum(b"GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")
    prop = with_checksum(b"PUBX,00,081350.00,4717.113210,N")
    other_talker = with_checksum(b"IIRMC,123519,A,4807.038,N,01131.000,E,0.0,0.0,230394,,")
    assert parse_sentence(gsv) is None
    assert parse_sentence(prop) is None
    assert parse_sentence(other_talker) is None
    reader = NmeaReader()
    out = reader.feed(b"\r\n".join([gsv, prop, RMC_CLASSIC]) + b"\r\n")
    assert [type(i) for i in out] == [GpsFix]
    assert reader.stats["skipped:GSV"] == 1 and reader.stats["fix:RMC"] == 1
    assert not any(k.startswith("error:") for k in reader.stats)


def test_framer_reassembles_fragments() -> None:
    stream = b"".join(line + b"\r\n" for line in (RMC_CLASSIC, GGA_CLASSIC, RMC_UBLOX, GNGGA))
    for size in (1, 2, 3, 7, 50, len(stream)):
        reader = NmeaReader()
        out = [i for k in range(0, len(stream), size) for i in reader.feed(stream[k : k + size])]
        assert [i.sentence for i in out if isinstance(i, GpsFix)] == ["RMC", "GGA", "RMC", "GGA"]
        assert reader.buffered == 0


def test_framer_reports_torn_sentence_and_resyncs() -> None:
    reader = NmeaReader()
    out = reader.feed(RMC_CLASSIC[:30] + GGA_CLASSIC + b"\r\n")
    assert isinstance(out[0], NmeaError) and out[0].kind == "torn sentence"
    assert isinstance(out[1], GpsFix) and out[1].sentence == "GGA"


def test_framer_leading_fragment_and_lf_only_lines() -> None:
    reader = NmeaReader()
    out = reader.feed(RMC_CLASSIC[40:] + b"\r\n" + RMC_CLASSIC + b"\n" + GGA_CLASSIC + b"\n")
    assert isinstance(out[0], NmeaError) and out[0].kind == "torn sentence"
    assert [i.sentence for i in out[1:] if isinstance(i, GpsFix)] == ["RMC", "GGA"]


def test_framer_buffer_is_bounded_on_garbage() -> None:
    reader = NmeaReader()
    out = reader.feed(b"$" + b"A" * 5000)
    assert reader.buffered == 0
    assert len(out) == 1 and isinstance(out[0], NmeaError) and out[0].kind == "torn sentence"
    out = reader.feed(b"B" * 100 + b"\r\n" + RMC_CLASSIC + b"\r\n")
    assert isinstance(out[-1], GpsFix)


def test_non_ascii_inside_a_sentence() -> None:
    body = "GPRMC,123519,A,4807.038,N,01131.000,E,0.0,0.0,230394,,é".encode()
    x = 0
    for b in body:
        x ^= b
    err = error(b"$" + body + f"*{x:02X}".encode())
    assert err.kind == "invalid field"


def test_encoder_and_parser_agree() -> None:
    ts = datetime(2025, 6, 1, 8, 30, 5, 500_000, tzinfo=UTC)
    r = fix(nmea_encode.rmc(ts, 24.3921, 109.3991, 41.0, 350.2))
    assert r.lat == pytest.approx(24.3921, abs=1e-6) and r.lon == pytest.approx(109.3991, abs=1e-6)
    assert r.speed_kmh == pytest.approx(41.0, abs=0.02) and r.course_deg == pytest.approx(350.2)
    assert r.timestamp == ts
    g = fix(nmea_encode.gga(ts, -33.5, -70.25))
    assert (g.lat, g.lon, g.quality) == (pytest.approx(-33.5), pytest.approx(-70.25), 1)
    assert not fix(nmea_encode.rmc(ts, None, None, 0, 0, valid=False)).valid
    assert not fix(nmea_encode.gga(ts, None, None, valid=False)).valid
    assert error(nmea_encode.corrupt_checksum(nmea_encode.rmc(ts, 1, 2, 3, 4))).kind == "bad checksum"


@given(lat=st.floats(-89.99999, 89.99999), lon=st.floats(-179.99999, 179.99999),
       speed=st.floats(0, 150), course=st.floats(0, 359.9))
def test_encoder_parser_roundtrip(lat: float, lon: float, speed: float, course: float) -> None:
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    r = fix(nmea_encode.rmc(ts, lat, lon, speed, course))
    assert r.lat == pytest.approx(lat, abs=2e-6) and r.lon == pytest.approx(lon, abs=2e-6)
    assert r.speed_kmh == pytest.approx(speed, abs=0.01)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([RMC_CLASSIC + b"\r\n", b"$", b"*", b"\r\n"]),
                max_size=20))
def test_arbitrary_bytes_never_crash(chunks: list[bytes]) -> None:
    reader = NmeaReader()
    for chunk in chunks:
        for item in reader.feed(chunk):
            assert isinstance(item, GpsFix | NmeaError)
            if isinstance(item, NmeaError):
                assert item.reason and item.kind
        assert reader.buffered <= MAX_SENTENCE + 1


@given(st.binary(max_size=120))
def test_parse_sentence_never_raises(line: bytes) -> None:
    item = parse_sentence(b"$" + line)
    assert item is None or isinstance(item, GpsFix) or item.reason
