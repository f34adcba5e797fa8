"""The city-scale load generator (wastestream/bench/citygen.py): valid messages at the model's rates."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from contract.codec import decode, encode
from contract.events import DeviceStatus, TruckTelemetry
from contract.msgid import parse_msg_id
from contract.topics import parse_mqtt_topic
from stream.agents.device_health_state import Health, on_status
from stream.agents.transport_state import MAX_PLAUSIBLE_KMH, TruckState, distance_m, step
from stream.rules import load_rules
from stream.validation import Routed, validate
from wastestream.bench.city import CityModel
from wastestream.bench.citygen import (
    BBOX,
    KINDS,
    MEASUREMENTS,
    CitySchedule,
    city_plan,
    drive,
    driving_trucks,
)
from wastestream.bench.cityrun import city_table
from wastestream.bench.stats import fifo_delays, slope

T0 = datetime(2024, 6, 3, 0, 30, tzinfo=UTC)  # 08:30 Beijing time: the morning drop-off window
SMALL = CityModel(population=200_000)
"""71 stations, 144 trucks (86 driving), 60 weighbridges: the same rates per device, 1/20 of the city."""


def messages(model: CityModel, seconds: float, parts: int = 1,
             prefix: str = "cT") -> list[tuple[float, str, bytes]]:
    out = []
    for part in range(parts):
        out += [(due, topic, encode(m)) for due, topic, m in
                CitySchedule(model, prefix, part, parts).run(seconds, T0)]
    return out


def test_the_plan_is_city_py_devices_dealt_to_disjoint_publishers() -> None:
    model = CityModel()
    plan = city_plan(model, "cX")
    counts = Counter(p.kind for p in plan)
    assert counts == {"sorting_station": 3571, "truck": 2880, "weighbridge": 60}
    assert dict(counts) == {k: v for k, v in model.devices().items()}
    assert len({p.device for p in plan}) == len(plan) and all(p.device.startswith("cX") for p in plan)
    schedules = [CitySchedule(model, "cX", part, 3) for part in range(3)]
    ids = [d.plan.device for s in schedules for d in s.devices]
    assert sorted(ids) == sorted(p.device for p in plan)
    assert sum(s.counts["driving"] for s in schedules) == driving_trucks(model) == 1728


def test_every_message_is_a_contract_message_the_bridge_routes() -> None:
    seen = Counter()
    for _, topic, payload in messages(SMALL, 120.0, parts=2):
        event = decode(payload)
        routed = validate(topic, payload)
        assert isinstance(routed, Routed), (topic, routed)
        t = parse_mqtt_topic(topic)
        assert (t.device_id, t.site_id, t.event) == (event.device_id, event.site_id, event.event)
        assert t.kind == {"st": "sorting_station", "tr": "truck", "wb": "weighbridge"}[event.device_id[2:4]]
        assert event.ts >= T0
        seen[event.event] += 1
    assert set(seen) == set(KINDS) and set(MEASUREMENTS) == set(KINDS)


@pytest.mark.parametrize("parts", [1, 3])
def test_rates_per_kind_are_the_models_within_tolerance(parts: int) -> None:
    seconds = 900.0
    counts = Counter(decode(p).event for _, _, p in messages(SMALL, seconds, parts))
    for kind, rate in SMALL.peak_rates().items():
        if kind == "weighing":
            continue  # 0.16/s: counted over a longer run below
        assert counts[kind] / seconds == pytest.approx(rate, rel=0.05), kind


def test_weighings_at_the_busy_hour_rate_and_each_device_on_its_period() -> None:
    model = CityModel(population=20_000)  # 7 stations, 14 trucks, all 60 weighbridges
    seconds = 24_000.0
    by_device: dict[tuple[str, str], list[float]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    for due, topic, _ in messages(model, seconds):
        t = parse_mqtt_topic(topic)
        by_device[(t.device_id, t.event)].append(due)
        kinds[t.event] += 1
    assert kinds["weighing"] / seconds == pytest.approx(model.peak_rates()["weighing"], rel=0.06)
    period = {"bin_level": model.bin_report_s / model.bins_per_station,
              "truck_telemetry": model.truck_report_s, "device_status": model.heartbeat_s}
    for (device, event), dues in by_device.items():
        if event in period:  # periodic streams: exactly their period (4 bins per station report in turn)
            assert len(dues) == pytest.approx(seconds / period[event], abs=model.bins_per_station), device
        if event in ("truck_telemetry", "device_status"):
            assert {round(b - a, 6) for a, b in itertools.pairwise(dues)} == {period[event]}


def test_msg_ids_are_unique_and_ordered_per_device_across_its_event_types() -> None:
    per_device: dict[str, list[int]] = defaultdict(list)
    ids = set()
    for _, _, payload in messages(SMALL, 300.0, parts=2):
        event = decode(payload)
        key = parse_msg_id(event.msg_id)
        assert key.device_id == event.device_id and key.epoch == 1
        per_device[event.device_id].append(key.seq)
        ids.add(event.msg_id)
    assert len(ids) == sum(len(s) for s in per_device.values())
    for seqs in per_device.values():
        assert seqs == list(range(1, len(seqs) + 1))  # in send order, no gap: one outbox per device


def test_trucks_drive_a_plausible_path_in_the_city_and_raise_nothing() -> None:
    rules = load_rules()
    states: dict[str, TruckState] = defaultdict(TruckState)
    last: dict[str, TruckTelemetry] = {}
    alerts = []
    moving = 0
    for _, _, payload in messages(SMALL, 600.0):
        t = decode(payload)
        if not isinstance(t, TruckTelemetry):
            continue
        assert BBOX[0] <= t.lat <= BBOX[2] and BBOX[1] <= t.lon <= BBOX[3]
        assert rules.inside_disposal_site(t.lat, t.lon) is None
        assert 0 <= t.heading_deg < 360 and t.lid_closed and not t.bed_raised
        prev = last.get(t.device_id)
        if prev is not None:
            dt = (t.ts - prev.ts).total_seconds()
            kmh = distance_m(prev.lat, prev.lon, t.lat, t.lon) / dt * 3.6
            assert kmh <= 60 < MAX_PLAUSIBLE_KMH
            assert kmh <= prev.speed_kmh + 0.5  # at the speed it reported (less where it turned)
            moving += kmh > 5
            assert t.load_kg >= prev.load_kg  # nothing unloaded on the street
        last[t.device_id] = t
        alerts += step(states[t.device_id], t, parse_msg_id(t.msg_id), rules).alerts
    assert moving > 0.7 * 86 * 59
    assert alerts == []  # lawful trucks: the transport agent works on them without raising anything
    assert any(s.days for s in states.values())  # sealed-rate kilometres were counted


def test_heartbeats_keep_every_device_online() -> None:
    rules = load_rules()
    health: dict[str, Health] = defaultdict(Health)
    for due, _, payload in messages(SMALL, 130.0):
        s = decode(payload)
        if isinstance(s, DeviceStatus):
            heard_ns = int((T0.timestamp() + due) * 1e9)
            out = on_status(health[s.device_id], s, parse_msg_id(s.msg_id), heard_ns, rules)
            assert out.alerts == [] and not out.duplicate
    assert len(health) == sum(SMALL.devices().values())


def test_drive_sends_on_schedule_in_real_time_and_stops_at_the_end() -> None:
    clock = [1000.0]
    sent: list[tuple[float, str]] = []

    def sleep(s: float) -> None:
        clock[0] += s

    schedule = CitySchedule(SMALL, "cD")
    stats = drive(schedule, 1002.0, 30.0, lambda topic, payload, kind: sent.append((clock[0], kind)),
                  clock=lambda: clock[0], sleep=sleep)
    assert 1032.0 <= clock[0] < 1032.1
    expected = sum(SMALL.peak_rates().values()) * 30
    assert len(sent) == pytest.approx(expected, rel=0.1)
    assert stats.late_max_s < 0.06 and stats.late_over_1s == 0 and stats.first_send >= 1002.0


def test_drive_waits_while_the_broker_is_behind() -> None:
    clock = [0.0]
    sent: list[str] = []

    def sleep(s: float) -> None:
        clock[0] += s

    stats = drive(CitySchedule(SMALL, "cB"), 0.0, 10.0, lambda topic, payload, kind: sent.append(kind),
                  backlogged=lambda: clock[0] < 5.0, clock=lambda: clock[0], sleep=sleep)
    assert sent and stats.first_send >= 5.0 and stats.late_max_s > 4.0


def test_backlog_trend_and_delay_from_counts() -> None:
    assert slope([(0.0, 0.0), (1.0, 2.0), (2.0, 4.0)]) == pytest.approx(2.0)
    assert math.isnan(slope([(0.0, 1.0)]))
    sent = [(0.0, 0), (1.0, 100), (2.0, 200), (3.0, 300)]
    # stored 50 at t=2 (sent at 0.5: 1.5 s old), 200 at t=3 (sent at 2: 1 s), nothing yet at t=0
    assert fifo_delays(sent, [(0.0, 0), (2.0, 50), (3.0, 200)]) == pytest.approx([1.5, 1.0])
    assert fifo_delays(sent, [(3.0, 400)]) == []  # more than was sent: not a delay


def test_the_printed_table() -> None:
    kind = {"model_msg_per_s": 1.0, "offered_msg_per_s": 1.0, "delivered_msg_per_s": math.nan, "in_db": 3,
            "acked": 3, "latency_p50_ms": 10.0, "latency_p99_ms": math.nan}
    text = city_table({
        "devices": {"sorting_station": 3571, "truck": 2880, "truck_driving": 1728, "weighbridge": 60},
        "duration_s": 120.0, "warmup_s": 5.0, "kinds": dict.fromkeys(KINDS, kind), "total": kind,
        "kept_up": True, "backlog_at_end": 4, "kafka_lag_at_end": None, "drained": True, "drain_s": 1.5,
        "backlog_max": 20.0, "backlog_trend_msg_per_s": 0.0, "publish_late_max_ms": 3.0,
        "delay_p50_s": 0.5, "delay_max_s": 2.0, "kafka_records": 20,
        "publish_late_over_1s": 0, "cpu_pct": {"worker-0": 50.0}, "machine_cpu_pct": 60.0})
    assert "device_status*" in text and "kept up: yes" in text and "worker-0 50" in text
    assert "max 2.0 s" in text and "20 records" in text


def test_a_run_started_later_stamps_later() -> None:
    later = [m for _, _, m in CitySchedule(SMALL, "cL").run(5.0, T0 + timedelta(hours=1))]
    assert later and all(m.ts >= T0 + timedelta(hours=1) for m in later)


def test_delivered_curve_from_the_sinks_tallies() -> None:
    """cityrun reads the delivered curve from `pipeline_stored` tallies (no count over the series
    while publishing): counters are linear between samples, 0 before the first, flat after the
    last, and several (workers, kinds) add up at every one's sample times."""
    from wastestream.bench.cityrun import merged_total, value_at

    assert value_at([(1.0, 10.0), (3.0, 30.0)], 2.0) == 20.0
    assert value_at([(1.0, 10.0), (3.0, 30.0)], 0.0) == 0.0
    assert value_at([(1.0, 10.0), (3.0, 30.0)], 9.0) == 30.0
    assert value_at([], 1.0) == 0.0
    two_workers = {"a": [(0.0, 0.0), (5.0, 50.0), (10.0, 100.0)], "b": [(2.5, 0.0), (7.5, 50.0)]}
    assert merged_total(two_workers) == [(0.0, 0.0), (2.5, 25.0), (5.0, 75.0), (7.5, 125.0), (10.0, 150.0)]
