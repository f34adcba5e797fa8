"""Batched sorting / bin_levels / transport / device_health agents: same results as one event at a
time (the pure state folded in order), in the order of stream/agents/runner.py: alerts (and
manifest events) in Kafka, then ONE table write per changed key, then the points, then the ack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from faust import current_event

from contract.codec import decode, encode
from contract.events import (
    BinLevel,
    Deposit,
    DeviceState,
    DeviceStatus,
    Envelope,
    TruckTelemetry,
    Verdict,
    VerdictSource,
    WasteCategory,
)
from contract.kafka_record import encode_record
from contract.msgid import device_key, parse_msg_id
from stream.agents import device_health, manifest, runner, sorting, transport
from stream.agents.device_health_state import Health, on_check, on_status
from stream.agents.manifest_state import Watermark
from stream.agents.sorting_state import (
    BinState,
    StationState,
    sorting_daily_point,
    station_day_key,
)
from stream.agents.transport_state import TRANSPORT_DAILY, TruckState, step
from stream.rules import DeviceHealthRules, Geofence, Rules, SortingRules, TransportRules
from stream.sinks.line_protocol import Point, to_ns

T0 = datetime(2026, 3, 1, 15, 50, tzinfo=UTC)  # 23:50 Beijing: the batch crosses local midnight
NS = 1_000_000_000
SITE = Geofence(id="xn-1", polygon=[(24.40, 109.40), (24.40, 109.41), (24.39, 109.41), (24.39, 109.40)])
RULES = Rules(city="t", sorting=SortingRules(min_deposits_for_accuracy=4, low_accuracy_pct=80.0),
              disposal_sites=[SITE], transport=TransportRules(loaded_kg=1000),
              device_health=DeviceHealthRules(offline_after_s=300, outbox_growing_depth=100))


@dataclass
class Msg:
    topic: str
    partition: int = 0
    timestamp: float = 0.0


@dataclass
class Event:
    value: bytes
    message: Msg


class Table(dict[str, Any]):
    """A Faust table as the agents use it: get / set of JSON values; each set is logged, with
    the event Faust would route its changelog record by (`current_event()`)."""

    def __init__(self, trace: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.trace = trace
        self.routed: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.trace.append(("write", key))
        self.routed[key] = current_event()
        super().__setitem__(key, json.loads(json.dumps(value)))


class Sink:
    def __init__(self, trace: list[tuple[str, Any]]) -> None:
        self.trace = trace

    async def write(self, point: Point, on_done: Any = None) -> None:
        self.trace.append(("point", point))
        if on_done is not None:
            result = on_done()
            if hasattr(result, "__await__"):
                await result


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, *tables: str) -> None:
        self.trace: list[tuple[str, Any]] = []
        self.deadletters: list[bytes] = []
        self.tables = {name: Table(self.trace) for name in tables}
        for name, table in self.tables.items():
            monkeypatch.setattr(module, name, table)
        monkeypatch.setattr(module, "rules", RULES)
        monkeypatch.setattr(module, "send_alerts", self._alerts)
        monkeypatch.setattr(runner, "send_deadletter", self._deadletter)
        monkeypatch.setattr(manifest, "send_events", self._manifest)
        self.module = module

    async def _alerts(self, alerts: list[Any]) -> None:
        self.trace += [("alert", a.alert_id) for a in alerts]

    async def _manifest(self, events: list[dict[str, Any]]) -> None:
        self.trace += [("manifest", e["id"]) for e in events]

    async def _deadletter(self, record: bytes) -> None:
        self.deadletters.append(record)

    def run(self, process: Any, events: list[Event]) -> None:
        asyncio.run(process(events, Sink(self.trace), lambda: self.trace.append(("ack", None))))

    def of(self, kind: str) -> list[Any]:
        return [v for k, v in self.trace if k == kind]

    def assert_runner_order(self) -> None:
        kinds = [k for k, _ in self.trace]
        rank = {"alert": 0, "manifest": 0, "write": 1, "point": 2, "ack": 3}
        assert [rank[k] for k in kinds] == sorted(rank[k] for k in kinds), kinds
        assert kinds[-1] == "ack" and kinds.count("ack") == 1


def events(topic: str, messages: Sequence[Envelope], **msg: Any) -> list[Event]:
    return [Event(encode(m), Msg(topic, **msg)) for m in messages]


# ------------------------------------------------------------------------------ sorting


def deposit(station: str, seq: int, verdict: Verdict, minutes: float) -> Deposit:
    return Deposit(msg_id=f"{station}:1:{seq}", device_id=station, site_id="cz",
                   ts=T0 + timedelta(minutes=minutes), community_id="cz-wuxing", bin=WasteCategory.KITCHEN,
                   kg=1.0 + seq, household="a1b2c3d4e5f6a7b8",
                   verdict=verdict, verdict_source=VerdictSource.CAMERA)


def test_sorting_batch_equals_one_at_a_time_with_one_write_per_station(
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, sorting, "station_state")
    deps = [deposit(st, seq, Verdict.INCORRECT if seq % 2 else Verdict.CORRECT, seq * 3)
            for seq in range(1, 8) for st in ("st-1", "st-2")]  # 7 each, the last ones after midnight
    batch = events("ws.deposits", [*deps, deps[0], deps[5]])
    batch.insert(3, Event(b'{"not": "a deposit"}', Msg("ws.deposits")))
    before = (sorting.Counters.processed, sorting.Counters.duplicates, sorting.Counters.rejected)
    h.run(sorting.process_deposits, batch)

    h.assert_runner_order()
    assert sorted(h.of("write")) == ["cz/st-1", "cz/st-2"]
    for station, event in h.tables["station_state"].routed.items():
        d = decode(event.value, Deposit)
        assert device_key(d.site_id, d.device_id) == station  # type: ignore[union-attr]
    assert len(h.deadletters) == 1
    after = (sorting.Counters.processed, sorting.Counters.duplicates, sorting.Counters.rejected)
    assert [b - a for a, b in zip(before, after, strict=True)] == [14, 2, 1]

    # the reference: each deposit on its own state round trip, every point written
    ref: dict[str, StationState] = {}
    ref_daily: dict[tuple[str, int, str], Point] = {}
    ref_alerts = []
    for d in [*deps, deps[0], deps[5]]:
        station = device_key(d.site_id, d.device_id)
        state = StationState.from_json(ref[station].to_json() if station in ref else None)
        dk = station_day_key(d, RULES.timezone)
        if state.accept(parse_msg_id(d.msg_id), dk, d):
            alert = sorting.low_accuracy(state.days[dk], d, RULES.sorting, RULES.timezone)
            ref_alerts += [alert.alert_id] if alert else []
        ref[station] = state
        p = sorting_daily_point(d, state.days[dk], RULES.timezone)
        ref_daily[(p.tags["device"], p.ts_ns, p.measurement)] = p
    assert h.of("alert") == ref_alerts and ref_alerts
    assert {k: v for k, v in h.tables["station_state"].items()} == {k: s.to_json() for k, s in ref.items()}
    points = h.of("point")
    assert len([p for p in points if p.measurement == "deposit"]) == 16  # one per valid record
    daily = [p for p in points if p.measurement == "sorting_daily"]
    assert len(daily) == len(ref_daily) == 4  # 2 stations x 2 local days, the last of each
    assert sorted(daily, key=repr) == sorted(ref_daily.values(), key=repr)


def test_bin_levels_batch_alerts_once_and_writes_changed_stations(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, sorting, "bin_state")
    levels = [BinLevel(msg_id=f"st-1:1:{seq}", device_id="st-1", site_id="cz", ts=T0 + timedelta(minutes=seq),
                       community_id="cz-wuxing", bin=WasteCategory.KITCHEN, fill_pct=fill)
              for seq, fill in enumerate((50.0, 95.0, 97.0, 10.0, 92.0), start=1)]
    h.run(sorting.process_bin_levels, events("ws.bin-levels", [*levels, levels[1]]))
    h.assert_runner_order()
    assert len(h.of("alert")) == 2  # two fill cycles
    assert h.of("write") == ["cz/st-1"]
    ref = BinState()
    for b in levels:
        ref.apply(parse_msg_id(b.msg_id), b, 90.0)
    assert h.tables["bin_state"]["cz/st-1"] == ref.to_json()
    assert len(h.of("point")) == 6


# ------------------------------------------------------------------------------ transport


def report(seq: int, dt_s: float, pos: tuple[float, float], **kw: Any) -> TruckTelemetry:
    fields: dict[str, Any] = dict(speed_kmh=30.0, lid_closed=True, bed_raised=False, load_kg=15000.0,
                                  ignition=True, gps_fix=True)
    fields.update(kw)
    return TruckTelemetry(msg_id=f"tt1:1:{seq}", device_id="tt1", site_id="s1",
                          ts=T0 + timedelta(seconds=dt_s), plate="P1", lat=pos[0], lon=pos[1], **fields)


def test_transport_batch_sends_alerts_and_manifest_first_then_one_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, transport, "truck_state")
    monkeypatch.setattr(manifest, "WATERMARK", Watermark())
    outside, inside = (24.45, 109.45), (24.395, 109.405)
    seq = iter(range(1, 100))
    reports = [report(next(seq), 0, outside, speed_kmh=0, load_kg=0.0),
               report(next(seq), 10, outside, speed_kmh=0, load_kg=15000.0),
               *[report(next(seq), 20 + 60 * i, (24.45 - 0.01 * i, 109.45)) for i in range(6)],
               report(next(seq), 400, outside, speed_kmh=0),
               report(next(seq), 405, outside, speed_kmh=0, bed_raised=True, load_kg=4000.0),  # illegal dump
               report(next(seq), 420, inside, speed_kmh=0, load_kg=4000.0),
               report(next(seq), 430, inside, speed_kmh=0, bed_raised=True, load_kg=0.0)]
    replayed = [*reports, reports[2], reports[9]]
    h.run(transport.process, events("ws.truck-telemetry", replayed))

    state, ref_alerts, ref_manifest, ref_points = TruckState(), [], [], []
    for t in replayed:
        state = TruckState.from_json(state.to_json())
        out = step(state, t, parse_msg_id(t.msg_id), RULES)
        ref_alerts += [a.alert_id for a in out.alerts]
        ref_manifest += [e["id"] for e in out.manifest_events]
        ref_points += out.points
    assert ref_alerts and ref_manifest
    h.assert_runner_order()
    assert (h.of("alert"), h.of("manifest")) == (ref_alerts, ref_manifest)
    assert h.of("write") == ["s1/tt1"] and h.tables["truck_state"]["s1/tt1"] == state.to_json()
    points = h.of("point")
    assert [p for p in points if p.measurement != TRANSPORT_DAILY] == \
        [p for p in ref_points if p.measurement != TRANSPORT_DAILY]
    last_daily = {(p.tags["device"], p.ts_ns): p for p in ref_points if p.measurement == TRANSPORT_DAILY}
    assert [p for p in points if p.measurement == TRANSPORT_DAILY] == list(last_daily.values())
    assert manifest.WATERMARK.max_ns == max(to_ns(t.ts) for t in reports)


# ------------------------------------------------------------------------------ device health


def status(seq: int, state: str = "online") -> DeviceStatus:
    return DeviceStatus(msg_id=f"wb1:1:{seq}", device_id="wb1", site_id="s1", ts=T0, state=DeviceState(state))


def check(at_s: float) -> Event:
    payload = json.dumps({"device": "s1/wb1", "now_ns": to_ns(T0) + round(at_s * NS)}).encode()
    return Event(payload, Msg(device_health.CHECK_TOPIC, partition=2))


def test_device_health_checks_and_statuses_see_each_other_in_one_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, device_health, "health_table")
    monkeypatch.setattr(device_health, "WATERMARK", Watermark())

    def heard(at_s: float, s: DeviceStatus) -> Event:
        return Event(encode(s), Msg(device_health.STATUS_TOPIC, partition=2, timestamp=T0.timestamp() + at_s))

    batch = [heard(0, status(1)), check(400), check(401),  # silent: one alert, the repeat none
             heard(410, status(2)),  # heard again: re-armed
             check(500),  # not silent for 300 s yet
             heard(520, status(1)),  # duplicate
             check(800), heard(810, status(3, "offline"))]  # silent again, then offline (same episode)
    h.run(device_health.process, batch)

    ref, ref_alerts, ref_points = Health(), [], []
    for e in batch:
        if e.message.topic == device_health.CHECK_TOPIC:
            out = on_check(ref, "s1/wb1", json.loads(e.value)["now_ns"], RULES)
        else:
            s = decode(e.value, DeviceStatus)
            assert isinstance(s, DeviceStatus)
            heard_ns = round(e.message.timestamp * 1000) * 1_000_000
            out = on_status(ref, s, parse_msg_id(s.msg_id), heard_ns, RULES)
            if not out.duplicate:
                ref.partition = 2
        ref_alerts += [a.alert_id for a in out.alerts]
        ref_points += out.points
    assert len(ref_alerts) == 2
    h.assert_runner_order()
    assert h.of("alert") == ref_alerts
    assert h.of("write") == ["s1/wb1"] and h.tables["health_table"]["s1/wb1"] == ref.to_json()
    assert h.tables["health_table"].routed["s1/wb1"].message.partition == 2
    assert h.of("point") == ref_points
    assert device_health.WATERMARK.max_ns == to_ns(T0) + 810 * NS


# ------------------------------------------------------------------------------ batch records (issue 14)


def records(topic: str, messages: Sequence[Envelope], per_record: int, **msg: Any) -> list[Event]:
    """The bridge's version-2 records (contract/kafka_record.py): `per_record` messages each."""
    return [Event(encode_record(messages[i:i + per_record]), Msg(topic, **msg))
            for i in range(0, len(messages), per_record)]


