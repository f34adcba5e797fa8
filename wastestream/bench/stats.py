"""Small, dependency-free statistics for the benchmark (kept pure so they are unit-tested)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from stream.sinks.latency import LATENCY_BUCKETS_MS, percentile

__all__ = ["best_jump_rate", "fifo_delays", "jump_rate", "percentile", "pooled_latency", "rate_between",
           "rises", "slope", "summarise", "weighted_median"]


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


def pooled_latency(rows: Sequence[dict[str, float | None]], within_ms: int = 1000) -> dict[str, float]:
    """p50/p99 of ALL messages of `pipeline_latency` windows (from several workers and intervals),
    from their cumulative histograms (`le_<ms>`, stream/sinks/latency.py), interpolated inside a
    bucket; and the exact share at or under `within_ms` (a bucket bound). A window without a
    histogram (an older sink) makes the result NaN: mixing would bias it."""
    nan = {"p50_ms": math.nan, "p99_ms": math.nan, "share_within": math.nan}
    if not rows or within_ms not in LATENCY_BUCKETS_MS:
        return nan
    total = 0.0
    cum = [0.0] * len(LATENCY_BUCKETS_MS)
    worst = 0.0
    for row in rows:
        if any(row.get(f"le_{b}") is None for b in LATENCY_BUCKETS_MS) or not row.get("count"):
            return nan
        total += float(row["count"] or 0)
        worst = max(worst, float(row.get("max_ms") or 0.0))
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            cum[i] += float(row[f"le_{bound}"] or 0)

    def quantile(q: float) -> float:
        rank = q / 100 * total
        below, low = 0.0, 0.0
        for bound, count in zip(LATENCY_BUCKETS_MS, cum, strict=True):
            if count >= rank:
                return low + (bound - low) * (rank - below) / (count - below) if count > below else low
            below, low = count, float(bound)
        return max(worst, low)  # beyond the last bucket: the worst window's maximum

    return {"p50_ms": quantile(50), "p99_ms": quantile(99),
            "share_within": cum[LATENCY_BUCKETS_MS.index(within_ms)] / total}


def rate_between(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Rate of a growing counter over [start, end] from (time, count) samples (first/last inside)."""
    inside = [(t, c) for t, c in samples if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return math.nan
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def rises(samples: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """The samples at which a growing counter had moved since the sample before (the first one
    with each new count)."""
    return [(t, c) for (_, before), (t, c) in itertools.pairwise(samples) if c > before]


def jump_rate(samples: Sequence[tuple[float, int]]) -> float:
    """Mean rate of a counter that moves in jumps (a drain whose points land in big batches), from
    its first rise to its last: the messages of every jump after the first, over the time between.

    The first jump's messages were processed before it, from an unknown start (start-up, table
    recovery), so they are left out; a rate between fixed shares of the total (10 % .. 90 %) has
    no span at all when one jump covers both. NaN with fewer than two rises."""
    moved = rises(samples)
    if len(moved) < 2:
        return math.nan
    (t0, c0), (t1, c1) = moved[0], moved[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else math.nan


def best_jump_rate(samples: Sequence[tuple[float, int]], window_s: float) -> float:
    """The best rate over at least `window_s` between two rises of the counter (from a rise to the
    first rise `window_s` or more after it): leaves out stalls (a rebalance) longer than the rest
    of the drain's windows. NaN when the counter's rises span less than `window_s`."""
    moved = rises(samples)
    best = math.nan
    for i, (t0, c0) in enumerate(moved):
        end = next(((t, c) for t, c in moved[i + 1:] if t - t0 >= window_s), None)
        if end is None:
            break
        rate = (end[1] - c0) / (end[0] - t0)
        best = rate if math.isnan(best) else max(best, rate)
    return best


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
