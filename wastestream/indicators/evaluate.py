"""Each indicator of a city table against its target: value, status and the inputs used."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from wastestream.indicators.config import CityTable, Indicator, Target
from wastestream.indicators.formulas import FORMULAS, Computed, Context


class Status(enum.StrEnum):
    MET = "met"
    NOT_MET = "not met"
    RISING = "rising?"
    """A 逐年提高 target: needs last year's value to judge."""
    NO_TARGET = "no target"
    MANUAL = "manual"
    NO_DATA = "no data"


STATUS_ZH = {Status.MET: "达标", Status.NOT_MET: "未达标", Status.RISING: "逐年提高?",
             Status.NO_TARGET: "无数值目标", Status.MANUAL: "手工录入", Status.NO_DATA: "无数据"}


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


def evaluate(indicator: Indicator, ctx: Context, year: int) -> IndicatorResult:
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


def evaluate_table(table: CityTable, ctx: Context) -> list[IndicatorResult]:
    """All indicators of the table for the context's period (targets of the period's year)."""
    year = ctx.data.start.year
    return [evaluate(ind, ctx, year) for ind in table.indicators]
