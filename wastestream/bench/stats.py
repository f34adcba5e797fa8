"""Small, dependency-free statistics for the benchmark (kept pure so they are unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from stream.sinks.influx import percentile

__all__ = ["fifo_delays", "percentile", "rate_between", "slope", "summarise", "weighted_median"]


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


def slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (time, value) samples per second: how fast a backlog grows; NaN if < 2."""
    if len(samples) < 2:
        return math.nan
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return math.nan if var == 0 else sum((t - mt) * (v - mv) for t, v in samples) / var


def fifo_delays(sent: Sequence[tuple[float, float]], stored: Sequence[tuple[float, float]]) -> list[float]:
    """For each (time, count) of `stored`, how long before the `count`-th message was sent.

    `sent` and `stored` are growing counters sampled over time. Read as a queue (first in,
    first out, roughly true across keys), this is the age of the newest stored message: the
    backlog in seconds, from counts alone (so filtered to the run's own devices)."""
    out = []
    for t, n in stored:
        if n <= 0:
            continue
        prev = (-math.inf, 0.0)
        for ts, c in sent:
            if c >= n:
                t0, c0 = prev
                at = ts if c == c0 or math.isinf(t0) else t0 + (ts - t0) * (n - c0) / (c - c0)
                out.append(max(0.0, t - at))
                break
            prev = (ts, c)
    return out
