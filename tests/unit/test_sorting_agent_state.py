"""Sorting's pure logic: accuracy with unchecked deposits, local days, low-accuracy once, bin_full re-arm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from contract.events import BinLevel, Deposit, Verdict, VerdictSource, WasteCategory
from contract.msgid import parse_msg_id
from stream.agents.sorting_state import (
    BinState,
    DayCounts,
    StationState,
    deposit_point,
    low_accuracy,
    sorting_daily_point,
    station_day_key,
)
from stream.alerting.make import alert_id
from stream.rules import SortingRules

TZ = "Asia/Shanghai"
T0 = datetime(2026, 3, 1, 2, tzinfo=UTC)  # 10:00 Beijing


def deposit(seq: int, verdict: Verdict, kg: float = 2.0, ts: datetime = T0,
            household: str = "hh-00000001") -> Deposit:
    return Deposit(msg_id=f"st-1:1:{seq}", device_id="st-1", site_id="cz", ts=ts, community_id="cz-wuxing",
                   bin=WasteCategory.KITCHEN, kg=kg, household=household, verdict=verdict,
                   verdict_source=VerdictSource.NONE if verdict == Verdict.UNCHECKED
                   else VerdictSource.CAMERA)


def level(seq: int, fill: float, bin: WasteCategory = WasteCategory.KITCHEN) -> BinLevel:
    return BinLevel(msg_id=f"st-1:1:{seq}", device_id="st-1", site_id="cz", ts=T0 + timedelta(minutes=seq),
                    community_id="cz-wuxing", bin=bin, fill_pct=fill)


def test_accuracy_counts_and_weights_exclude_unchecked() -> None:
    c = DayCounts()
    for d in [deposit(1, Verdict.CORRECT, 3.0), deposit(2, Verdict.INCORRECT, 1.0),
              deposit(3, Verdict.UNCHECKED, 10.0), deposit(4, Verdict.CORRECT, 1.0)]:
        c.add(d)
    assert (c.deposits, c.checked, c.correct) == (4, 3, 2)
    assert (c.kg, c.checked_kg, c.correct_kg) == (15.0, 5.0, 4.0)
    assert c.accuracy_pct is not None and abs(c.accuracy_pct - 200 / 3) < 1e-9
    assert c.weight_accuracy_pct == 80.0
    only_unchecked = DayCounts()
    only_unchecked.add(deposit(5, Verdict.UNCHECKED))
    assert only_unchecked.accuracy_pct is None and only_unchecked.weight_accuracy_pct is None
    fields = sorting_daily_point(deposit(5, Verdict.UNCHECKED), only_unchecked, TZ).fields
    assert "accuracy_pct" not in fields and fields["deposits"] == 1


def test_station_state_dedups_and_splits_at_beijing_midnight() -> None:
    s = StationState()
    late = T0 + timedelta(hours=13, minutes=59)  # 23:59 Beijing
    deps = [deposit(1, Verdict.CORRECT, ts=late),
            deposit(2, Verdict.INCORRECT, ts=late + timedelta(minutes=2))]
    for d in deps:
        assert s.accept(parse_msg_id(d.msg_id), station_day_key(d, TZ), d)
    assert not s.accept(parse_msg_id(deps[0].msg_id), station_day_key(deps[0], TZ), deps[0])
    assert station_day_key(deps[0], TZ) != station_day_key(deps[1], TZ)
    assert [c.deposits for c in s.days.values()] == [1, 1]
    again = StationState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s


def test_low_accuracy_needs_enough_checked_deposits_and_fires_once_per_day() -> None:
    rules = SortingRules(low_accuracy_pct=80, min_deposits_for_accuracy=4)
    c = DayCounts()
    for i, v in enumerate([Verdict.INCORRECT, Verdict.UNCHECKED, Verdict.UNCHECKED, Verdict.CORRECT,
                           Verdict.CORRECT], start=1):
        c.add(deposit(i, v))
        assert low_accuracy(c, deposit(i, v), rules, TZ) is None  # < 4 checked (unchecked do not count)
    c.add(deposit(6, Verdict.CORRECT))
    alert = low_accuracy(c, deposit(6, Verdict.CORRECT), rules, TZ)  # 3/4 = 75 % < 80 %
    assert alert is not None and alert.kind == "low_sorting_accuracy" and alert.evidence == ("st-1:1:6",)
    assert alert.alert_id == alert_id("low_sorting_accuracy", "cz/st-1|2026-03-01")
    c.add(deposit(7, Verdict.INCORRECT))
    assert low_accuracy(c, deposit(7, Verdict.INCORRECT), rules, TZ) is None  # once per station-day
    good = DayCounts(checked=4, correct=4)
    assert low_accuracy(good, deposit(8, Verdict.CORRECT), rules, TZ) is None


def test_bin_full_once_per_fill_cycle_and_rearms_below_threshold() -> None:
    s = BinState()
    kinds = []
    for seq, fill in [(1, 50), (2, 90), (3, 95), (4, 20), (5, 89.9), (6, 92)]:
        changed, alert = s.apply(parse_msg_id(f"st-1:1:{seq}"), level(seq, fill), 90.0)
        assert changed
        kinds.append(alert.alert_id if alert else None)
    assert kinds == [None, alert_id("bin_full", "kitchen|cz/st-1:1:2"), None, None, None,
                     alert_id("bin_full", "kitchen|cz/st-1:1:6")]
    assert s.apply(parse_msg_id("st-1:1:2"), level(2, 90), 90.0) == (False, None)  # stale replay
    changed, other = s.apply(parse_msg_id("st-1:1:7"), level(7, 99, WasteCategory.RECYCLABLE), 90.0)
    assert other is not None  # bins are independent
    assert BinState.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_bin_readings_of_a_replaced_box_with_a_lower_epoch_are_applied() -> None:
    """Issue 11 finding 4: readings were ordered by (epoch, seq), so a new box whose clock was
    wrong (lower epoch) had every reading taken for stale."""
    s = BinState()
    assert s.apply(parse_msg_id("st-1:1772323200:5"), level(5, 20), 90.0)[0]
    changed, alert = s.apply(parse_msg_id("st-1:1740000000:1"), level(6, 95), 90.0)
    assert changed and alert is not None
    assert s.apply(parse_msg_id("st-1:1740000000:1"), level(6, 95), 90.0) == (False, None)  # replay


def test_deposit_point_keeps_household_a_field_and_drops_it_for_anonymous() -> None:
    p = deposit_point(deposit(1, Verdict.CORRECT))
    assert p.fields["household"] == "hh-00000001" and "household" not in p.tags
    assert set(p.tags) == {"site", "community", "device", "bin", "verdict"}
    assert "household" not in deposit_point(deposit(2, Verdict.CORRECT, household="anonymous")).fields
