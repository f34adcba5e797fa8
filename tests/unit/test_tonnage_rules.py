"""Tonnage's pure parts: local (Beijing) days, facility load merging, capacity and zero-landfill rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contract.events import Direction, Severity, WasteCategory, Weighing
from contract.msgid import parse_msg_id
from stream.agents.localday import day_label, local_day, local_day_start_ns
from stream.agents.tonnage_points import DeviceDayTotal, daily_point, day_key, facility_load_point
from stream.agents.tonnage_rules import SiteLoad, over_capacity, raw_waste_landfilled
from stream.alerting.make import alert_id
from stream.dedup import WeighbridgeState
from stream.rules import load_rules
from stream.sinks.line_protocol import to_ns

TZ = "Asia/Shanghai"
RULES = load_rules()  # the Liuzhou example: lz-jm-landfill is zero-landfill, lzh-food has 50 t/d


def ticket(seq: int, ts: datetime, *, site: str = "lzh-food", net: float = 10_000.0,
           category: WasteCategory = WasteCategory.KITCHEN, direction: Direction = Direction.INBOUND,
           device: str = "wb-1") -> Weighing:
    return Weighing(msg_id=f"{device}:1:{seq}", device_id=device, site_id=site, ts=ts, ticket_id=f"T{seq}",
                    plate="桂B12345", direction=direction, gross_kg=net + 10_000, tare_kg=10_000, net_kg=net,
                    category=category, origin="chengzhong")


def test_local_day_starts_at_midnight_beijing_not_utc() -> None:
    before = datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)  # 23:59:59 Beijing, 1 March
    after = before + timedelta(seconds=1)  # 00:00:00 Beijing, 2 March (still 1 March in UTC)
    assert local_day(before, TZ) == "2026-03-01" and local_day(after, TZ) == "2026-03-02"
    assert local_day_start_ns(before, TZ) == to_ns(datetime(2026, 2, 28, 16, tzinfo=UTC))
    assert local_day_start_ns(after, TZ) == to_ns(datetime(2026, 3, 1, 16, tzinfo=UTC))
    assert day_label(local_day_start_ns(after, TZ), TZ) == "2026-03-02"
    assert day_key(ticket(1, before), TZ) != day_key(ticket(2, after), TZ)
    assert daily_point(ticket(2, after), 1.0, 1, TZ).ts_ns == local_day_start_ns(after, TZ)


def test_device_totals_split_at_local_midnight_and_sum_per_site_across_categories() -> None:
    s = WeighbridgeState()
    t0 = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 Beijing
    tickets = [ticket(1, t0), ticket(2, t0 + timedelta(minutes=10), category=WasteCategory.RESIDUAL),
               ticket(3, t0 + timedelta(minutes=40))]  # 00:10 next local day
    for w in tickets:
        assert s.accept(parse_msg_id(w.msg_id), day_key(w, TZ), w.net_kg)
    assert not s.accept(parse_msg_id(tickets[0].msg_id), day_key(tickets[0], TZ), 1.0)
    assert s.site_day_total("lzh-food", local_day_start_ns(t0, TZ)) == (20_000.0, 2)
    assert s.site_day_total("lzh-food", local_day_start_ns(tickets[2].ts, TZ)) == (10_000.0, 1)
    assert s.site_day_total("other", local_day_start_ns(t0, TZ)) == (0.0, 0)


def total(device: str, kg: float, n: int, day: int = 0, msg: str = "m") -> DeviceDayTotal:
    return DeviceDayTotal("lzh-food", device, day, kg, n, msg, 0)


def test_site_load_keeps_largest_total_per_device_so_replays_and_reordering_do_not_double() -> None:
    load = SiteLoad()
    for t in [total("a", 10_000, 1), total("a", 25_000, 2), total("b", 5_000, 1),
              total("a", 10_000, 1), total("a", 25_000, 2)]:  # replayed and out of order
        load.merge(t)
    assert load.total(0) == (30_000.0, 3, 2)
    assert SiteLoad.from_json(load.to_json()) == load


def test_over_capacity_once_per_facility_and_day_at_strictly_above_capacity() -> None:
    load = SiteLoad()
    load.merge(total("a", 50_000, 5))  # exactly 50 t = capacity: not over
    assert over_capacity(load, total("a", 50_000, 5), RULES) is None
    tip = total("b", 1, 1, msg="wb-b:1:9")
    load.merge(tip)
    alert = over_capacity(load, tip, RULES)
    assert alert is not None and alert.kind == "over_capacity" and alert.evidence == ("wb-b:1:9",)
    assert alert.alert_id == alert_id("over_capacity", f"lzh-food|{day_label(0, TZ)}")
    load.merge(total("b", 2, 2))
    assert over_capacity(load, total("b", 2, 2), RULES) is None  # same day: already alerted
    unknown = DeviceDayTotal("no-such-site", "a", 0, 1e9, 1, "m", 0)
    assert over_capacity(SiteLoad(), unknown, RULES) is None
    point = facility_load_point("lzh-food", 0, 60_000, 6, 2, 50.0)
    assert point.fields["load_pct"] == 120.0 and point.fields["over_capacity"] is True


def test_raw_household_waste_at_zero_landfill_facility_is_critical_per_ticket() -> None:
    ts = datetime(2026, 3, 1, 2, tzinfo=UTC)
    raw = ticket(7, ts, site="lz-jm-landfill", category=WasteCategory.RESIDUAL)
    alert = raw_waste_landfilled(raw, RULES)
    assert alert is not None and alert.severity == Severity.CRITICAL and alert.kind == "raw_waste_landfilled"
    assert alert.alert_id == alert_id("raw_waste_landfilled", f"{raw.site_id}/{raw.msg_id}")
    assert alert.evidence == (raw.msg_id,)
    assert raw_waste_landfilled(ticket(8, ts, site="lz-jm-landfill", category=WasteCategory.KITCHEN),
                                RULES) is not None
    assert raw_waste_landfilled(ticket(9, ts, site="lz-jm-landfill", category=WasteCategory.CONSTRUCTION),
                                RULES) is None  # not household waste
    assert raw_waste_landfilled(ticket(10, ts, site="lz-jm-incinerator", category=WasteCategory.RESIDUAL),
                                RULES) is None  # incinerating raw waste is the point
    assert raw_waste_landfilled(ticket(11, ts, site="lz-jm-landfill", category=WasteCategory.RESIDUAL,
                                       direction=Direction.OUTBOUND), RULES) is None


def test_forwarded_totals_round_trip_one_or_many() -> None:
    from stream.agents.tonnage_points import decode_totals, encode_totals

    many = [total("a", 1.5, 1), total("b", 2.0, 2, day=86_400 * 10**9)]
    assert decode_totals(encode_totals(many)) == many
    assert decode_totals(many[0].encode()) == many[:1]  # a record of an earlier version
