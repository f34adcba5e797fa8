"""The replayed day (firmware_sim/replay/): a whole local day at the city's real scale, within
the day, deterministic, numbered so that replaying it twice is the same messages."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from contract import decode
from contract.events import BinLevel, Deposit, TruckTelemetry, Weighing
from contract.msgid import parse_msg_id
from firmware_sim.city import assign_ports, write_site_configs
from firmware_sim.replay.backlog import rows_of, write_backlog
from firmware_sim.replay.day import LOAD_FRACTION, PARTICIPATION, plan_day, yesterday
from firmware_sim.scenario import load_scenario
from stream.rules import load_rules
from wastestream.foundation.city import city
from wastestream.foundation.settings import load_settings

TZ = "Asia/Shanghai"
DAY = date(2026, 3, 8)


def test_the_day_is_whole_local_and_at_the_citys_scale() -> None:
    scenario = load_scenario(city("liuzhou").scenario)
    plan = plan_day(scenario, DAY, TZ)
    local = {e.event.ts.astimezone(ZoneInfo(TZ)).date() for e in plan.items}
    assert local == {DAY}, "every event on the replayed local day, none on the next"
    hours = {w.ts.astimezone(ZoneInfo(TZ)).hour for w in plan.of(Weighing)}
    assert len(hours) >= 16, "tickets spread over the day, not compressed into a few hours"
    tonnage = plan.tonnage_kg()
    facilities = {f.id: f for f in scenario.weighbridge_sites()}
    assert set(tonnage) == set(facilities), "every facility with a weighbridge receives tickets"
    for site, kg in tonnage.items():
        use = kg / 1000 / facilities[site].capacity_t_per_day
        assert LOAD_FRACTION - 0.05 < use < 1.0, (site, use)
    assert 150 <= sum(plan.tickets().values()) <= 500, "a few hundred truck tickets"
    total_t = sum(tonnage.values()) / 1000
    assert 2300 < total_t < 2900, total_t  # 柳州 ≈ 2,740 t/d (the plan's 100 万吨/年 ceiling)


def test_a_normal_day_raises_no_alert_by_its_own_figures() -> None:
    scenario = load_scenario(city("liuzhou").scenario)
    rules = load_rules(city("liuzhou").rules)
    plan = plan_day(scenario, DAY, TZ)
    levels = [b.fill_pct for b in plan.of(BinLevel) if isinstance(b, BinLevel)]
    assert max(levels) < rules.sorting.bin_full_pct, "a normal day's bins are emptied before full"
    for w in plan.of(Weighing):
        assert isinstance(w, Weighing) and not w.flags and w.stable
    reports = [t for t in plan.of(TruckTelemetry) if isinstance(t, TruckTelemetry)]
    moving = [t for t in reports if t.speed_kmh >= rules.transport.moving_kmh]
    assert moving and all(t.lid_closed for t in moving), "never uncovered while moving"
    for t in reports:
        if t.bed_raised:
            assert rules.inside_disposal_site(t.lat, t.lon) is not None, "unloads only inside a site"
    deposits = [d for d in plan.of(Deposit) if isinstance(d, Deposit)]
    households = sum(c.households for c in scenario.station_sites())
    assert len({d.household for d in deposits}) == round(households * PARTICIPATION), "participation"


def test_the_same_day_twice_is_the_same_messages(tmp_path: Path) -> None:
    scenario = load_scenario(city("liuzhou").scenario)
    first, second = rows_of(plan_day(scenario, DAY, TZ)), rows_of(plan_day(scenario, DAY, TZ))
    assert first == second
    epoch = int(datetime(2026, 3, 8, tzinfo=ZoneInfo(TZ)).timestamp())
    for site, rows in first.items():
        for device, seq, msg_id, topic, payload in rows[:50]:
            key = parse_msg_id(msg_id)
            assert (key.device_id, key.epoch, key.seq) == (device, epoch, seq)
            event = decode(payload, None)  # type: ignore[arg-type]
            assert event.msg_id == msg_id and event.site_id == site and topic.endswith(f"/{event.event}")
    # into real outboxes: twice is stored once
    run_dir = tmp_path / "run"
    write_site_configs(scenario, run_dir, load_settings(), assign_ports(scenario))
    plan = plan_day(scenario, DAY, TZ)
    assert write_backlog(plan, run_dir).rows == len(plan.items)
    assert write_backlog(plan, run_dir).rows == 0


def test_yesterday_is_the_local_day_before() -> None:
    assert yesterday(TZ, datetime(2026, 12, 7, 15, 30, tzinfo=UTC)) == date(2026, 12, 6)
    # 17:00 UTC is 01:00 on the 8th in Beijing: yesterday is the 7th
    assert yesterday(TZ, datetime(2026, 12, 7, 17, 0, tzinfo=UTC)) == date(2026, 12, 7)
