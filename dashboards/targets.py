"""Plan targets for the indicator stats, read from the city's indicator table (wastestream/indicators)."""

from __future__ import annotations

from dataclasses import dataclass

from wastestream.indicators.config import load_city


@dataclass(frozen=True)
class Target:
    label: str
    """As the plan prints it: "2025 ≥ 90", "2025 逐年提高"."""
    cmp: str | None
    value: float | None
    source: str


def plan_targets(city: str) -> dict[str, Target]:
    """Indicator id → its latest target year's target."""
    table = load_city(city)
    out: dict[str, Target] = {}
    for ind in table.indicators:
        if not ind.targets:
            continue
        t = max(ind.targets, key=lambda t: t.year)
        out[ind.id] = Target(f"{t.year} target {t.label()}", t.cmp if t.value is not None else None, t.value,
                             f"{ind.name_zh}: {table.cite(ind.source)}")
    return out
