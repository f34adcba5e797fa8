"""The truck state machine (pure): dumping inside vs outside, load drop, GPS loss, uncovered, hours, km."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.events import TruckTelemetry
from contract.msgid import parse_msg_id
from stream.agents.transport_state import (
    Output,
    TruckState,
    corridor_distance_m,
    distance_m,
    local_day_start,
    step,
)
from stream.rules import Geofence, Rules, TransportRules, TruckPermit

SITE = Geofence(id="xn-1", polygon=[(24.40, 109.40), (24.40, 109.41), (24.39, 109.41), (24.39, 109.40)])
CORRIDOR = Geofence(id="c-1", polygon=[(24.30, 109.30), (24.30, 109.31), (24.20, 109.31), (24.20, 109.30)])
RULES = Rules(
    city="t", disposal_sites=[SITE], corridors=[CORRIDOR],
    trucks=[TruckPermit(plate="DAY", hours=(6, 22)), TruckPermit(plate="COR", corridor="c-1"),
            TruckPermit(plate="NIGHT", hours=(22, 6))],
    transport=TransportRules(moving_kmh=5, uncovered_min_s=60, load_drop_kg=3000, corridor_tolerance_m=200,
                             loaded_kg=1000),
)
T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
INSIDE = (24.395, 109.405)
OUTSIDE = (24.45, 109.45)


class Truck:
    """Feeds reports to one state, accumulating the outputs."""

    def __init__(self, plate: str = "NOPERMIT", device: str = "tt1") -> None:
        self.state, self.plate, self.device, self.seq = TruckState(), plate, device, 0
        self.outs: list[Output] = []

    def report(self, dt_s: float, pos: tuple[float, float] = OUTSIDE, **kw: Any) -> TruckTelemetry:
        self.seq += 1
        fields: dict[str, Any] = dict(speed_kmh=30.0, lid_closed=True, bed_raised=False, load_kg=15000.0,
                                      ignition=True, gps_fix=True)
        fields.update(kw)
        t = TruckTelemetry(msg_id=f"{self.device}:1:{self.seq}", device_id=self.device, site_id="s1",
                           ts=T0 + timedelta(seconds=dt_s), plate=self.plate, lat=pos[0], lon=pos[1],
                           **fields)
        self.send(t)
        return t

    def send(self, t: TruckTelemetry) -> Output:
        # round-trip through JSON as the table does
        self.state = TruckState.from_json(self.state.to_json())
        out = step(self.state, t, parse_msg_id(t.msg_id), RULES)
        self.outs.append(out)
        return out

    def alerts(self, kind: str | None = None) -> list[Any]:
        return [a for o in self.outs for a in o.alerts if kind is None or a.kind == kind]

    def manifest(self) -> list[dict[str, Any]]:
        return [e for o in self.outs for e in o.manifest_events]


def dump(truck: Truck, t0: float, pos: tuple[float, float], **kw: Any) -> None:
    """Stop, raise the bed, unload 15 t in 500 kg..5 t steps, lower the bed, drive off."""
    truck.report(t0, pos, speed_kmh=0, **kw)
    truck.report(t0 + 5, pos, speed_kmh=0, bed_raised=True, **kw)
    for i, load in enumerate((12000.0, 8000.0, 4000.0, 50.0)):
        truck.report(t0 + 10 + 5 * i, pos, speed_kmh=0, bed_raised=True, load_kg=load, **kw)
    truck.report(t0 + 40, pos, speed_kmh=0, load_kg=50.0, **kw)
    truck.report(t0 + 50, pos, speed_kmh=0, load_kg=50.0, **kw)


def test_dump_outside_raises_one_alert_per_episode_with_evidence() -> None:
    truck = Truck()
    truck.report(0)
    dump(truck, 10, OUTSIDE)
    alerts = truck.alerts("illegal_dumping")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.severity.value == "critical" and (a.lat, a.lon) == OUTSIDE
    assert a.evidence == ("tt1:1:1", "tt1:1:2", "tt1:1:3")  # before and at the bed raise
    assert truck.manifest()[1:] == []  # no arrival from an illegal dump
    truck.report(100, speed_kmh=0, bed_raised=True, load_kg=50.0)  # a second, separate episode
    truck.report(110, speed_kmh=0, bed_raised=True, load_kg=50.0)
    assert len(truck.alerts("illegal_dumping")) == 2


def test_dump_inside_a_disposal_site_is_a_legal_unload_and_a_manifest_arrival() -> None:
    truck = Truck()
    truck.report(0, INSIDE)
    dump(truck, 10, INSIDE)
    assert truck.alerts() == []
    arrivals = [e for e in truck.manifest() if e["type"] == "arrival"]
    assert len(arrivals) == 1 and arrivals[0]["kg"] == 15000.0 and arrivals[0]["place"] == "xn-1"


def test_load_drop_without_bed_signal_outside_is_dumping_below_threshold_is_not() -> None:
    truck = Truck()
    truck.report(0)
    truck.report(10, load_kg=13000.0, speed_kmh=0)  # 2 t: not beyond 3 t
    truck.report(20, load_kg=13000.0, speed_kmh=0)
    assert truck.alerts() == []
    truck.report(30, load_kg=11500.0, speed_kmh=0)  # 3.5 t below the peak: a dump
    truck.report(40, load_kg=9000.0, speed_kmh=0)
    truck.report(50, load_kg=9000.0, speed_kmh=0)
    assert len(truck.alerts("illegal_dumping")) == 1
    assert "load fell 3500 kg" in truck.alerts()[0].summary


def test_duplicates_change_nothing() -> None:
    truck = Truck()
    first = truck.report(0)
    raised = truck.report(10, speed_kmh=0, bed_raised=True)
    before = truck.state.to_json()
    for t in (first, raised):
        out = truck.send(t)
        assert out.duplicate and out.alerts == [] and len(out.points) == 1
    assert truck.state.to_json() == before
    assert len(truck.alerts()) == 1


def test_bed_raised_during_gps_loss_is_judged_at_the_next_fix() -> None:
    outside = Truck()
    outside.report(0)
    outside.report(10, speed_kmh=0, bed_raised=True, gps_fix=False)
    outside.report(15, speed_kmh=0, bed_raised=True, load_kg=5000.0, gps_fix=False)
    assert outside.alerts() == []
    outside.report(20, speed_kmh=0, load_kg=5000.0)
    [a] = outside.alerts("illegal_dumping")
    assert "GPS loss" in a.summary and a.evidence[-1] == "tt1:1:4" and "tt1:1:2" in a.evidence
    inside = Truck()
    inside.report(0, INSIDE)
    inside.report(10, INSIDE, speed_kmh=0, bed_raised=True, gps_fix=False)
    inside.report(20, INSIDE, speed_kmh=0, load_kg=100.0)
    assert inside.alerts() == []


@pytest.mark.parametrize(("open_s", "alerts"), [(60, 0), (61, 1)])
def test_uncovered_threshold_is_strictly_longer_than(open_s: int, alerts: int) -> None:
    truck = Truck()
    truck.report(0)
    truck.report(5, lid_closed=False)
    truck.report(35, lid_closed=False)
    truck.report(5 + open_s, lid_closed=True)  # lid closed: reported at once, ends the episode
    assert len(truck.alerts("uncovered_transport")) == alerts


def test_uncovered_once_per_episode_and_a_stop_ends_it() -> None:
    truck = Truck()
    for s in range(0, 200, 10):
        truck.report(s, lid_closed=False)
    assert len(truck.alerts("uncovered_transport")) == 1
    truck.report(200, lid_closed=False, speed_kmh=0)  # stopped: episode over
    for s in range(210, 260, 10):
        truck.report(s, lid_closed=False)
    assert len(truck.alerts("uncovered_transport")) == 1  # 40 s: not long enough
    truck.report(300, lid_closed=False)
    assert len(truck.alerts("uncovered_transport")) == 2


def test_hours_are_beijing_time() -> None:
    day = Truck("DAY")
    day.report(0)  # 10:00 local (02:00 UTC, which would be off-hours in UTC)
    assert day.alerts() == []
    day.report(13 * 3600)  # 23:00 local
    day.report(13 * 3600 + 10)
    assert len(day.alerts("route_or_hours_violation")) == 1
    night = Truck("NIGHT")
    night.report(0)  # 10:00 local: outside 22-6
    night.report(14 * 3600)  # 00:00 local: inside the wrapped window
    assert len(night.alerts("route_or_hours_violation")) == 1


def test_corridor_tolerance() -> None:
    assert corridor_distance_m(CORRIDOR, 24.25, 109.305) == 0.0
    assert corridor_distance_m(CORRIDOR, 24.25, 109.312) == pytest.approx(202.4, abs=1)
    truck = Truck("COR")
    truck.report(0, (24.25, 109.305))
    truck.report(10, (24.25, 109.311))  # ~101 m out: tolerated
    assert truck.alerts() == []
    truck.report(20, (24.25, 109.315))
    truck.report(30, (24.25, 109.316))
    assert len(truck.alerts("route_or_hours_violation")) == 1
    truck.report(40, (24.25, 109.305))
    truck.report(50, (24.25, 109.320))
    assert len(truck.alerts("route_or_hours_violation")) == 2


def test_sealed_rate_distance_math() -> None:
    assert distance_m(24.0, 109.0, 24.009, 109.0) == pytest.approx(1000.75, rel=1e-3)  # 1 km north
    assert distance_m(24.0, 109.0, 24.0, 109.01) == pytest.approx(1016.0, rel=2e-3)  # cos(24°)
    truck = Truck()
    truck.report(0, (24.0, 109.0))
    truck.report(60, (24.009, 109.0))  # loaded, lid closed: sealed km
    truck.report(120, (24.018, 109.0), lid_closed=False)  # opened here (reported at once): 60-120 sealed
    truck.report(180, (24.027, 109.0))  # segment started open: loaded, not sealed
    truck.report(240, (24.036, 109.0), gps_fix=False, lid_closed=False)  # no fix; lid open in between
    truck.report(300, (24.045, 109.0))  # 2 km segment, not sealed
    truck.report(360, (24.054, 109.0), load_kg=0.0)
    truck.report(420, (24.063, 109.0), load_kg=0.0)  # empty: not loaded km
    daily = next(p for p in truck.outs[-1].points if p.measurement == "transport_daily")
    assert daily.fields["loaded_km"] == pytest.approx(6 * 1.00075, rel=1e-3)
    assert daily.fields["sealed_km"] == pytest.approx(3 * 1.00075, rel=1e-3)  # 0-60, 60-120, 300-360
    assert daily.fields["sealed_pct"] == pytest.approx(50.0)
    assert daily.ts_ns == int(datetime(2025, 4, 30, 16, tzinfo=UTC).timestamp()) * 10**9  # 00:00 Beijing
    assert local_day_start(T0, "Asia/Shanghai").utcoffset() == timedelta(hours=8)


def test_gps_jump_is_not_counted() -> None:
    truck = Truck()
    truck.report(0, (24.0, 109.0))
    truck.report(10, (24.5, 109.0))  # 55 km in 10 s
    daily = next(p for p in truck.outs[-1].points if p.measurement == "transport_daily")
    assert daily.fields["loaded_km"] == 0.0


def test_trip_departure_once_per_load() -> None:
    truck = Truck()
    truck.report(0, speed_kmh=0, load_kg=0.0)
    truck.report(10, speed_kmh=0, load_kg=8000.0)  # loading: standing
    truck.report(20, speed_kmh=0, load_kg=15000.0)
    truck.report(30, load_kg=15000.0)  # drives away loaded: departure
    truck.report(40, load_kg=15000.0)
    deps = [e for e in truck.manifest() if e["type"] == "departure"]
    assert [(e["kg"], e["msg_id"], e["place"]) for e in deps] == [(15000.0, "tt1:1:4", "s1")]


def test_stuck_gps_while_moving() -> None:
    truck = Truck()
    for i in range(29):
        truck.report(10 * i)
    assert truck.alerts() == []
    for i in range(30, 61):
        truck.report(10 * i)
    assert len(truck.alerts("stuck_sensor")) == 1
    truck2 = Truck()
    for i in range(40):
        truck2.report(10 * i, (24.45 + i * 1e-4, 109.45))
    assert truck2.alerts() == []
