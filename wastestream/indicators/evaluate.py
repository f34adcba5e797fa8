"""Each indicator of a city table against its target: value, status and the inputs used."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from wastestream.indicators.config import CityTable, Indicator, Period, Target
from wastestream.indicators.formulas import FORMULAS, Computed, Context


class Status(enum.StrEnum):
    MET = "met"
    NOT_MET = "not met"
    RISING = "rising?"
    """A 逐年提高 target: needs last year's value to judge."""
    NO_TARGET = "no target"
    MANUAL = "manual"
    NO_DATA = "no data"
    PARTIAL_DAY = "not judged: partial day"
    """Less than a whole local day: the value is shown as measured, never judged."""
    PLAN_ENDED = "plan period ended"
    """The period is after the plan's last year: its last target is shown for reference only."""


STATUS_ZH = {Status.MET: "达标", Status.NOT_MET: "未达标", Status.RISING: "逐年提高?",
             Status.NO_TARGET: "无数值目标", Status.MANUAL: "手工录入", Status.NO_DATA: "无数据",
             Status.PARTIAL_DAY: "不足整日，不评判", Status.PLAN_ENDED: "规划期已结束"}
JUDGED = {Status.MET, Status.NOT_MET}


@dataclass
class IndicatorResult:
    indicator: Indicator
    value: float | None
    status: Status
    target: Target | None
    inputs: dict[str, float | int | str] = field(default_factory=dict)
    note: str = ""


def compare(value: float, target: Target) -> bool:
    """Whether `value` satisfies a numeric target (comparison at the target's printed precision)."""
    assert target.value is not None
    v, t = round(value, 6), target.value
    return {"≥": v >= t, "≤": v <= t, "=": abs(v - t) < 1e-6, ">": v > t, "<": v < t}[target.cmp]


def status_of(value: float | None, target: Target | None) -> Status:
    if value is None:
        return Status.NO_DATA
    if target is None:
        return Status.NO_TARGET
    if target.rising:
        return Status.RISING
    if target.value is None:
        return Status.NO_TARGET
    return Status.MET if compare(value, target) else Status.NOT_MET


def _withheld(result: IndicatorResult, ended: Period | None, whole_days: int) -> IndicatorResult:
    """Withhold a judgement a partial day or an ended plan cannot support; say what it would be."""
    if not whole_days and result.status is Status.NO_DATA and result.target is not None:
        result.status = Status.PARTIAL_DAY  # a per-day figure withheld, or nothing measured yet
        return result
    if result.status not in (Status.MET, Status.NOT_MET, Status.RISING):
        return result
    if not whole_days:
        result.note = " ".join(x for x in (result.note, "measured in less than a whole local day: "
                                           "targets are judged on whole days only") if x)
        result.status = Status.PARTIAL_DAY
    elif ended is not None and result.target is not None:
        result.note = " ".join(x for x in (result.note, f"规划期 {ended.label()} 已结束 (plan period ended): "
                                           f"its {result.target.year} target shown for reference, "
                                           f"would be: {result.status.value}") if x)
        result.status = Status.PLAN_ENDED
    return result


def evaluate(indicator: Indicator, ctx: Context, year: int, ended: Period | None = None) -> IndicatorResult:
    """The indicator for the context's period against its target of `year`; `ended`: the plan
    period when `year` is after it (CityTable.period_ended), so nothing is judged against it."""
    result = _evaluate(indicator, ctx, year)
    formula = FORMULAS.get(indicator.formula or "")
    timeless = indicator.feed == "manual" or (formula is not None and formula.from_registry)
    whole_days = 1 if timeless else ctx.data.whole_days
    return _withheld(result, ended, whole_days)


def _evaluate(indicator: Indicator, ctx: Context, year: int) -> IndicatorResult:
    target = indicator.target_for(year)
    if indicator.feed == "manual":
        given = ctx.manual.indicators.get(indicator.id)
        if given is None:
            return IndicatorResult(indicator, None, Status.NO_DATA, target, {}, "manual input not supplied")
        judged = status_of(given.value, target)
        note = f"manual input{' (' + given.source + ')' if given.source else ''}; vs target: {judged.value}"
        inputs: dict[str, float | int | str] = {"manual_value": given.value}
        if given.year:
            inputs["year"] = given.year
        return IndicatorResult(indicator, given.value, Status.MANUAL, target, inputs, note)
    computed: Computed = FORMULAS[indicator.formula or ""].fn(ctx)
    return IndicatorResult(indicator, computed.value, status_of(computed.value, target), target,
                           computed.inputs, computed.note)


def period_year(ctx: Context) -> int:
    """The local year of the period's start: the year whose targets apply."""
    from zoneinfo import ZoneInfo

    return ctx.data.start.astimezone(ZoneInfo(ctx.data.timezone)).year


def evaluate_table(table: CityTable, ctx: Context) -> list[IndicatorResult]:
    """All indicators of the table for the context's period (targets of the period's local year;
    none judged for a partial day or after the plan period)."""
    year = period_year(ctx)
    return [evaluate(ind, ctx, year, table.period_ended(ind, year)) for ind in table.indicators]
