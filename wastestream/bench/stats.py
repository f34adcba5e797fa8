"""Small, dependency-free statistics for the benchmark (kept pure so they are unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from stream.sinks.influx import percentile

__all__ = ["percentile", "rate_between", "summarise", "weighted_median"]


def summarise(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of a sample (ms); NaN fields when empty, so a JSON reader sees the gap."""
    ordered = sorted(values_ms)
    return {"p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99),
            "max_ms": ordered[-1] if ordered else math.nan, "samples": float(len(ordered))}


def weighted_median(pairs: Sequence[tuple[float, float]]) -> float:
    """Median of values given as (value, weight): combines per-window p50s by their counts."""
    items = sorted((v, w) for v, w in pairs if w > 0 and not math.isnan(v))
    total = sum(w for _, w in items)
    if not total:
        return math.nan
    acc = 0.0
    for value, weight in items:
        acc += weight
        if acc >= total / 2:
            return value
    return items[-1][0]


def rate_between(samples: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """Rate of a growing counter over [start, end] from (time, count) samples (first/last inside)."""
    inside = [(t, c) for t, c in samples if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return math.nan
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
