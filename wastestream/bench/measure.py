"""Measuring helpers: CPU of the children, counts and latency in InfluxDB, Kafka offsets and topics."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from wastestream.bench.config import (
    P99_TARGET_MS,
)
from wastestream.bench.proccost import PIPELINE_KINDS, group_ticks, kind_costs, read_stats, total_cost
from wastestream.bench.stats import pooled_latency, weighted_median
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import Settings
from wastestream.pipeline import (
    Pipeline,
    PipelineError,
    services,
)


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def cpu_snapshot(pids: dict[str, int]) -> dict[str, Any]:
    """CPU ticks of each named process (with its process group when it leads one: proccost.py)
    and of the whole machine, now."""
    return {"t": time.monotonic(), "machine": _machine_ticks(), "procs": group_ticks(pids, read_stats())}


def cpu_between(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, float], float]:
    """Per process CPU % of one core, and the whole machine's busy % (all engineers' work included)."""
    hz = os.sysconf("SC_CLK_TCK")
    wall = max(1e-6, b["t"] - a["t"])
    procs = {}
    for name, t0 in a["procs"].items():
        t1 = b["procs"].get(name)
        if t0 is not None and t1 is not None:
            procs[name] = round(100 * (t1 - t0) / hz / wall, 1)
    busy = b["machine"][0] - a["machine"][0]
    total = max(1, b["machine"][1] - a["machine"][1])
    return procs, round(100 * busy / total, 1)


def measure_idle(pipeline: Pipeline, pids: dict[str, int], seconds: float) -> dict[str, Any] | None:
    """The pipeline up with no traffic for `seconds` (0: not measured): CPU per kind and in all,
    as % of the machine; printed. The machine's busy % includes everyone else's work."""
    if seconds <= 0:
        return None
    a = cpu_snapshot(pids)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pipeline.check_alive()
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    b = cpu_snapshot(pids)
    costs = kind_costs(a, b, 0)
    total = total_cost(costs, PIPELINE_KINDS)
    _, machine = cpu_between(a, b)
    idle = {"seconds": round(b["t"] - a["t"], 1), "by_kind": costs, "machine_pct": total["machine_pct"],
            "core_pct": total["core_pct"], "machine_busy_pct": machine}
    parts = ", ".join(f"{kind} {c['core_pct']:.1f}" for kind, c in costs.items())
    print(f"  idle (pipeline up, no traffic, {idle['seconds']:.0f} s): {idle['machine_pct']:.1f} % of the "
          f"machine ({parts} % of one core); machine busy {machine:.0f} % (everyone's work)", flush=True)
    return idle


def service_pids() -> dict[str, int]:
    out = services("status").stdout
    return {name: int(pid) for name, pid in re.findall(r"(\w+): running \(pid (\d+)", out)}


def delivered(settings: Settings, prefix: str, attempts: int = 3) -> int:
    """Weighings of the devices `prefix` names in InfluxDB. A count query that times out (an
    InfluxDB the load keeps busy: one run died on it) is asked again, up to `attempts` times."""
    query = f"SELECT count(net_kg) FROM weighing WHERE device =~ /^{prefix}/"
    for attempt in range(1, attempts + 1):
        try:
            rows = influxql(settings, query, timeout=30.0)
            return int(rows[0]["count"]) if rows else 0
        except InfluxQueryError as exc:
            if "database not found" in str(exc):
                return 0  # the workers create it when they start
            if attempt == attempts or "timed out" not in str(exc):
                raise
    raise AssertionError("unreachable")


def step_latency(settings: Settings, start_ns: int, end_ns: int,
                 measurement: str = "weighing") -> dict[str, float]:
    """Latency of every message of the step, from the sinks' 5 s windows (all workers).

    p50/p99 pool the windows' histograms (stats.pooled_latency); `latency_within_1s` is the exact
    share of messages stored within 1 s. Also the worst window's p99, an upper bound that one
    stall dominates (the only figure the bench had before the histograms)."""
    rows = influxql(settings, "SELECT * FROM pipeline_latency WHERE "
                              f"\"measurement\" = '{measurement}' AND time >= {start_ns} "
                              f"AND time <= {end_ns}")
    return latency_of(rows)


def latency_of(rows: list[dict[str, Any]]) -> dict[str, float]:
    if not rows:
        return {"latency_p50_ms": math.nan, "latency_p99_ms": math.nan, "latency_max_ms": math.nan,
                "latency_p99_worst_window_ms": math.nan, "latency_within_1s": math.nan,
                "latency_windows": 0}
    pooled = pooled_latency(rows, int(P99_TARGET_MS))
    worst_window = max(r["p99_ms"] for r in rows)
    histograms = not math.isnan(pooled["p99_ms"])
    # A pooled quantile lies between the windows' own ones: clamp the bucket interpolation to that.
    p50s = [r["p50_ms"] for r in rows]
    return {"latency_p50_ms": min(max(pooled["p50_ms"], min(p50s)), max(p50s)) if histograms
            else weighted_median([(r["p50_ms"], r["count"]) for r in rows]),
            "latency_p99_ms": min(pooled["p99_ms"], worst_window) if histograms else worst_window,
            "latency_max_ms": max(r["max_ms"] for r in rows),
            "latency_p99_worst_window_ms": worst_window, "latency_within_1s": pooled["share_within"],
            "latency_windows": len(rows)}


async def topic_partitions(bootstrap: str, topic: str) -> list[Any]:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]


async def skip_backlog(bootstrap: str, group: str, topic: str) -> int:
    """Commit the new consumer group at the end of `topic`: the bench must not replay others' data."""
    from aiokafka import AIOKafkaConsumer

    tps = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: ends[tp] for tp in tps})
        return sum(ends.values())
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def wait_until(predicate: Any, timeout: float, what: str, pipeline: Pipeline) -> float:
    started = time.monotonic()
    while not predicate():
        pipeline.check_alive()
        if time.monotonic() - started > timeout:
            raise PipelineError(f"{what} not within {timeout:.0f} s")
        time.sleep(1.0)
    return time.monotonic() - started


def py_spy(exe: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample a child for `seconds` (collapsed stacks, for a flame graph or a top-N by self time)."""
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "100", "--format", "raw", "--idle", "--nonblocking",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
