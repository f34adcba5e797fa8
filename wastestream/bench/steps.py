"""The pipeline under the bench: start and stop it, run one offered-load step, the workers-alone drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import subprocess
import time
from pathlib import Path
from typing import Any

from contract.kafka_record import split_record
from contract.topics import ALL_KAFKA_TOPICS
from wastestream.bench.config import (
    CATCH_UP_S,
    DRAIN_BACKLOG_MAX,
    DRAIN_BACKLOG_MIN,
    DRAIN_BACKLOG_S,
    DRAIN_POLL_S,
    DRAIN_WINDOW_S,
    SATURATION,
    STEP_POLL_S,
    BenchConfig,
)
from wastestream.bench.loadgen import LoadGen, specs_for
from wastestream.bench.measure import (
    cpu_between,
    cpu_snapshot,
    delivered,
    measure_idle,
    py_spy,
    service_pids,
    skip_backlog,
    step_latency,
    topic_partitions,
    wait_until,
)
from wastestream.bench.proccost import kind_costs
from wastestream.bench.stats import best_jump_rate, jump_rate, rate_between, rises
from wastestream.bench.summary import STEP_HEADER, fmt, step_row
from wastestream.foundation.settings import Settings
from wastestream.pipeline import (
    Pipeline,
    drop_mqtt_sessions,
)

log = logging.getLogger("wastestream.bench")

def start_pipeline(cfg: BenchConfig, settings: Settings, run_id: str,
                   run_dir: Path) -> tuple[Pipeline, dict[str, int]]:
    """Bridges and workers of a fresh app, warmed up; and the pids to measure (children + services).

    On failure the children started so far are stopped before the error propagates."""
    # A short session timeout: a worker the drain phase restarts (or kills) leaves the group in
    # seconds, not the 60 s default, so the others do not stall waiting for its partitions.
    env = {"APP_DATADIR": str(run_dir / "faust-data"), "WS_FAUST_SESSION_TIMEOUT_S": "10", **cfg.worker_env}
    pipeline = Pipeline(settings, run_dir, env=env)
    try:
        pipeline.wait(pipeline.start("topics", "topics"), timeout=120)
        # Every contract topic, not just ws.weighings: any registered agent that chokes on someone
        # else's old record would otherwise hold every rebalance of the run (Faust wait_empty).
        skipped = sum(asyncio.run(skip_backlog(settings.kafka_bootstrap, settings.faust_app_id, topic))
                      for topic in ALL_KAFKA_TOPICS)
        log.info("consumer group %s starts at the end of the contract topics (%d records skipped)",
                 settings.faust_app_id, skipped)
        # `--log-level info`, as in production: at warn/error Faust's spinner handler puts the ROOT logger at
        # DEBUG (faust/worker.py _setup_spinner_handler), so every aiokafka debug record is built.
        # `--without-web`: the CLI default turns Faust's web server on (0.0.0.0:6066, one per host).
        for i in range(cfg.workers):
            pipeline.start(f"worker-{i}", "worker", "--log-level", "info", "--without-web")
        for i in range(cfg.bridges):
            pipeline.start(f"bridge-{i}", "bridge", "--client-id", f"wsbench-{run_id}-{i}",
                           "--group", f"wsbench{run_id}", "--log-level", "warning")
        pids = {p.name: p.popen.pid for p in pipeline.processes if p.name != "topics"}
        pids.update(service_pids())
        # Warm-up: trickles of messages until one reaches InfluxDB within 3 s of its end, i.e. every
        # worker has joined and the rebalances (which stall Faust for seconds) are over.
        started = time.monotonic()
        for round_ in range(8):
            prefix = f"w{run_id}r{round_}"
            warm = LoadGen(specs_for(settings.mqtt_host, settings.mqtt_port, prefix, 50, 3, 1, 10))
            acked = sum(r.acked for r in warm.results(timeout=60))
            waited = wait_until(lambda p=prefix, n=acked: delivered(settings, p) >= n, 240,
                                 "warm-up messages in InfluxDB", pipeline)
            if waited <= 3.0:
                break
    except BaseException:
        stop_pipeline(pipeline, settings, run_id, cfg.bridges)
        raise
    print(f"  pipeline ready ({cfg.workers} workers, {cfg.bridges} bridges; warm-up took "
          f"{time.monotonic() - started:.0f} s)")
    return pipeline, pids


def stop_pipeline(pipeline: Pipeline, settings: Settings, run_id: str, bridges: int) -> None:
    pipeline.stop_all()
    drop_mqtt_sessions(settings, [f"wsbench-{run_id}-{i}" for i in range(bridges)])


def run_pipeline(cfg: BenchConfig, settings: Settings, run_id: str, run_dir: Path,
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    """The steps, the workers-alone drain and the idle cost (before the steps) of one pipeline."""
    steps: list[dict[str, Any]] = []
    drain: dict[str, Any] | None = None
    pipeline, pids = start_pipeline(cfg, settings, run_id, run_dir)
    try:
        idle = measure_idle(pipeline, pids, cfg.idle_s)
        print(STEP_HEADER, flush=True)
        for i, rate in enumerate(cfg.steps):
            step = run_step(cfg, settings, pipeline, pids, run_id, run_dir, i, rate)
            steps.append(step)
            print(step_row(step), flush=True)
            if step["saturated"] and not cfg.keep_going:
                print("  saturated: stopping the ramp (--keep-going to continue)")
                break
        backlog = drain_backlog(cfg, steps)
        if backlog > 0:
            best = max((s["sustained_msg_per_s"] for s in steps if not math.isnan(s["sustained_msg_per_s"])),
                       default=0.0)
            drain = run_worker_drain(cfg, settings, pipeline, pids, run_id, backlog, best)
    finally:
        stop_pipeline(pipeline, settings, run_id, cfg.bridges)
    return steps, drain, idle


async def _end_offsets(bootstrap: str, topic: str) -> dict[Any, int]:
    from aiokafka import AIOKafkaConsumer

    tps = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _messages_since(bootstrap: str, since: dict[Any, int]) -> int:
    """Contract messages in the records after `since` (a record holds one or a batch of them:
    contract/kafka_record.py), up to the partitions' current ends."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(since))
        todo = {tp: end for tp, end in ends.items() if end > since[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, since[tp])
        count = 0
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for record in records:
                    if record.offset < todo.get(tp, 0):
                        with contextlib.suppress(ValueError):  # not a contract record: not ours
                            count += len(split_record(record.value))
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
        return count
    finally:
        await consumer.stop()


def drain_backlog(cfg: BenchConfig, steps: list[dict[str, Any]]) -> int:
    """The backlog of the workers-alone drain: `--backlog`, or (auto) DRAIN_BACKLOG_S of the best
    sustained step, within DRAIN_BACKLOG_MIN .. DRAIN_BACKLOG_MAX: the drain must last well
    over the best window (DRAIN_WINDOW_S) at the workers' own speed, which is above the steps'."""
    if cfg.backlog >= 0:
        return cfg.backlog
    best = max((s["sustained_msg_per_s"] for s in steps if not math.isnan(s["sustained_msg_per_s"])),
               default=0.0)
    return int(min(DRAIN_BACKLOG_MAX, max(DRAIN_BACKLOG_MIN, DRAIN_BACKLOG_S * best)))


def run_worker_drain(cfg: BenchConfig, settings: Settings, pipeline: Pipeline, pids: dict[str, int],
                     run_id: str, backlog: int, publish_rate: float) -> dict[str, Any]:
    """The workers alone: stop them, queue `backlog` messages in Kafka, restart them, time the drain.

    Neither the load generator nor the bridges run while it is timed, so this is the Faust
    stage's own capacity (and its CPU per message) on this machine. The count in InfluxDB moves
    in jumps (the bridges pack up to 1,000 messages into a record), so the rates and the CPU are
    taken from jump to jump (stats.jump_rate): from the first delivery, after the restart, table
    recovery and the first rebalance, to the last.
    """
    workers = [p for p in pipeline.processes if p.name.startswith("worker-")]
    pipeline.stop_together(workers)
    for proc in workers:
        pipeline.processes.remove(proc)
    prefix = f"k{run_id}"
    rate = max(2000.0, publish_rate)
    before = asyncio.run(_end_offsets(settings.kafka_bootstrap, "ws.weighings"))
    load = LoadGen(specs_for(settings.mqtt_host, settings.mqtt_port, prefix, rate, backlog / rate,
                             cfg.publishers, cfg.devices))
    acked = sum(r.acked for r in load.results(timeout=backlog / rate + 60))
    wait_until(lambda: asyncio.run(_messages_since(settings.kafka_bootstrap, before)) >= acked,
               120, "backlog in Kafka", pipeline)
    for i in range(cfg.workers):
        proc = pipeline.start(f"worker-{i}", "worker", "--log-level", "info", "--without-web")
        pids[f"worker-{i}"] = proc.popen.pid
    started = time.time()
    cpu0 = cpu_snapshot(pids)
    samples: list[tuple[float, int]] = []
    snapshots: list[dict[str, Any]] = []
    deadline = time.monotonic() + cfg.drain_timeout_s + 120
    count = 0
    while count < acked and time.monotonic() < deadline:
        count = delivered(settings, prefix)
        samples.append((time.time(), count))
        snapshots.append(cpu_snapshot(pids))
        pipeline.check_alive()
        time.sleep(DRAIN_POLL_S)
    procs, machine = cpu_between(cpu0, cpu_snapshot(pids))
    out = drain_figures(samples, snapshots, started)
    out.update(backlog=acked, delivered=count, workers=cfg.workers, cpu_pct=procs, machine_cpu_pct=machine)
    print(drain_line(out, machine), flush=True)
    return out


def drain_figures(samples: list[tuple[float, int]], snapshots: list[dict[str, Any]],
                  started: float) -> dict[str, Any]:
    """Rates and CPU of a drain from its (time, count) samples and the CPU snapshot taken with each.

    The span is from the first rise of the count to the last: the first jump's messages and
    everything before it (process start, imports, table recovery, the first rebalance) are left
    out; a later stall (another rebalance) stays in the mean and its CPU in the per-message cost,
    and the best DRAIN_WINDOW_S window leaves it out of the rate."""
    moved = rises(samples)
    index = {t: i for i, (t, _) in enumerate(samples)}
    out: dict[str, Any] = {
        "msg_per_s": round(jump_rate(samples), 1),
        "best_10s_msg_per_s": round(best_jump_rate(samples, DRAIN_WINDOW_S), 1),
        "seconds_to_drain": round(samples[-1][0] - started, 1) if samples else math.nan,
        "first_delivery_s": round(moved[0][0] - started, 1) if moved else math.nan,
        "span_s": math.nan, "span_messages": 0, "jumps": len(moved),
        "worker_cpu_ms_per_msg": math.nan, "worker_cpu_us_per_msg": math.nan, "cost_by_kind": {},
    }
    if len(moved) >= 2:
        a, b = snapshots[index[moved[0][0]]], snapshots[index[moved[-1][0]]]
        messages = moved[-1][1] - moved[0][1]
        costs = kind_costs(a, b, messages)
        worker_us = costs.get("workers", {}).get("us_per_msg", math.nan)
        out.update(span_s=round(moved[-1][0] - moved[0][0], 1), span_messages=messages,
                   cost_by_kind=costs, worker_cpu_us_per_msg=round(worker_us, 1),
                   worker_cpu_ms_per_msg=round(worker_us / 1000, 4))
    return out


def drain_line(d: dict[str, Any], machine: float) -> str:
    line = (f"  workers alone (drain of a {d['backlog']}-message backlog, {d['jumps']} jumps in the count): "
            f"{fmt(d['msg_per_s'])} msg/s from the first delivery to the last ({fmt(d['span_s'], '.1f')} s, "
            f"{d['span_messages']} messages; first delivery {fmt(d['first_delivery_s'], '.1f')} s after the "
            f"restart), best {DRAIN_WINDOW_S:.0f} s: {fmt(d['best_10s_msg_per_s'])} msg/s; "
            f"{fmt(d['worker_cpu_us_per_msg'])} µs worker CPU per message over that span; "
            f"machine {machine:.0f}% busy")
    if math.isnan(d["best_10s_msg_per_s"]):
        line += (f"\n    (the deliveries spanned under {DRAIN_WINDOW_S:.0f} s: a larger --backlog measures "
                 f"the rate and the CPU better)")
    return line


def run_step(cfg: BenchConfig, settings: Settings, pipeline: Pipeline, pids: dict[str, int], run_id: str,
             run_dir: Path, index: int, rate: float) -> dict[str, Any]:
    prefix = f"b{run_id}s{index}"
    specs = specs_for(settings.mqtt_host, settings.mqtt_port, prefix, rate, cfg.step_s, cfg.publishers,
                      cfg.devices, confirm=cfg.confirmations)
    start, end = specs[0].start_at, specs[0].start_at + cfg.step_s
    load = LoadGen(specs)
    spies = []
    if cfg.py_spy and index == cfg.profile_step:
        time.sleep(max(0.0, start + cfg.warmup_s - time.time()))
        for name in ("worker-0", "bridge-0"):
            spies.append(py_spy(cfg.py_spy, pids[name], cfg.step_s - cfg.warmup_s,
                                 run_dir / f"profile-{name}-step{index}.txt"))
    time.sleep(max(0.0, start + cfg.warmup_s - time.time()))
    pids = {**pids, **load.pids}  # the step's own load generators too
    cpu0 = cpu1 = cpu_snapshot(pids)
    samples: list[tuple[float, int]] = []
    deadline = end + 90
    window = (0, 0)  # messages in InfluxDB at the first and at the last CPU snapshot
    while time.time() < deadline and not (load.done() and time.time() > end):
        samples.append((time.time(), delivered(settings, prefix)))
        if time.time() <= end:
            cpu1 = cpu_snapshot(pids)
            window = (samples[0][1], samples[-1][1])
        pipeline.check_alive()
        time.sleep(STEP_POLL_S)
    results = load.results(timeout=60)
    sent, acked = sum(r.sent for r in results), sum(r.acked for r in results)
    drain_started = time.monotonic()
    count = delivered(settings, prefix)
    while count < acked and time.monotonic() - drain_started < cfg.drain_timeout_s:
        time.sleep(1.0)
        count = delivered(settings, prefix)
    drain_s = time.monotonic() - drain_started
    for spy in spies:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
    sustained = rate_between(samples, start + cfg.warmup_s, end)
    span = max(r.last_send for r in results) - min(r.first_send for r in results)
    publish_rate = sent / span if span > 0 else 0.0
    procs, machine = cpu_between(cpu0, cpu1)
    step = {
        "offered_msg_per_s": rate, "sent": sent, "acked": acked, "publish_rate": round(publish_rate, 1),
        "sustained_msg_per_s": round(sustained, 1), "delivered": count, "drained": count >= acked,
        "drain_s": round(drain_s, 1),
        **step_latency(settings, int((start + cfg.warmup_s) * 1e9), int(end * 1e9)),
        "cpu_pct": procs, "machine_cpu_pct": machine,
        "cost_by_kind": kind_costs(cpu0, cpu1, window[1] - window[0]),
    }
    # Both signs, so one slow poll or a short stall does not end the ramp: it delivered less than
    # was published AND needed more than CATCH_UP_S after the last publish to catch up (or never did).
    behind = not sustained >= SATURATION * min(rate, publish_rate)
    step["saturated"] = bool(not step["drained"] or (behind and drain_s > CATCH_UP_S))
    return step
