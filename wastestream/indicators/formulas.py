"""One function per indicator formula, pure over a period's site data (data.PeriodData).

Each docstring gives the formula and the plan row(s) that define the indicator; the
registry `FORMULAS` maps the formula id used in the city tables to the function and its unit.
Facility kinds, capacities, communities and registered households come from the stream's rules
(`stream.rules.load_rules`). A formula returns `value=None` ("no data") when its denominator is
empty, never a made-up 0 % or 100 %. A rate per day or per year (`per_day`) is computed only
from whole local days (`PeriodData.whole_days`): a 90-second period is not 1/960 of a day's
traffic, so for a partial day the value is None and the inputs carry what was measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stream.rules import Rules
from wastestream.indicators.alerts import AlertLog
from wastestream.indicators.data import PeriodData
from wastestream.indicators.manual import ManualInputs

HOUSEHOLD = {"kitchen", "recyclable", "hazardous", "residual", "bulky"}
"""Household (生活垃圾) categories: the national four-way sort plus bulky household waste."""
TERMINAL_KINDS = {"incineration", "landfill", "food_waste", "kitchen_waste", "recycling_centre"}
"""Terminal facilities: a tonne is counted once where it ends, never at a transfer station."""
DISPOSAL_KINDS = {"incineration", "landfill"}
RECOVERY_KINDS = {"recycling_centre", "food_waste", "kitchen_waste"}
TREATMENT_CAPACITY_KINDS = {"incineration", "landfill", "food_waste", "kitchen_waste"}


@dataclass
class Context:
    data: PeriodData
    rules: Rules
    alerts: AlertLog | None = None
    manual: ManualInputs = field(default_factory=ManualInputs)


@dataclass
class Computed:
    value: float | None
    inputs: dict[str, float | int | str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Formula:
    fn: Callable[[Context], Computed]
    unit: str
    per_day: bool = False
    """Extrapolates to a day or a year: only from whole days."""
    from_registry: bool = False
    """From the rules' registry (design capacities), not the period's data: judged any time."""


def partial_day(inputs: dict[str, float | int | str], measured: str) -> Computed:
    """A per-day or annual figure asked of less than a whole local day: what was measured."""
    return Computed(None, inputs, f"{measured} measured so far (partial day); per-day and annual "
                                  "figures come from whole local days only")


def basis(days: int) -> str:
    return f"from {days} whole day{'s' if days != 1 else ''}"


def sites_of(rules: Rules, kinds: set[str]) -> set[str]:
    return {f.id for f in rules.facilities if f.kind in kinds}


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den > 0 else None


def msw_collected(ctx: Context) -> Computed:
    """生活垃圾清运量 (万吨/年), annualised from the period.

    msw_t = Σ net_kg / 1000 of weighing tickets with category ∈ {kitchen, recyclable, hazardous,
    residual, bulky} at terminal facilities (kind ∈ incineration, landfill, food_waste,
    kitchen_waste, recycling_centre); transfer stations are excluded so a tonne is not counted
    twice. value = msw_t × 365 / whole_days / 10 000 (whole local days only).
    Source: 柳州 实施方案 表1 第12项 (92.52 → 100 万吨); 冠县 指标体系 第10项.
    """
    sites = sites_of(ctx.rules, TERMINAL_KINDS)
    msw_t = ctx.data.net_t(sites, HOUSEHOLD)
    tickets = ctx.data.tickets(sites, HOUSEHOLD)
    days = ctx.data.whole_days
    inputs: dict[str, float | int | str] = {"msw_t": round(msw_t, 3), "tickets": tickets, "whole_days": days}
    if tickets == 0:
        return Computed(None, inputs, "no household-waste tickets at terminal facilities")
    if not days:
        return partial_day(inputs, f"{msw_t:,.1f} t")
    return Computed(msw_t * 365.0 / days / 10_000.0, inputs, f"× 365 / {days}: annualised {basis(days)}")


def msw_per_capita(ctx: Context) -> Computed:
    """人均生活垃圾日产生量 (kg/人/日).

    value = msw_t × 1000 / whole_days / population, msw_t as in `msw_collected`; population is a
    manual parameter (`params.population`), which the 佛山 plan does not give.
    Source: 佛山 指标体系 第12项 (1.47 → 1.47).
    """
    sites = sites_of(ctx.rules, TERMINAL_KINDS)
    msw_t = ctx.data.net_t(sites, HOUSEHOLD)
    population = ctx.manual.params.get("population")
    days = ctx.data.whole_days
    inputs: dict[str, float | int | str] = {"msw_t": round(msw_t, 3), "whole_days": days}
    if not population:
        return Computed(None, inputs, "needs params.population (manual input)")
    inputs["population"] = population
    if ctx.data.tickets(sites, HOUSEHOLD) == 0:
        return Computed(None, inputs, "no household-waste tickets at terminal facilities")
    if not days:
        return partial_day(inputs, f"{msw_t:,.1f} t")
    return Computed(msw_t * 1000.0 / days / population, inputs, basis(days))


def recycling_rate(ctx: Context) -> Computed:
    """生活垃圾回收利用率 (%): household waste recovered ÷ household waste collected.

    recovered_t = Σ net of household categories at recycling centres, food-waste and
    kitchen-waste plants; value = 100 × recovered_t / msw_t (msw_t as in `msw_collected`).
    Source: 柳州 表1 第27项 (逐年提高), 佛山 指标体系 第27项 (25), 冠县 指标体系 第22项 (25 → 35).
    """
    recovered = ctx.data.net_t(sites_of(ctx.rules, RECOVERY_KINDS), HOUSEHOLD)
    total = ctx.data.net_t(sites_of(ctx.rules, TERMINAL_KINDS), HOUSEHOLD)
    return Computed(_pct(recovered, total), {"recovered_t": round(recovered, 3), "msw_t": round(total, 3)})


def incineration_rate(ctx: Context) -> Computed:
    """生活垃圾焚烧处理率 (%): household waste incinerated ÷ household waste disposed.

    value = 100 × Σ net(household, incineration) / Σ net(household, incineration + landfill).
    Source: 佛山 指标体系 第37项 (65.57 → 90).
    """
    burnt = ctx.data.net_t(sites_of(ctx.rules, {"incineration"}), HOUSEHOLD)
    disposed = ctx.data.net_t(sites_of(ctx.rules, DISPOSAL_KINDS), HOUSEHOLD)
    return Computed(_pct(burnt, disposed),
                    {"incinerated_t": round(burnt, 3), "disposed_t": round(disposed, 3)})


def incineration_capacity_share(ctx: Context) -> Computed:
    """生活垃圾焚烧处理能力占比 (%): incineration design capacity ÷ all treatment capacity (t/d).

    value = 100 × Σ capacity(incineration) / Σ capacity(incineration, landfill, food_waste,
    kitchen_waste), design capacities from the rules file (a registry, not the stream).
    Source: 柳州 表1 第37项 (0 → 85), 冠县 指标体系 第31项 (100).
    """
    cap = {k: sum(f.capacity_t_per_day for f in ctx.rules.facilities if f.kind == k)
           for k in TREATMENT_CAPACITY_KINDS}
    total = sum(cap.values())
    return Computed(_pct(cap["incineration"], total),
                    {"incineration_t_d": cap["incineration"], "treatment_t_d": total})


def incineration_capacity_use(ctx: Context) -> Computed:
    """Incinerator capacity use (%): what the incinerators received per day ÷ their capacity.

    value = 100 × (Σ net(all categories, incineration) / whole_days) / Σ capacity(incineration);
    the peak daily load (`facility_load.load_pct`) is given in the inputs (whole days only).
    Source: design capacities in 柳州 实施方案 附件2 项目清单 (E-2 融安 1000 t/d) and the rules file.
    """
    sites = sites_of(ctx.rules, {"incineration"})
    capacity = sum(f.capacity_t_per_day for f in ctx.rules.facilities if f.id in sites)
    received = ctx.data.net_t(sites)
    days = ctx.data.whole_days
    inputs: dict[str, float | int | str] = {"received_t": round(received, 3), "capacity_t_d": capacity,
                                            "whole_days": days}
    peaks = [ctx.data.peak_load_pct[s] for s in sites if s in ctx.data.peak_load_pct]
    if ctx.data.tickets(sites) == 0:
        return Computed(None, inputs, "no tickets at incinerators")
    if not days:
        return partial_day(inputs, f"{received:,.1f} t")
    if peaks:
        inputs["peak_day_load_pct"] = round(max(peaks), 2)
    return Computed(_pct(received / days, capacity), inputs, basis(days))


def raw_landfilled(ctx: Context) -> Computed:
    """原生生活垃圾零填埋 (t): raw household waste landfilled; the target is 0.

    value = Σ net of categories in `rules.raw_household_categories` (residual, kitchen) at
    landfills (kind = landfill); the ticket count is in the inputs.
    Source: 佛山 主要任务 (全焚烧、零填埋), 冠县 总体目标 (全量焚烧).
    """
    landfills = sites_of(ctx.rules, {"landfill"})
    raw = {str(c) for c in ctx.rules.raw_household_categories}
    tonnes = ctx.data.net_t(landfills, raw)
    inputs: dict[str, float | int | str] = {"raw_tickets": ctx.data.tickets(landfills, raw),
                                            "landfills": len(landfills)}
    if not landfills:
        return Computed(None, inputs, "no landfill in the rules")
    return Computed(tonnes, inputs)


def construction_resource_rate(ctx: Context) -> Computed:
    """建筑垃圾资源化利用率 (%): C&D received at recycling plants ÷ all C&D weighed.

    value = 100 × Σ net(construction, construction_recycling) / Σ net(construction, any facility).
    Source: 柳州 表1 第26项 (2 → 30), 佛山 指标体系 第26项 (30), 冠县 指标体系 第21项 (30 → >50).
    """
    recycled = ctx.data.net_t(sites_of(ctx.rules, {"construction_recycling"}), {"construction"})
    total = ctx.data.net_t(None, {"construction"})
    return Computed(_pct(recycled, total),
                    {"recycled_t": round(recycled, 3), "construction_t": round(total, 3)})


def sorting_coverage(ctx: Context) -> Computed:
    """城市居民小区生活垃圾分类覆盖率 (%): registered communities with a live station.

    value = 100 × |{registered community with ≥ 1 station that reported a deposit or a fill
    level in the period}| / |registered communities| (rules `communities`).
    Source: 柳州 表1 第13项 (10.8 → 100), 佛山 指标体系 第13项, 冠县 指标体系 第11项.
    """
    registered = [c.id for c in ctx.rules.communities]
    live = [c for c in registered if c in ctx.data.sorting and ctx.data.sorting[c].stations]
    return Computed(_pct(len(live), len(registered)),
                    {"communities_live": len(live), "communities_registered": len(registered)})


def participation_rate(ctx: Context) -> Computed:
    """生活垃圾分类参与率 (%): distinct households that deposited ÷ registered households.

    value = 100 × Σ_c count(distinct household in deposits of c) / Σ_c households(c), over
    registered communities c; anonymous drops carry no household and are not counted.
    Source: 柳州市生态环境保护“十四五”规划 第七章第二节 (≥95 by 2025).
    """
    registered = {c.id: c.households for c in ctx.rules.communities}
    active = sum(ctx.data.sorting[c].households for c in registered if c in ctx.data.sorting)
    return Computed(_pct(active, sum(registered.values())),
                    {"households_active": active, "households_registered": sum(registered.values())})


def sorting_accuracy(ctx: Context) -> Computed:
    """投放准确率 (%): correct deposits ÷ checked deposits (unchecked excluded), all communities.

    value = 100 × Σ correct / Σ (correct + incorrect); a ratio of sums, never a mean of %.
    Source: 柳州市生态环境保护“十四五”规划 第七章第二节 (≥90 by 2025).
    """
    correct = sum(c.correct for c in ctx.data.sorting.values())
    checked = sum(c.checked for c in ctx.data.sorting.values())
    unchecked = sum(c.unchecked for c in ctx.data.sorting.values())
    return Computed(_pct(correct, checked), {"correct": correct, "checked": checked, "unchecked": unchecked})


def sealed_transport_rate(ctx: Context) -> Computed:
    """密闭化运输率 (%): loaded km driven with the lid closed ÷ all loaded km.

    value = 100 × Σ sealed_km / Σ loaded_km over trucks and days (`transport_daily`).
    Source: 柳州市生态环境保护“十四五”规划 第七章第二节 (100 by 2025).
    """
    if ctx.data.loaded_km is None or ctx.data.sealed_km is None:
        return Computed(None, {}, "no transport_daily data")
    return Computed(_pct(ctx.data.sealed_km, ctx.data.loaded_km),
                    {"sealed_km": round(ctx.data.sealed_km, 3), "loaded_km": round(ctx.data.loaded_km, 3),
                     "trucks": ctx.data.trucks})


def closure_rate(ctx: Context) -> Computed:
    """涉固体废物…案件办结率 (%): alerts closed ÷ alerts raised in the period (enforcement).

    value = 100 × |{alert raised in period, state = closed}| / |{alert raised in period}|
    (primary alerts; cool-down repeats are folded into their primary), from the alert service.
    Source: 柳州 表1 第52项, 佛山 指标体系 第56项, 冠县 指标体系 第44项.
    """
    if ctx.alerts is None:
        return Computed(None, {}, "no alert service data")
    total, closed = ctx.alerts.count(), ctx.alerts.count("closed")
    return Computed(_pct(closed, total), {"closed": closed, "raised": total,
                                          "open": ctx.alerts.count("open"),
                                          "acknowledged": ctx.alerts.count("acknowledged")})


FORMULAS: dict[str, Formula] = {
    "msw_collected": Formula(msw_collected, "万吨/年", per_day=True),
    "msw_per_capita": Formula(msw_per_capita, "kg/人/日", per_day=True),
    "recycling_rate": Formula(recycling_rate, "%"),
    "incineration_rate": Formula(incineration_rate, "%"),
    "incineration_capacity_share": Formula(incineration_capacity_share, "%", from_registry=True),
    "incineration_capacity_use": Formula(incineration_capacity_use, "%", per_day=True),
    "raw_landfilled": Formula(raw_landfilled, "t"),
    "construction_resource_rate": Formula(construction_resource_rate, "%"),
    "sorting_coverage": Formula(sorting_coverage, "%"),
    "participation_rate": Formula(participation_rate, "%"),
    "sorting_accuracy": Formula(sorting_accuracy, "%"),
    "sealed_transport_rate": Formula(sealed_transport_rate, "%"),
    "closure_rate": Formula(closure_rate, "%"),
}
