"""The InfluxDB sink's metrics (workers and the alert service's exporter): write latency and outcomes.

Observed once per batch write, never per point. `ws_influx_write_seconds` is the time of each HTTP
write that InfluxDB acknowledged (its p99 is on the pipeline-health dashboard); a failed attempt
counts in `ws_influx_write_failures_total` and a batch given up on in the dead-lettered points.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WRITE_SECONDS = Histogram(
    "ws_influx_write_seconds", "Time of one acknowledged InfluxDB batch write",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
POINTS_WRITTEN = Counter("ws_influx_points_written", "Points InfluxDB acknowledged")
WRITE_FAILURES = Counter("ws_influx_write_failures", "Failed InfluxDB write attempts (retried or not)")
POINTS_DEADLETTERED = Counter("ws_influx_points_deadlettered",
                              "Points given up on and sent to ws.deadletter instead")


def written(seconds: float, points: int) -> None:
    WRITE_SECONDS.observe(seconds)
    POINTS_WRITTEN.inc(points)