def test_sorting_in_batch_records_equals_one_message_per_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same table values, points and alerts from records of 4 messages as from one per record; a
    bad message inside a record is dead-lettered alone (its own bytes), a redelivered record's
    messages are dropped as duplicates one by one (dedup by msg_id inside batches)."""
    deps = [deposit(st, seq, Verdict.INCORRECT if seq % 2 else Verdict.CORRECT, seq * 3)
            for seq in range(1, 8) for st in ("st-1", "st-2")]
    one = Harness(monkeypatch, sorting, "station_state")
    one.run(sorting.process_deposits, events("ws.deposits", deps))
    ref_state, ref_points, ref_alerts = dict(one.tables["station_state"]), one.of("point"), one.of("alert")

    h = Harness(monkeypatch, sorting, "station_state")
    batch = records("ws.deposits", deps, 4)
    broken = {"type": "deposit", "msg_id": "st-1:1:99"}
    bad = msgspec.msgpack.encode({"v": 2, "m": [deps[0], broken, deps[1]]})
    batch.insert(1, Event(bad, Msg("ws.deposits")))  # its good messages repeat deps[0] and deps[1]
    batch.append(batch[0])  # a redelivered record
    before = (sorting.Counters.processed, sorting.Counters.duplicates, sorting.Counters.rejected)
    h.run(sorting.process_deposits, batch)

    h.assert_runner_order()
    after = (sorting.Counters.processed, sorting.Counters.duplicates, sorting.Counters.rejected)
    assert [b - a for a, b in zip(before, after, strict=True)] == [14, 2 + 4, 1]
    assert [json.loads(r)["payload_encoding"] for r in h.deadletters] == ["base64"]  # the bad message only
    assert json.loads(h.deadletters[0])["payload_bytes"] == len(msgspec.msgpack.encode(broken))
    assert sorted(h.of("write")) == ["cz/st-1", "cz/st-2"]  # still one write per station and batch
    assert dict(h.tables["station_state"]) == ref_state and ref_alerts
    assert h.of("alert") == ref_alerts
    daily = [p for p in h.of("point") if p.measurement == "sorting_daily"]
    ref_daily = [p for p in ref_points if p.measurement == "sorting_daily"]
    assert sorted(daily, key=repr) == sorted(ref_daily, key=repr)
    deposits = [p for p in h.of("point") if p.measurement == "deposit"]
    assert len(deposits) == 14 + 2 + 4  # repeats re-send their (idempotent) points


def test_device_health_reads_several_statuses_of_one_record_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, device_health, "health_table")
    monkeypatch.setattr(device_health, "WATERMARK", Watermark())
    statuses = [status(1), status(2, "offline"), status(3), status(2, "offline")]  # the last a duplicate
    batch = records(device_health.STATUS_TOPIC, statuses, 3, partition=1, timestamp=T0.timestamp())
    h.run(device_health.process, batch)
    ref = Health()
    for s in statuses:
        if not on_status(ref, s, parse_msg_id(s.msg_id), to_ns(T0), RULES).duplicate:
            ref.partition = 1
    assert h.of("write") == ["s1/wb1"] and h.tables["health_table"]["s1/wb1"] == ref.to_json()
    assert [p.fields["state"] for p in h.of("point")] == ["online", "offline", "online", "offline"]


def test_a_timers_table_scan_gives_the_event_loop_turns() -> None:
    """items_in_turns (issue 14): a province's scan of ~65,000 devices held the loop for up to
    0.9 s; every item still comes, once, and other tasks run between the slices."""
    import asyncio

    from stream.agents.runner import items_in_turns

    table = {f"d{i}": i for i in range(2_000)}

    async def scenario() -> tuple[list[tuple[str, int]], int]:
        turns = 0
        stop = False

        async def other_task() -> None:
            nonlocal turns
            while not stop:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        seen_at_start = turns
        items = [item async for item in items_in_turns(table, slice_size=500)]
        stop = True
        await other
        return items, turns - seen_at_start

    items, turns = asyncio.run(scenario())
    assert items == list(table.items())
    assert turns >= 3  # a turn after each 500 of the 2,000 (none without the slices)
