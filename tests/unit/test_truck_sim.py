"""Truck simulator motion model: route following, dumps, the dump_outside incident (no I/O)."""

from __future__ import annotations

import itertools
import random

import msgspec
import pytest

from firmware_sim.scenario import TruckSpec
from firmware_sim.truck import Incident, Polyline, _trips

SPEC = msgspec.convert({
    "id": "trk-1", "plate": "桂BZ8801", "origin": "o", "disposal_site": "xn", "load_kg": 14500,
    "speed_kmh": 36, "route": [[24.3660, 109.4050], [24.3750, 109.4010], [24.3920, 109.3990]],
}, TruckSpec)


def test_polyline_positions_and_length() -> None:
    line = Polyline([(0.0, 0.0), (0.0, 0.01), (0.01, 0.01)])
    assert line.length == pytest.approx(2 * 1111.95, rel=1e-3)
    lat, lon, head = line.at(line.cum[1] / 2)
    assert (lat, lon) == (pytest.approx(0.0), pytest.approx(0.005)) and head == pytest.approx(90.0)
    assert line.at(1e9)[:2] == (0.01, 0.01) and line.at(-5)[:2] == (0.0, 0.0)


def test_round_trip_moves_at_speed_and_dumps_at_the_last_point() -> None:
    states = list(itertools.islice(_trips(SPEC, random.Random(1), None), 800))
    assert states[0].load_kg == 14500 and states[0].lid_closed and states[0].speed_kmh == 0
    dumping = [s for s in states if s.bed_raised]
    assert dumping and all((s.lat, s.lon) == (24.3920, 109.3990) for s in dumping)
    assert [s.dump for s in states if s.dump] == ["dump"]
    after = next(i for i, s in enumerate(states) if s.phase == "inbound")
    assert states[after].load_kg < 100
    first_leg = states[: next(i for i, s in enumerate(states) if s.dump)]
    moving = [s for s in first_leg if s.phase == "outbound" and s.speed_kmh > 0]
    length = Polyline([(p.lat, p.lon) for p in SPEC.route]).length
    assert len(moving) == pytest.approx(length / (36 / 3.6), rel=0.06)  # speed jitters ±2 km/h
    assert any(s.phase == "loading" and not s.lid_closed for s in states)


def test_dump_outside_stops_midway_and_tips_the_load() -> None:
    inc = Incident(kind="dump_outside", at_fraction=0.5, drop_fraction=1.0)
    states = list(itertools.islice(_trips(SPEC, random.Random(1), inc), 800))
    assert [s.dump for s in states if s.dump] == ["dump_outside", "dump"]
    first = next(s for s in states if s.dump == "dump_outside")
    line = Polyline([(p.lat, p.lon) for p in SPEC.route])
    mid = line.at(line.length / 2)
    assert (first.lat, first.lon) == (pytest.approx(mid[0]), pytest.approx(mid[1]))
    arrived = next(s for s in states if s.dump == "dump")
    assert arrived.load_kg < 1.0
