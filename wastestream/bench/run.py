"""`wastestream bench`: full-pipeline throughput and latency against raw limits and a naive baseline.

One run, one machine: (1) the raw limit of Mosquitto, Kafka and InfluxDB alone, (2) the naive
one-script baseline, (3) the pipeline (bridges ×N, Faust workers ×M as child processes, a
fresh Faust app id and InfluxDB database per run) at increasing offered load. Each step's
sustained throughput is the slope of `count(net_kg)` in InfluxDB (InfluxQL) over the step's
steady part; latency is the sinks' own `pipeline_latency` (device `ts` → InfluxDB ack).
Prints a table and the ratios; writes result.json and a PNG plot. `--city-scale` instead runs
city.py's whole city in real time (cityrun.py). A benchmark measures: it asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wastestream.bench.city import SCALES, CityModel
from wastestream.bench.config import (
    CITY_RESULT_SCHEMA,
    PRIVATE_PORTS,
    RESULT_SCHEMA,
    BenchConfig,
)
from wastestream.bench.measure import (
    delete_topics,
)
from wastestream.bench.proccost import cost_table
from wastestream.bench.steps import run_pipeline
from wastestream.bench.summary import fmt, headline_step, nan_to_none, plot, summarise_run
from wastestream.bench.targets import bench_targets, target_lines
from wastestream.foundation import cliutil
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import REPO_ROOT, Settings, load_settings
from wastestream.pipeline import (
    PipelineError,
    private_services_env,
    services,
    services_running,
)


def run_bench(cfg: BenchConfig, out_dir: Path | None) -> dict[str, Any]:
    """The bench on private services (started, then stopped at the end) unless `shared_services`."""
    if not cfg.private_services:
        return _run_bench(cfg, out_dir)
    # Own Mosquitto/Kafka/InfluxDB on other ports: on the shared ones every other pipeline's bridge
    # also forwards the bench's messages into Kafka (and theirs reach the bench's workers).
    shared_run_dir = load_settings().run_dir
    out_dir = out_dir or shared_run_dir / "bench" / time.strftime("%Y%m%d-%H%M%S")
    run_root = shared_run_dir / "bench-services"
    os.environ.update(private_services_env(run_root, *PRIVATE_PORTS))
    print(f"services: private, under {run_root} (MQTT {PRIVATE_PORTS[0]}, Kafka {PRIVATE_PORTS[1]}, "
          f"InfluxDB {PRIVATE_PORTS[2]}); --shared-services uses the shared ones")
    with private_services_lock():
        try:
            return _run_bench(cfg, out_dir)
        finally:
            services("down")


@contextlib.contextmanager
def private_services_lock() -> Iterator[None]:
    """One bench at a time on the private services' ports, from whichever checkout: a second one
    found the first's services up, used them (each run's bridges forwarded the other's messages)
    and stopped them when it ended, in the middle of the first's run. The second now waits."""
    path = Path(tempfile.gettempdir()) / f"wastestream-bench-{PRIVATE_PORTS[0]}.lock"
    with open(path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            print(f"services: another bench is running on them ({lock.read().strip() or 'unknown'}); "
                  f"waiting for it to end", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, {REPO_ROOT}, since {time.strftime('%H:%M:%S')}")
        lock.flush()
        yield  # the lock ends with the file's closing (or with the process)


def _run_bench(cfg: BenchConfig, out_dir: Path | None) -> dict[str, Any]:
    from wastestream.bench import jt808, naive, raw

    base = load_settings()
    run_id = f"{time.strftime('%H%M%S')}{os.getpid() % 1000:03d}"
    run_dir = out_dir or base.run_dir / "bench" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    db = f"wsbench_{run_id}"
    settings = dataclasses.replace(base, influx_db=db, faust_app_id=f"wsbench-{run_id}")
    if not services_running():
        print("services: starting Mosquitto, Kafka, InfluxDB ...")
        services("up")
    print(f"bench {run_id}: database {db}, app {settings.faust_app_id}, output {run_dir}")
    if cfg.city_scale:
        return run_city_bench(cfg, settings, run_id, run_dir)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA, "run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "config": dataclasses.asdict(cfg), "raw": {}, "naive": None, "steps": [], "summary": {},
        "city_model": CityModel().summary(), "workers_drain": None, "idle": None,
    }
    try:
        if not cfg.skip_raw:
            print("raw limits (each service alone):")
            for measure in (lambda: raw.raw_mosquitto(settings, run_id, cfg.raw_s, cfg.raw_procs),
                            lambda: raw.raw_kafka(settings, run_id, cfg.raw_s),
                            lambda: raw.raw_influx(settings, db, cfg.raw_s)):
                r = measure()
                result["raw"][r.component] = raw.as_dict(r)
                print(f"  {r.component:<10} {r.msg_per_s:>10.0f} msg/s  {r.detail}", flush=True)
        if not cfg.skip_naive:
            result["naive"] = naive.run_naive(settings, run_id, db, cfg.naive_rate, cfg.naive_s, 1)
            n = result["naive"]
            print(f"naive baseline (one paho callback, one HTTP write per message): "
                  f"{n['msg_per_s']:.0f} msg/s at {n['offered_msg_per_s']:.0f} offered; "
                  f"latency p50 {n['p50_ms']:.0f} ms, p99 {n['p99_ms']:.0f} ms", flush=True)
        result["jt808"] = jt808.bench_jt808()  # the JT/T 808 gateway's load figure (issue 15)
        print(f"pipeline: steps of {cfg.step_s:.0f} s (first {cfg.warmup_s:.0f} s not counted)")
        steps, drain, idle = run_pipeline(cfg, settings, run_id, run_dir)
        result.update(steps=steps, workers_drain=drain, idle=idle)
    finally:
        result["summary"] = summarise_run(result["raw"], result["naive"], result["steps"])
        (run_dir / "result.json").write_text(json.dumps(nan_to_none(result), indent=2))
        if result["steps"]:
            plot(result, run_dir / "bench.png")
        _cleanup(settings, run_id, db, cfg.keep_db)
    s = result["summary"]
    print(f"\npipeline sustained: {fmt(s.get('pipeline_msg_per_s'))} msg/s "
          f"(p50 {fmt(s.get('latency_p50_ms'))} ms, p99 {fmt(s.get('latency_p99_ms'))} ms)")
    if "within_p99_target_msg_per_s" in s:
        rate, p99 = fmt(s["within_p99_target_msg_per_s"]), fmt(s["within_p99_target_p99_ms"])
        print(f"pipeline with p99 under {s['p99_target_ms']:.0f} ms: {rate} msg/s (p99 {p99} ms)")
    if "ratio_vs_slowest_raw" in s:
        print(f"pipeline (best sustained, any latency) / slowest raw component ({s['slowest_raw']}, "
              f"{s['slowest_raw_msg_per_s']:.0f} msg/s): {s['ratio_vs_slowest_raw']:.3f}")
    if "ratio_vs_naive" in s:
        print(f"pipeline (best sustained, any latency) / naive baseline ({s['naive_msg_per_s']:.0f} msg/s): "
              f"{s['ratio_vs_naive']:.2f}")
    city = result["city_model"]
    pipeline_rate = s.get("pipeline_msg_per_s")
    if isinstance(pipeline_rate, float) and not math.isnan(pipeline_rate):
        peak = city["peak_total_msg_per_s"]
        print(f"city model ({CityModel().population:,} people, wastestream/bench/city.py): busiest minute "
              f"~{peak:.0f} msg/s; pipeline sustained / city peak = {pipeline_rate / peak:.2f}")
    headline = headline_step(result["steps"], s)
    last = result["steps"][-1] if result["steps"] else None
    for step, which in ((headline, "the headline step"), (last, "the last step")):
        if step is not None and (which == "the headline step" or step is not headline):
            title = (f"CPU per message by process kind, step of {step['offered_msg_per_s']:.0f} msg/s "
                     f"offered ({which}):")
            print("\n".join(cost_table(step.get("cost_by_kind", {}), title)))
    print("\n".join(target_lines(bench_targets(s, result["workers_drain"], result["idle"], headline))))
    print(jt808.summary_line(result.get("jt808")))
    print(f"result: {run_dir / 'result.json'}  plot: {run_dir / 'bench.png'}")
    return result


def run_city_bench(cfg: BenchConfig, settings: Settings, run_id: str, run_dir: Path) -> dict[str, Any]:
    """`--city-scale`: the pipeline under the whole city's mix in real time (cityrun.py)."""
    from wastestream.bench.cityrun import run_city

    result: dict[str, Any] = {
        "schema": CITY_RESULT_SCHEMA, "run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "config": dataclasses.asdict(cfg), "city": None,
        "city_model": cfg.city_model().summary(), "scale": cfg.scale,
    }
    try:
        result["city"] = run_city(cfg, settings, run_id, run_dir)
    finally:
        (run_dir / "result.json").write_text(json.dumps(nan_to_none(result), indent=2))
        _cleanup(settings, run_id, settings.influx_db, cfg.keep_db)
    print(f"result: {run_dir / 'result.json'}")
    return result


def _cleanup(settings: Settings, run_id: str, db: str, keep_db: bool) -> None:
    """Drop what the run created in the shared services (its database and Kafka topics)."""
    with contextlib.suppress(InfluxQueryError):
        if not keep_db:
            influxql(settings, f'DROP DATABASE "{db}"')
    with contextlib.suppress(Exception):
        asyncio.run(delete_topics(settings.kafka_bootstrap, settings.faust_app_id))
    with contextlib.suppress(Exception):
        asyncio.run(delete_topics(settings.kafka_bootstrap, f"wsbench.raw.{run_id}"))


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, Path | None]:
    p = cliutil.parser("wastestream bench", __doc__.splitlines()[0])
    p.add_argument("--steps", default="100,200,400,800,1600,3200,4800,6400,7200,8000,8800,9600,11200,12800,"
                                      "20000",
                   help="offered msg/s per step, comma-separated; finer near the top, where the headline "
                        "(the highest step with p99 under 1 s) is decided: a doubling ladder understates it "
                        "by up to half")
    p.add_argument("--step-seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds at the start of a step not counted")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bridges", type=int, default=2)
    p.add_argument("--publishers", type=int, default=2, help="load generator processes")
    p.add_argument("--devices", type=int, default=2000, help="simulated weighbridges per step")
    p.add_argument("--raw-seconds", type=float, default=8.0)
    p.add_argument("--raw-procs", type=int, default=2, help="publisher and subscriber processes for raw MQTT")
    p.add_argument("--naive-rate", type=float, default=2500.0)
    p.add_argument("--naive-seconds", type=float, default=12.0)
    p.add_argument("--drain-timeout", type=float, default=45.0)
    p.add_argument("--backlog", type=int, default=-1,
                   help="messages queued in Kafka for the workers-alone drain (0: skip it; default: 30 s "
                        "of the best sustained step, 20,000 to 300,000)")
    p.add_argument("--confirmations", action="store_true",
                   help="each message asks for a pipeline confirmation (MQTT 5 Response Topic), as an "
                        "edge agent's do; the bridges then publish them: measures their cost")
    p.add_argument("--skip-raw", action="store_true")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--keep-going", action="store_true", help="run every step even past saturation")
    p.add_argument("--keep-db", action="store_true", help="keep the run's InfluxDB database")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "",
                   help="py-spy executable for --profile-step")
    p.add_argument("--profile-step", type=int, default=-1,
                   help="profile worker-0 and bridge-0 during this step")
    p.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the bridges and workers (repeatable), e.g. PRODUCER_LINGER=0.005")
    p.add_argument("--city-scale", action="store_true",
                   help="run city.py's city (every station, truck, weighbridge at its report rate) in "
                        "real time instead of the raw limits, baseline and steps")
    p.add_argument("--city-seconds", type=float, default=120.0, help="how long --city-scale publishes")
    p.add_argument("--scale", choices=sorted(SCALES), default=None,
                   help="run city.py's model of this size in real time (implies --city-scale): city = 4 "
                        "million people (~470 msg/s at the busiest minute), province = 40 million (~4,700)")
    p.add_argument("--province", action="store_const", const="province", dest="scale",
                   help="the same as --scale province")
    p.add_argument("--city-population", type=int, default=None,
                   help="--city-scale: people in the city (default the scale's; devices and rates follow)")
    p.add_argument("--idle-seconds", type=float, default=20.0,
                   help="the pipeline up with no traffic this long before the load: its idle cost (0: skip)")
    p.add_argument("--shared-services", action="store_true",
                   help="measure on the shared services (default: private ones under .run/bench-services, "
                        "ports 38830/39092/38086, started for the run and stopped after it)")
    p.add_argument("--out", type=Path, help="output directory (default .run/bench/<time>)")
    a = p.parse_args(argv)
    cfg = BenchConfig(
        steps=[float(x) for x in a.steps.split(",") if x.strip()][:20], step_s=a.step_seconds,
        warmup_s=min(a.warmup, a.step_seconds / 2), workers=a.workers, bridges=a.bridges,
        publishers=a.publishers, devices=a.devices, raw_s=a.raw_seconds, raw_procs=a.raw_procs,
        naive_rate=a.naive_rate, naive_s=a.naive_seconds, drain_timeout_s=a.drain_timeout, backlog=a.backlog,
        skip_raw=a.skip_raw, skip_naive=a.skip_naive, keep_going=a.keep_going, keep_db=a.keep_db,
        py_spy=a.py_spy if a.profile_step >= 0 else "", profile_step=a.profile_step,
        worker_env=dict(kv.split("=", 1) for kv in a.worker_env if "=" in kv),
        city_scale=a.city_scale or a.scale is not None, city_s=a.city_seconds,
        city_population=a.city_population, scale=a.scale or "city", idle_s=a.idle_seconds,
        private_services=not a.shared_services, confirmations=a.confirmations,
    )
    return cfg, a.out


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_bench(cfg, out)
    except KeyboardInterrupt:
        print("\nbench: interrupted; its child processes are stopped")
        return 130
    except PipelineError as exc:
        print(f"bench: {exc}")
        return 1
    return 0
