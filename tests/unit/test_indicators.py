"""Indicator formulas on tiny hand-made datasets, status against targets, and the city tables."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from stream.rules import Rules
from wastestream.indicators import formulas as f
from wastestream.indicators.alerts import AlertLog, AlertRecord
from wastestream.indicators.config import (
    IndicatorConfigError,
    Target,
    available_cities,
    load_city,
    seed_lines,
)
from wastestream.indicators.data import CommunitySorting, PeriodData, Tonnage
from wastestream.indicators.evaluate import Status, evaluate, evaluate_table, status_of
from wastestream.indicators.manual import ManualInput, ManualInputs

START = datetime(2025, 6, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
"""A local midnight: periods of `period(days)` are whole local days (judged)."""

RULES = msgspec.convert({
    "city": "testcity",
    "facilities": [
        {"id": "inc", "kind": "incineration", "capacity_t_per_day": 100},
        {"id": "lf", "kind": "landfill", "capacity_t_per_day": 50},
        {"id": "food", "kind": "food_waste", "capacity_t_per_day": 30},
        {"id": "rc", "kind": "recycling_centre", "capacity_t_per_day": 20},
        {"id": "tr", "kind": "transfer", "capacity_t_per_day": 500},
        {"id": "brick", "kind": "construction_recycling", "capacity_t_per_day": 1000},
        {"id": "xn", "kind": "disposal_site", "capacity_t_per_day": 1000},
    ],
    "communities": [{"id": "a", "households": 100}, {"id": "b", "households": 300},
                    {"id": "c", "households": 100}],
}, Rules)


def tonnes(**by_site_cat: float) -> dict[tuple[str, str], Tonnage]:
    """`inc__residual=40` -> {("inc", "residual"): 40 t in one ticket per 10 t}."""
    out = {}
    for key, t in by_site_cat.items():
        site, cat = key.split("__")
        out[(site, cat)] = Tonnage(net_kg=t * 1000, tickets=max(1, round(t / 10)))
    return out


def period(days: float = 1.0, **kw: object) -> PeriodData:
    return PeriodData(START, START + timedelta(days=days), **kw)  # type: ignore[arg-type]


# A day in the test city (tonnes):
#   incinerator: residual 40, kitchen 10   landfill: residual 10        food plant: kitchen 20
#   recycling centre: recyclable 15        transfer station: residual 100 (must not count)
#   brick plant: construction 30           disposal site: construction 90
DAY = tonnes(inc__residual=40, inc__kitchen=10, lf__residual=10, food__kitchen=20, rc__recyclable=15,
             tr__residual=100, brick__construction=30, xn__construction=90)


def ctx(data: PeriodData, **kw: object) -> f.Context:
    return f.Context(data=data, rules=RULES, **kw)  # type: ignore[arg-type]


def test_msw_collected_counts_terminal_facilities_only_and_annualises() -> None:
    # MSW = 40 + 10 + 10 + 20 + 15 = 95 t in one day (transfer station and construction excluded)
    r = f.msw_collected(ctx(period(tonnage=DAY)))
    assert r.inputs["msw_t"] == 95.0
    assert r.value == pytest.approx(95 * 365 / 10_000)  # 3.4675 万吨/年
    # the same tonnage over two days is half the annual rate
    assert f.msw_collected(ctx(period(2.0, tonnage=DAY))).value == pytest.approx(95 * 365 / 2 / 10_000)


def test_msw_collected_no_tickets_is_no_data() -> None:
    assert f.msw_collected(ctx(period(tonnage=tonnes(xn__construction=5)))).value is None


def test_recycling_rate() -> None:
    # recovered = food 20 + recycling centre 15 = 35 t of 95 t
    r = f.recycling_rate(ctx(period(tonnage=DAY)))
    assert r.value == pytest.approx(100 * 35 / 95)
    assert r.inputs == {"recovered_t": 35.0, "msw_t": 95.0}


def test_incineration_rate() -> None:
    # incinerated household 50 t; disposed = incinerator 50 + landfill 10 = 60 t
    assert f.incineration_rate(ctx(period(tonnage=DAY))).value == pytest.approx(100 * 50 / 60)


def test_incineration_capacity_share_from_rules() -> None:
    # 100 / (100 + 50 + 30) t/d; recycling centre, transfer, C&D are not treatment capacity
    r = f.incineration_capacity_share(ctx(period()))
    assert r.value == pytest.approx(100 * 100 / 180)


def test_incineration_capacity_use_with_peak() -> None:
    data = period(2.0, tonnage=tonnes(inc__residual=200), peak_load_pct={"inc": 61.0})
    r = f.incineration_capacity_use(ctx(data))
    # 200 t in two whole days = 100 t/d against 100 t/d
    assert r.value == pytest.approx(100.0)
    assert r.inputs["peak_day_load_pct"] == 61.0 and r.inputs["whole_days"] == 2


@pytest.mark.parametrize("formula", [f.msw_collected, f.incineration_capacity_use])
def test_no_rate_from_part_of_a_day(formula: object) -> None:
    """Half a day (or 90 s) is not extrapolated: no value, the measured tonnes in the note."""
    for part in (period(0.5, tonnage=DAY), period(90 / 86400, tonnage=DAY)):
        r = formula(ctx(part))  # type: ignore[operator]
        assert r.value is None and r.inputs["whole_days"] == 0
        assert "measured so far (partial day)" in r.note


def test_partial_day_and_ended_plan_are_not_judged() -> None:
    table = load_city("liuzhou")
    data = period(0.5, tonnage=DAY, sorting=SORTING)
    results = {r.indicator.id: r for r in evaluate_table(table, ctx(data))}
    assert results["sorting_accuracy"].status is Status.PARTIAL_DAY
    assert results["msw_collected"].status is Status.PARTIAL_DAY and results["msw_collected"].value is None
    later = PeriodData(datetime(2026, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai")),
                       datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai")), tonnage=DAY, sorting=SORTING)
    ended = {r.indicator.id: r for r in evaluate_table(table, ctx(later))}
    assert ended["msw_collected"].status is Status.PLAN_ENDED and ended["msw_collected"].value is not None
    assert "2023—2025年" in ended["msw_collected"].note and "would be: met" in ended["msw_collected"].note
    assert not any(r.status in (Status.MET, Status.NOT_MET) for r in ended.values())


def test_a_day_not_yet_over_is_partial() -> None:
    day = period(1.0, tonnage=DAY)
    assert day.whole_days == 1
    day.now = START + timedelta(hours=20)
    assert day.whole_days == 0


def test_raw_landfilled() -> None:
    r = f.raw_landfilled(ctx(period(tonnage=DAY)))
    assert r.value == pytest.approx(10.0)
    assert r.inputs["raw_tickets"] == 1
    clean = tonnes(lf__construction=10)  # not a raw household category
    assert f.raw_landfilled(ctx(period(tonnage=clean))).value == 0.0


def test_construction_resource_rate() -> None:
    # 30 t at the brick plant of 120 t of construction waste weighed anywhere
    assert f.construction_resource_rate(ctx(period(tonnage=DAY))).value == pytest.approx(25.0)
    assert f.construction_resource_rate(ctx(period(tonnage=tonnes(inc__residual=5)))).value is None


SORTING = {
    "a": CommunitySorting(correct=45, incorrect=5, unchecked=10, households=60, stations={"s1"}),
    "b": CommunitySorting(correct=30, incorrect=20, unchecked=0, households=90, stations={"s2", "s3"}),
    "x": CommunitySorting(correct=5, incorrect=0, households=7, stations={"s9"}),  # not registered
}


def test_sorting_coverage() -> None:
    # a and b of the registered a, b, c have a live station; x is not registered
    r = f.sorting_coverage(ctx(period(sorting=SORTING)))
    assert r.value == pytest.approx(100 * 2 / 3)
    assert r.inputs == {"communities_live": 2, "communities_registered": 3}


def test_participation_rate() -> None:
    # (60 + 90) households of 100 + 300 + 100 registered; x's 7 are not counted
    assert f.participation_rate(ctx(period(sorting=SORTING))).value == pytest.approx(100 * 150 / 500)


def test_sorting_accuracy_is_a_ratio_of_sums() -> None:
    # (45 + 30 + 5) correct of (50 + 50 + 5) checked; unchecked excluded; not the mean of 90 %, 60 %, 100 %
    r = f.sorting_accuracy(ctx(period(sorting=SORTING)))
    assert r.value == pytest.approx(100 * 80 / 105)
    assert r.inputs["unchecked"] == 10


def test_sealed_transport_rate() -> None:
    assert f.sealed_transport_rate(ctx(period())).value is None
    r = f.sealed_transport_rate(ctx(period(loaded_km=40.0, sealed_km=30.0, trucks=2)))
    assert r.value == pytest.approx(75.0)


def alert(aid: str, state: str) -> AlertRecord:
    return AlertRecord(aid, "illegal_dumping", "critical", "s", "桂B1", "x", "2025-06-01T00:00:00Z", state)


def test_closure_rate() -> None:
    assert f.closure_rate(ctx(period())).value is None
    log = AlertLog("test", [alert("1", "closed"), alert("2", "open"), alert("3", "acknowledged"),
                            alert("4", "closed")])
    r = f.closure_rate(ctx(period(), alerts=log))
    assert r.value == pytest.approx(50.0)
    assert r.inputs["raised"] == 4


def test_msw_per_capita_needs_population() -> None:
    assert f.msw_per_capita(ctx(period(tonnage=DAY))).value is None
    manual = ManualInputs(params={"population": 50_000})
    # 95 t a day for 50 000 people = 1.9 kg per person per day
    assert f.msw_per_capita(ctx(period(tonnage=DAY), manual=manual)).value == pytest.approx(1.9)


@pytest.mark.parametrize(("value", "target", "expected"), [
    (95.0, Target(year=2025, value=95, cmp="≥"), Status.MET),
    (94.99, Target(year=2025, value=95, cmp="≥"), Status.NOT_MET),
    (90.0, Target(year=2025, value=90, cmp=">"), Status.NOT_MET),
    (0.4, Target(year=2025, value=0.48, cmp="≤"), Status.MET),
    (0.0, Target(year=2025, value=0, cmp="="), Status.MET),
    (3.0, Target(year=2025, value=0, cmp="="), Status.NOT_MET),
    (12.0, Target(year=2025, text="逐年提高"), Status.RISING),
    (12.0, Target(year=2025, text="取得初步成效"), Status.NO_TARGET),
    (None, Target(year=2025, value=1), Status.NO_DATA),
    (5.0, None, Status.NO_TARGET),
])
def test_status_of(value: float | None, target: Target | None, expected: Status) -> None:
    assert status_of(value, target) is expected


def test_target_for_year() -> None:
    ind = load_city("guanxian").indicator("recycling_rate")
    assert ind is not None
    assert ind.target_for(2022).year == 2023  # type: ignore[union-attr]
    assert ind.target_for(2024).year == 2025  # type: ignore[union-attr]
    assert ind.target_for(2030).year == 2025  # type: ignore[union-attr]


def test_manual_indicator_is_shown_as_manual() -> None:
    table = load_city("liuzhou")
    ind = table.indicator("industrial_intensity")
    assert ind is not None and ind.feed == "manual"
    none = evaluate(ind, ctx(period()), 2025)
    assert none.status is Status.NO_DATA
    given = ManualInputs(indicators={"industrial_intensity": ManualInput(value=0.5, source="统计局")})
    r = evaluate(ind, ctx(period(), manual=given), 2025)
    assert r.status is Status.MANUAL and r.value == 0.5
    assert "not met" in r.note  # 0.5 > 0.48


def test_whole_table_evaluates() -> None:
    for city in ("liuzhou", "foshan", "guanxian"):
        results = evaluate_table(load_city(city), ctx(period(tonnage=DAY, sorting=SORTING)))
        assert len(results) == len(load_city(city).indicators)


# ------------------------------------------------------------------------------- city tables

SEEDS = Path(os.environ.get("WS_SEEDS_DIR", "/work/shared/seeds"))


def test_the_three_cities_ship_and_load() -> None:
    assert {"liuzhou", "foshan", "guanxian"} <= set(available_cities())
    for city in ("liuzhou", "foshan", "guanxian"):
        table = load_city(city)
        assert table.city == city
        assert any(i.feed == "manual" for i in table.indicators)
        assert any(i.feed == "computed" for i in table.indicators)


@pytest.mark.parametrize("city", ["liuzhou", "foshan", "guanxian"])
def test_every_cited_source_line_exists(city: str) -> None:
    if not SEEDS.is_dir():
        pytest.skip(f"seed documents not at {SEEDS} (set WS_SEEDS_DIR)")
    table = load_city(city)
    for source in [table.plan_source, *(i.source for i in table.indicators)]:
        name, first, last = seed_lines(table, source)
        path = SEEDS / name
        assert path.is_file(), f"{city}: {source}: no file {path}"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert 1 <= first <= last <= len(lines), f"{city}: {source}: {path} has {len(lines)} lines"
        assert lines[first - 1].strip(), f"{city}: {source}: cites an empty line"


def test_cited_lines_name_the_indicator() -> None:
    """Spot checks that the citation points at the right row (the indicator's words are on it)."""
    if not SEEDS.is_dir():
        pytest.skip(f"seed documents not at {SEEDS}")
    checks = {("liuzhou", "msw_collected"): "生活垃圾清运量",
              ("liuzhou", "construction_resource_rate"): "建筑垃圾",
              ("foshan", "incineration_rate"): "焚烧处理率", ("guanxian", "recycling_rate"): "回收利用率",
              ("liuzhou", "sorting_accuracy"): "投放准确率", ("foshan", "raw_landfilled"): "零填埋"}
    for (city, ind_id), words in checks.items():
        table = load_city(city)
        ind = table.indicator(ind_id)
        assert ind is not None
        name, first, _ = seed_lines(table, ind.source)
        assert words in (SEEDS / name).read_text(encoding="utf-8").splitlines()[first - 1]


def test_bad_table_errors_name_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
city: bad
name_zh: 坏
name_en: Bad
plan: x
documents: {p: {title: x, period: {end: 2025}, seed: 000_12da04b4ff6fd9b5.txt}}
plan_source: {doc: p, section: 表1, line: "35"}
baseline_year: 2020
indicators:
  - {id: a, name_zh: a, name_en: a, unit: "%", source: {doc: nowhere, section: s, line: "1"}, feed: computed,
     formula: nope}
  - {id: b, name_zh: b, name_en: b, unit: t, source: {doc: p, section: 表1, line: "51"}, feed: computed,
     formula: recycling_rate}
""", encoding="utf-8")
    with pytest.raises(IndicatorConfigError) as exc:
        load_city(bad)
    text = str(exc.value)
    assert "indicators[0] (a): source.doc 'nowhere'" in text and "formula" in text
    assert "indicators[1] (b): unit 't' but formula recycling_rate gives '%'" in text


def test_schema_error_is_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad2.yaml"
    bad.write_text("city: bad\nname_zh: x\nname_en: x\nplan: x\nbaseline_year: 2020\n"
                   "documents: {p: {title: x, period: {end: 2025}, seed: 000_12da04b4ff6fd9b5.txt}}\n"
                   "plan_source: {doc: p, section: s, line: '1'}\n"
                   "indicators: [{id: a, name_zh: a, name_en: a, unit: '%', "
                   "source: {doc: p, section: s, line: '1'}, feed: sometimes}]\n",
                   encoding="utf-8")
    with pytest.raises(IndicatorConfigError, match=r"bad2.yaml: .*feed"):
        load_city(bad)
    with pytest.raises(IndicatorConfigError, match="no indicator table"):
        load_city("atlantis")
