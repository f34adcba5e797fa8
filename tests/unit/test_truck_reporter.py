"""TruckReporter: interval, change-triggered reports, stale and void fixes, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.devices.truck.io_module import IoReading
from edge.devices.truck.nmea import GpsFix, parse_sentence
from edge.devices.truck.terminal import TruckReporter, TruckTerminalConfig
from firmware_sim import nmea_encode

CFG = TruckTerminalConfig(
    id="trk-1", site_id="site-a", plate="桂BZ8801", gps_port="/dev/null",
    report_interval_s=10.0, load_step_kg=500.0, fix_stale_s=5.0,
)
T0 = datetime(2025, 6, 1, 8, 0, 0, tzinfo=UTC)
WALL = datetime(2030, 1, 1, tzinfo=UTC)  # a local clock that is obviously not the GPS clock
IO = IoReading(lid_closed=True, bed_raised=False, ignition=True, load_kg=14_000.0)


def rmc(sec: int, lat: float = 24.37, lon: float = 109.40, valid: bool = True) -> GpsFix:
    item = parse_sentence(nmea_encode.rmc(T0 + timedelta(seconds=sec), lat, lon, 36.0, 90.0, valid=valid))
    assert isinstance(item, GpsFix)
    return item


def started() -> TruckReporter:
    r = TruckReporter(CFG)
    r.on_fix(rmc(0), 0.0)
    r.on_io(IO, 0.0)
    return r


def test_nothing_before_a_position_and_an_io_reading() -> None:
    r = TruckReporter(CFG)
    assert r.poll(0.0, WALL) is None
    r.on_io(IO, 0.0)
    assert r.poll(0.0, WALL) is None
    r.on_fix(rmc(0, valid=False), 0.0)
    assert r.poll(0.0, WALL) is None  # a void fix gives no position
    r.on_fix(rmc(0), 0.0)
    assert r.poll(0.0, WALL) is not None


def test_first_report_carries_the_fix_and_gps_time() -> None:
    e = started().poll(0.0, WALL)
    assert e is not None
    assert (e.msg_id, e.device_id, e.site_id, e.plate) == ("", "trk-1", "site-a", "桂BZ8801")
    assert e.ts == T0 and e.gps_fix
    assert abs(e.speed_kmh - 36.0) < 0.05 and e.heading_deg == 90.0
    assert (e.lid_closed, e.bed_raised, e.ignition, e.load_kg) == (True, False, True, 14_000.0)


def test_one_report_per_interval() -> None:
    r = started()
    assert r.poll(0.0, WALL) is not None
    times = []
    for k in range(1, 41):  # 1 Hz fixes and I/O for 40 s
        now = float(k)
        r.on_fix(rmc(k), now)
        r.on_io(IO, now)
        if r.poll(now, WALL) is not None:
            times.append(now)
    assert times == [10.0, 20.0, 30.0, 40.0]


def test_changes_report_at_once() -> None:
    r = started()
    assert r.poll(0.0, WALL) is not None
    assert r.poll(1.0, WALL) is None
    r.on_io(IoReading(lid_closed=True, bed_raised=True, ignition=True, load_kg=14_000.0), 1.5)
    bed = r.poll(1.5, WALL)
    assert bed is not None and bed.bed_raised
    r.on_io(IoReading(lid_closed=True, bed_raised=True, ignition=True, load_kg=13_600.0), 2.0)
    assert r.poll(2.0, WALL) is None  # 400 kg is below the step
    r.on_io(IoReading(lid_closed=True, bed_raised=True, ignition=True, load_kg=13_400.0), 2.5)
    load = r.poll(2.5, WALL)
    assert load is not None and load.load_kg == 13_400.0
    r.on_io(IoReading(lid_closed=False, bed_raised=True, ignition=True, load_kg=13_400.0), 3.0)
    assert r.poll(3.0, WALL) is not None
    r.on_io(IoReading(lid_closed=False, bed_raised=True, ignition=False, load_kg=13_400.0), 3.5)
    ign = r.poll(3.5, WALL)
    assert ign is not None and not ign.ignition


def test_stale_fix_reports_last_position_without_fix_and_local_time() -> None:
    r = started()
    assert r.poll(0.0, WALL) is not None
    r.on_io(IO, 9.5)  # the I/O module still answers
    e = r.poll(10.0, WALL)  # no fix for 10 s > fix_stale_s
    assert e is not None and not e.gps_fix
    assert (e.lat, e.lon) == (24.37, 109.40) and e.ts == WALL and e.speed_kmh == 0.0


def test_void_fix_keeps_position_and_clears_gps_fix() -> None:
    r = started()
    r.poll(0.0, WALL)
    r.on_fix(rmc(10, valid=False), 10.0)
    r.on_io(IO, 10.0)
    e = r.poll(10.0, WALL)
    assert e is not None and not e.gps_fix and e.ts == WALL
    assert (e.lat, e.lon) == (24.37, 109.40)
    r.on_fix(rmc(20, lat=24.38), 20.0)
    r.on_io(IO, 20.0)
    e = r.poll(20.0, WALL)
    assert e is not None and e.gps_fix and e.lat == 24.38 and e.ts == T0 + timedelta(seconds=20)


def test_gga_does_not_move_the_truck() -> None:
    r = started()
    gga = parse_sentence(nmea_encode.gga(T0, 30.0, 120.0))
    assert isinstance(gga, GpsFix)
    r.on_fix(gga, 0.5)
    e = r.poll(0.5, WALL)
    assert e is not None and (e.lat, e.lon) == (24.37, 109.40)


def test_nothing_is_reported_without_a_recent_io_reading() -> None:
    """The I/O module gone: lid, bed and load are unknown, so no report (the agent then judges
    the truck offline) rather than the last reading repeated as current."""
    r = started()
    assert r.poll(0.0, WALL) is not None
    for k in range(1, 21):
        r.on_fix(rmc(k), float(k))
    assert r.poll(10.0, WALL) is None and r.poll(20.0, WALL) is None  # last reading at 0 s, stale after 5 s
    r.on_io(IO, 20.5)  # back
    e = r.poll(20.5, WALL)
    assert e is not None and e.gps_fix
