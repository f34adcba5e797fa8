"""`wastestream bench --city-scale`: the city of city.py, every device at its real rate, in real time.

The pipeline starts as for the bench (bridges + Faust workers as child processes, a fresh app
id and InfluxDB database, warmed up); then `citygen` publishes the whole city's mix for
`--city-seconds` from `--publishers` processes. Measured, per kind of message: offered msg/s
(what was published), delivered msg/s (slope of the run's points in InfluxDB, InfluxQL,
filtered on the run's device ids, over the run after `--warmup`), every acknowledged message
in InfluxDB after the drain; device -> InfluxDB latency from the sinks' `pipeline_latency`;
whether it kept up (backlog = acked but not yet in InfluxDB, over time and at the end of
publishing; the consumer group's Kafka lag then; drain time); CPU per process and service.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any

from contract.topics import KAFKA_TOPICS
from stream.sinks.config import SinkConfig
from stream.sinks.latency import STORED_MEASUREMENT
from wastestream.bench.city import CityModel
from wastestream.bench.citygen import KINDS, MEASUREMENTS, CityLoad, city_specs, driving_trucks
from wastestream.bench.config import CATCH_UP_S, BenchConfig
from wastestream.bench.measure import (
    cpu_between,
    cpu_snapshot,
    latency_of,
    measure_idle,
    step_latency,
    topic_partitions,
)
from wastestream.bench.proccost import cost_table, kind_costs, machine_shares
from wastestream.bench.stats import fifo_delays, percentile, rate_between, slope
from wastestream.bench.steps import start_pipeline, stop_pipeline
from wastestream.bench.summary import fmt
from wastestream.bench.targets import city_targets, target_lines
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import Settings
from wastestream.pipeline import Pipeline

log = logging.getLogger("wastestream.bench")

DRAIN_POLL_S = 0.5
"""How often the run's counts are read from InfluxDB (five counts in one request) once publishing
has ended, until every acknowledged message is there (the drain)."""
COUNTS_NOTE = """While the devices publish the bench asks InfluxDB nothing: a count costs InfluxDB
CPU per series, not per point. A city's ~7,000 sorting-bin series took ~330 ms of its CPU per
count (measured here); polled every 2 s that was most of the InfluxDB CPU the run charged to the
pipeline, and in a province (ten times the series) the counts stalled InfluxDB's writes: p99 3.6
s with a count every 10 s, 977 ms with none. The delivered curve (rate, backlog, delay, the CPU
window's messages) comes from the sinks' exact `pipeline_stored` tallies, read once at the end;
the exact per-kind counts in InfluxDB are asked only after publishing, until all are stored."""
COUNT_TIMEOUT_S = 30.0
TALLY_INTERVAL_S = SinkConfig().latency_interval_s
"""How often each sink writes its `pipeline_stored` tallies."""
SOURCE_TOPICS = tuple(KAFKA_TOPICS[k] for k in KINDS)
LATENCY_NOTE = {"device_status": "from the bridge's Kafka time: its points are stamped at arrival"}


def delivered_by_kind(settings: Settings, prefix: str) -> dict[str, int]:
    """Points of the run's devices per kind of message (one InfluxQL request, one statement each)."""
    query = "; ".join(f'SELECT {count} AS "{kind}" FROM "{meas}" WHERE "device" =~ /^{prefix}/'
                      for kind, (meas, count) in MEASUREMENTS.items())
    for attempt in range(1, 4):
        try:
            # A province's counts scan tens of thousands of series while InfluxDB ingests: 10 s was short.
            rows = influxql(settings, query, timeout=COUNT_TIMEOUT_S)
            break
        except InfluxQueryError as exc:
            if "database not found" in str(exc):
                return dict.fromkeys(KINDS, 0)
            if attempt == 3:
                raise
            # A loaded InfluxDB can time out a count (or mark later statements "not executed").
            log.warning("count query failed (%s); retrying", str(exc)[-80:])
            time.sleep(attempt)
    out = dict.fromkeys(KINDS, 0)
    for row in rows:
        for kind in KINDS:
            if row.get(kind) is not None:
                out[kind] = int(row[kind])
    return out


async def _kafka_offsets(bootstrap: str, group: str, topics: tuple[str, ...]) -> tuple[int, int]:
    """(records in `topics`, of which `group` has not committed): end offsets and the group's lag.

    Faust commits every few seconds, so the lag includes up to that much of what was processed."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    tps = [tp for topic in topics for tp in await topic_partitions(bootstrap, topic)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        lag += max(0, ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0))
    return sum(ends.values()), lag


def kafka_offsets(settings: Settings) -> tuple[int | None, int | None]:
    """(records in the source topics, the run's consumer-group lag); Nones when Kafka will not say."""
    try:
        return asyncio.run(_kafka_offsets(settings.kafka_bootstrap, settings.faust_app_id, SOURCE_TOPICS))
    except Exception:  # a measurement, not the run
        return None, None


def _latency(settings: Settings, start: float, end: float) -> dict[str, dict[str, float]]:
    out = {kind: step_latency(settings, int(start * 1e9), int(end * 1e9), MEASUREMENTS[kind][0])
           for kind in KINDS}
    event_time = "|".join(MEASUREMENTS[k][0] for k in KINDS if k not in LATENCY_NOTE)
    rows = influxql(settings, f"SELECT * FROM pipeline_latency WHERE \"measurement\" =~ /^({event_time})$/ "
                              f"AND time >= {int(start * 1e9)} AND time <= {int(end * 1e9)}")
    out["total"] = latency_of(rows)  # every event-time message of the run, pooled
    return out


def run_city(cfg: BenchConfig, settings: Settings, run_id: str, run_dir: Path) -> dict[str, Any]:
    model = cfg.city_model()
    pipeline, pids = start_pipeline(cfg, settings, run_id, run_dir)
    try:
        idle = measure_idle(pipeline, pids, cfg.idle_s)
        out = _measure(cfg, settings, pipeline, pids, run_id, model)
    finally:
        stop_pipeline(pipeline, settings, run_id, cfg.bridges)
    out["idle"] = idle
    print("\n".join(target_lines(city_targets(out, idle, cfg.scale))))
    return out


def _measure(cfg: BenchConfig, settings: Settings, pipeline: Pipeline, pids: dict[str, int], run_id: str,
             model: CityModel) -> dict[str, Any]:
    prefix = f"c{run_id}"
    duration = cfg.city_s
    specs = city_specs(settings.mqtt_host, settings.mqtt_port, prefix, duration, cfg.publishers, model=model)
    start, end = specs[0].start_at, specs[0].start_at + duration
    steady = start + min(cfg.warmup_s, duration / 2)
    records_before, _ = kafka_offsets(settings)
    load = CityLoad(specs)
    try:
        out = _follow(cfg, settings, pipeline, {**pids, **load.pids}, load, model, prefix, start, steady, end)
    finally:
        load.stop()
    records_after, _ = kafka_offsets(settings)
    # Other bridges on the same Mosquitto (a demo's, a test's) produce copies of the city's messages
    # into the same topics, and other publishers' traffic lands there too: the workers process all.
    out["kafka_records"] = (records_after - records_before
                            if records_after is not None and records_before is not None else None)
    out.update(scale=cfg.scale, population=model.population)
    print(city_table(out))
    return out


def stored_series(settings: Settings, since: float) -> dict[str, list[tuple[float, float]]]:
    """Per kind, (time, points stored so far) from the sinks' own `pipeline_stored` tallies (every
    worker's, exact per interval; stream/sinks/SCHEMA.md): the run's delivered curve, at no cost
    per series. Each worker's tallies are a counter of their own, read linearly between its
    tallies (and from 0 one interval before its first), then summed: the workers tally at
    different moments. Empty lists when InfluxDB will not say (a measurement missed, not the run)."""
    kind_of = {MEASUREMENTS[k][0]: k for k in KINDS}
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    try:
        rows = influxql(settings, f'SELECT "points", "measurement", "worker" FROM "{STORED_MEASUREMENT}" '
                                  f"WHERE time >= {int(since * 1e9)}", timeout=COUNT_TIMEOUT_S)
    except InfluxQueryError as exc:
        log.warning("stored tallies not read (%s)", str(exc)[-80:])
        return out
    counters: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in sorted(rows, key=lambda r: r["time"]):
        kind = kind_of.get(row.get("measurement", ""))
        if kind is None or row.get("points") is None:
            continue
        series = counters.setdefault((kind, str(row.get("worker"))), [])
        t = row["time"] / 1e9
        if not series:
            series.append((t - TALLY_INTERVAL_S, 0.0))
        series.append((t, series[-1][1] + int(row["points"])))
    for kind in KINDS:
        out[kind] = merged_total({w: c for (k, w), c in counters.items() if k == kind})
    return out


def merged_total(counters: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Growing counters as one: at each of their sample times, the sum of each one's value then."""
    times = sorted({t for series in counters.values() for t, _ in series})
    return [(t, sum(value_at(series, t) for series in counters.values())) for t in times]


def value_at(series: list[tuple[float, float]], t: float) -> float:
    """A growing counter's value at `t`: linear between its samples, 0 before the first, the last after."""
    before = (-math.inf, 0.0)
    for ts, n in series:
        if ts >= t:
            t0, n0 = before
            if ts == t:
                return float(n)
            return 0.0 if math.isinf(t0) else n0 + (n - n0) * (t - t0) / (ts - t0)
        before = (ts, n)
    return float(before[1])


def _follow(cfg: BenchConfig, settings: Settings, pipeline: Pipeline, pids: dict[str, int], load: CityLoad,
            model: CityModel, prefix: str, start: float, steady: float, end: float) -> dict[str, Any]:
    """Publishing: every second the publishers' counts and the CPU; nothing is asked of InfluxDB
    (COUNTS_NOTE). Then the exact counts until every acknowledged message is stored."""
    duration = end - start
    acked_series: list[tuple[float, dict[str, int]]] = []  # (t, acked per kind), every second
    cpu0 = cpu1 = None
    cpu_from = cpu_to = start  # wall-clock times of cpu0 and cpu1 (their own "t" is monotonic)
    next_print = start + 15
    while not load.done():
        pipeline.check_alive()
        t = time.time()
        sent, acked = load.progress()
        acked_series.append((t, acked))
        if steady <= t <= end:
            if cpu0 is None:
                cpu0, cpu_from = cpu_snapshot(pids), t
            cpu1, cpu_to = cpu_snapshot(pids), t
        if start <= t <= end and t >= next_print:
            next_print += 15
            print(f"  {t - start:5.0f} s: published {sum(sent.values()):>7}, acknowledged by Mosquitto "
                  f"{sum(acked.values()):>7}", flush=True)
        if time.time() > end + 120 or (load.done() and time.time() < end - 1):  # a publisher died early
            break
        time.sleep(max(0.1, 1.0 - (time.time() - t)))
    samples: list[dict[str, Any]] = []
    try:
        got = delivered_by_kind(settings, prefix)  # publishing has ended: how far behind is the pipeline?
    except InfluxQueryError as exc:
        log.warning("counts not read (%s)", str(exc)[-80:])
        got = dict.fromkeys(KINDS, 0)
    t = time.time()
    _, acked_now = load.progress()
    samples.append({"t": t, "delivered": got})
    at_end = {"t": t, "backlog": sum(acked_now.values()) - sum(got.values()),
              "kafka_lag": kafka_offsets(settings)[1]}
    results = load.results(timeout=60)
    acked = {k: sum(r["acked"][k] for r in results) for k in KINDS}
    sent = {k: sum(r["sent"][k] for r in results) for k in KINDS}
    last_send = max(r["last_send"] for r in results)
    while any(got[k] < acked[k] for k in KINDS) and time.time() - last_send < cfg.drain_timeout_s:
        time.sleep(DRAIN_POLL_S)
        t = time.time()
        got = delivered_by_kind(settings, prefix)
        samples.append({"t": t, "delivered": got})
    drained = all(got[k] >= acked[k] for k in KINDS)
    # The first count that found every acked message stored (asked DRAIN_POLL_S after the one
    # before returned; often before the publishers had collected their last acks), else now.
    stored_at = next((s["t"] for s in samples if s["t"] >= last_send
                      and all(s["delivered"][k] >= acked[k] for k in KINDS)), time.time())
    drain_s = max(0.0, stored_at - last_send)
    procs, machine = cpu_between(cpu0, cpu1) if cpu0 and cpu1 else ({}, math.nan)
    latency = _latency(settings, steady, end)
    stored = stored_series(settings, start)  # the delivered curve while publishing (COUNTS_NOTE)
    stored_total = merged_total(stored)  # the kinds' curves as one
    rates = model.peak_rates()
    kinds: dict[str, Any] = {}
    for k in KINDS:
        kinds[k] = {"measurement": MEASUREMENTS[k][0], "model_msg_per_s": round(rates[k], 2),
                    "offered_msg_per_s": round(sent[k] / duration, 2), "sent": sent[k], "acked": acked[k],
                    "delivered_msg_per_s": round(rate_between(stored[k], steady, end), 2), "in_db": got[k],
                    "drained": got[k] >= acked[k], **latency[k]}
    acked_total = [(t, float(sum(a.values()))) for t, a in acked_series]
    backlog = [(t, value_at(acked_total, t) - n) for t, n in stored_total if steady <= t <= end]
    total = {"model_msg_per_s": round(sum(rates.values()), 1),
             "offered_msg_per_s": round(sum(sent.values()) / duration, 1),
             "sent": sum(sent.values()), "acked": sum(acked.values()), "in_db": sum(got.values()),
             "delivered_msg_per_s": round(rate_between(stored_total, steady, end), 1), **latency["total"]}
    delays = sorted(fifo_delays(acked_total, [(t, n) for t, n in stored_total if t >= steady]))
    window = (value_at(stored_total, cpu_from), value_at(stored_total, cpu_to))
    devices = model.devices()
    out = {
        "duration_s": duration, "warmup_s": steady - start, "prefix": prefix,
        "devices": {**devices, "truck_driving": driving_trucks(model)},
        "kinds": kinds, "total": total,
        "backlog_at_end": at_end["backlog"],
        "kafka_lag_at_end": at_end["kafka_lag"],
        "backlog_max": max((b for _, b in backlog), default=math.nan),
        "backlog_trend_msg_per_s": round(slope(backlog), 2),
        "delay_p50_s": round(percentile(delays, 50), 1),
        "delay_max_s": round(max(delays, default=math.nan), 1),
        "drained": drained, "drain_s": round(drain_s, 1),
        "kept_up": bool(drained and drain_s <= CATCH_UP_S),
        "publish_late_max_ms": round(1000 * max(r["late_max_s"] for r in results), 1),
        "publish_late_over_1s": sum(r["late_over_1s"] for r in results),
        "cpu_pct": procs, "machine_cpu_pct": machine,
        "cost_by_kind": kind_costs(cpu0, cpu1, round(window[1] - window[0])) if cpu0 and cpu1 else {},
        "cpu_window_s": round(cpu1["t"] - cpu0["t"], 1) if cpu0 and cpu1 else math.nan,
        "samples": [{"t": round(t - start, 1), "acked": round(value_at(acked_total, t)), "stored": round(n)}
                    for t, n in stored_total],
    }
    # The machine's busy % (the issue's target) over the same window, and whose work it was.
    out["machine_shares"] = machine_shares(out["cost_by_kind"], machine)
    return out


def city_table(c: dict[str, Any]) -> str:
    d = c["devices"]
    size = f"{c['scale']} of {c['population']:,} people" if "population" in c else "city scale"
    lines = [f"{size}: {d['sorting_station']:,} sorting stations, {d['truck']:,} trucks "
             f"({d['truck_driving']:,} driving), {d['weighbridge']} weighbridges; "
             f"{c['duration_s']:.0f} s in real time (rates over the last "
             f"{c['duration_s'] - c['warmup_s']:.0f} s)",
             f"  {'kind':<16} {'model/s':>8} {'offered/s':>9} {'delivered/s':>11} {'in DB/acked':>17} "
             f"{'p50 ms':>7} {'p99 ms':>7}"]
    for name, k in [*c["kinds"].items(), ("total", c["total"])]:
        mark = "*" if name in LATENCY_NOTE else ""
        lines.append(f"  {name + mark:<16} {fmt(k['model_msg_per_s'], '.1f'):>8} "
                     f"{fmt(k['offered_msg_per_s'], '.1f'):>9} {fmt(k['delivered_msg_per_s'], '.1f'):>11} "
                     f"{k['in_db']:>8}/{k['acked']:<8} {fmt(k['latency_p50_ms']):>7} "
                     f"{fmt(k['latency_p99_ms']):>7}")
    lines += [f"  * latency {note}" for note in LATENCY_NOTE.values()]
    lag = c["kafka_lag_at_end"]
    lines.append(f"  kept up: {'yes' if c['kept_up'] else 'NO'} (at the end of publishing "
                 f"{c['backlog_at_end']} acked messages not yet in InfluxDB, Kafka lag "
                 f"{'-' if lag is None else lag}; {'drained' if c['drained'] else 'NOT drained'} "
                 f"{c['drain_s']:.1f} s after the last publish; backlog max {fmt(c['backlog_max'])}, "
                 f"trend {fmt(c['backlog_trend_msg_per_s'], '+.2f')} msg/s; as a delay: p50 "
                 f"{fmt(c['delay_p50_s'], '.1f')} s, max {fmt(c['delay_max_s'], '.1f')} s)")
    records = c.get("kafka_records")
    if records is not None:
        lines.append(f"  Kafka: {records} records in the source topics during the run, for "
                     f"{c['total']['acked']} acked city messages (the rest: copies by other bridges on the "
                     f"broker, others' traffic; the workers process them all)")
    lines.append(f"  publishers: at most {c['publish_late_max_ms']:.0f} ms behind schedule "
                 f"({c['publish_late_over_1s']} messages more than 1 s late)")
    cpu = ", ".join(f"{name} {pct:.0f}" for name, pct in sorted(c["cpu_pct"].items()))
    shares = c.get("machine_shares") or machine_shares(c.get("cost_by_kind", {}), c["machine_cpu_pct"])
    lines.append(f"  CPU % of one core: {cpu}")
    lines.append(f"  machine {fmt(c['machine_cpu_pct'])}% busy over the run after the warm-up "
                 f"({fmt(c.get('cpu_window_s'))} s): the pipeline {fmt(shares['pipeline_pct'], '.1f')}% "
                 f"(Mosquitto, bridges, Kafka, workers, InfluxDB), the load generator "
                 f"{fmt(shares['load_generator_pct'], '.1f')}%, other work "
                 f"{fmt(shares['other_pct'], '.1f')}% (the bench itself, everyone else's)")
    if c.get("cost_by_kind"):
        lines += cost_table(c["cost_by_kind"], "  CPU per message by process kind (after the warm-up):")
    return "\n".join(lines)
