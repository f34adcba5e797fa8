"""The sink's own latency measurement: ages of stored points, summarised as `pipeline_latency` points
(p50/p99/max and a cumulative histogram), so dashboards see pipeline latency without a probe."""

from __future__ import annotations

import bisect
import math
import os
import socket

from stream.sinks.config import SinkConfig
from stream.sinks.line_protocol import FieldValue, Point

LATENCY_MEASUREMENT = "pipeline_latency"
STORED_MEASUREMENT = "pipeline_stored"
"""Exact points stored per measurement and interval: what a reader would otherwise count in the
measurement itself, which costs InfluxDB per series (a province's count of its ~140,000 bin series
took seconds of InfluxDB CPU and stalled its writes: issue 14)."""

LATENCY_BUCKETS_MS = (10, 20, 50, 100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000, 3000, 5000,
                      7000, 10000, 20000, 30000, 60000)
"""Upper bounds of the cumulative histogram fields `le_<ms>` of each `pipeline_latency` point.

Why: a window's p99 cannot be combined with another's, so a reader could only take the worst
window (an upper bound). Cumulative counts add up across windows and workers: the quantiles of
a whole run follow to within a bucket, and the share within a bound (`le_1000` / `count`: is
p99 under 1 s?) exactly."""


def percentile(sorted_values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[min(len(sorted_values), max(rank, 1)) - 1])


class LatencyRecorder:
    """Ages of stored points (ns), sampled, per measurement; summarised into points every interval.

    Works on the encoded lines (measurement = text before the first `,` or space, timestamp =
    after the last space), so the hot path of `write()` gains nothing; the cost is one slice
    and one `int()` per sampled line when a batch is acknowledged, and for the exact stored
    counts one `startswith` per line (a batch's lines come in runs of one measurement).
    """

    def __init__(self, config: SinkConfig, host: str | None = None, worker: str | None = None) -> None:
        self.every = max(1, config.latency_sample_every)
        self.max_samples = config.latency_max_samples
        self.host = host or socket.gethostname()
        self.worker = worker or str(os.getpid())
        self._samples: dict[str, list[int]] = {}
        self._stored: dict[str, int] = {}

    def record(self, lines: list[str], now_ns: int) -> None:
        self._count(lines)
        for line in lines[:: self.every]:
            end = line.find(" ")
            comma = line.find(",", 0, end)
            measurement = line[: comma if comma > 0 else end]
            samples = self._samples.get(measurement)
            if samples is None:
                if measurement == LATENCY_MEASUREMENT:
                    continue
                samples = self._samples[measurement] = []
            if len(samples) < self.max_samples:
                try:
                    samples.append(now_ns - int(line[line.rfind(" ") + 1:]))
                except ValueError:
                    continue

    def _count(self, lines: list[str]) -> None:
        stored, name, prefix, run = self._stored, "", "", 0
        for line in lines:
            if prefix and line.startswith(prefix):
                run += 1
                continue
            if run:
                stored[name] = stored.get(name, 0) + run
            end = line.find(" ")
            comma = line.find(",", 0, end)
            cut = comma if comma > 0 else end
            name, prefix, run = line[:cut], line[:cut + 1], 1
        if run:
            stored[name] = stored.get(name, 0) + run

    def take_points(self, now_ns: int) -> list[Point]:
        """Per measurement seen since the last call, one `pipeline_latency` point (if sampled) and
        one `pipeline_stored` point; resets."""
        points = []
        for measurement, samples in self._samples.items():
            if not samples:
                continue
            samples.sort()
            fields: dict[str, FieldValue] = {
                "p50_ms": percentile(samples, 50) / 1e6, "p99_ms": percentile(samples, 99) / 1e6,
                "max_ms": samples[-1] / 1e6, "count": len(samples) * self.every}
            for bound in LATENCY_BUCKETS_MS:
                fields[f"le_{bound}"] = bisect.bisect_right(samples, bound * 1_000_000) * self.every
            points.append(Point(
                LATENCY_MEASUREMENT,
                {"measurement": measurement, "host": self.host, "worker": self.worker},
                fields,
                now_ns,
            ))
        self._samples = {}
        points += [Point(STORED_MEASUREMENT, {"measurement": measurement, "host": self.host,
                                              "worker": self.worker}, {"points": n}, now_ns)
                   for measurement, n in self._stored.items()
                   if measurement not in (LATENCY_MEASUREMENT, STORED_MEASUREMENT)]
        self._stored = {}
        return points
