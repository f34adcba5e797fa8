"""The benchmark's pure parts: percentile math, load-generator messages, result file shape."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

from contract.codec import decode, encode
from contract.events import Weighing
from contract.msgid import parse_msg_id
from contract.topics import parse_mqtt_topic
from stream.sinks.config import SinkConfig
from stream.sinks.latency import LATENCY_BUCKETS_MS, LATENCY_MEASUREMENT, STORED_MEASUREMENT, LatencyRecorder
from stream.validation import Routed, validate
from wastestream.bench.config import RESULT_SCHEMA, STEP_KEYS
from wastestream.bench.loadgen import LoadSpec, device_ids, weighing
from wastestream.bench.stats import percentile, pooled_latency, rate_between, summarise, weighted_median
from wastestream.bench.summary import nan_to_none, plot, summarise_run


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))


def test_summarise_and_weighted_median() -> None:
    s = summarise([5.0, 1.0, 3.0])
    assert (s["p50_ms"], s["max_ms"], s["samples"]) == (3.0, 5.0, 3.0)
    assert weighted_median([(10.0, 1), (20.0, 100), (30.0, 1)]) == 20.0
    assert math.isnan(weighted_median([]))


def test_rate_between_uses_samples_inside_the_window() -> None:
    samples = [(0.0, 0), (1.0, 50), (2.0, 150), (3.0, 250), (4.0, 260)]
    assert rate_between(samples, 1.0, 3.0) == 100.0
    assert math.isnan(rate_between(samples, 10.0, 20.0))


def spec(**kw: object) -> LoadSpec:
    base: dict[str, object] = dict(host="127.0.0.1", port=1, prefix="b123s0p1", devices=30, sites=3,
                                   rate=10.0, duration_s=1.0, start_at=0.0)
    base.update(kw)
    return LoadSpec(**base)  # type: ignore[arg-type]


def test_loadgen_messages_are_valid_contract_messages_the_bridge_routes() -> None:
    devices = device_ids(spec())
    assert len({d for d, _, _ in devices}) == 30 and len({s for _, s, _ in devices}) == 3
    for seq, (device, site, topic) in enumerate(devices, start=1):
        payload = encode(weighing(device, site, 1, seq, datetime.now(UTC)))
        event = decode(payload)
        assert isinstance(event, Weighing)
        assert parse_msg_id(event.msg_id) == (device, 1, seq)
        assert parse_mqtt_topic(topic).device_id == device
        assert isinstance(validate(topic, payload), Routed)  # exactly what the bridge accepts


def test_loadgen_topic_root_for_raw_and_naive_runs() -> None:
    (_, site, topic), *_ = device_ids(spec(topic_root="wsbench/x/naive"))
    assert topic == f"wsbench/x/naive/{site}/b123s0p1d0"


def test_sink_latency_recorder_samples_ages_per_measurement() -> None:
    rec = LatencyRecorder(SinkConfig(latency_sample_every=1), host="h", worker="w")
    now = 10_000_000_000
    rec.record([f"weighing,site=s v=1 {now - 2_000_000}", f"weighing,site=s v=1 {now - 4_000_000}",
                f"tonnage_daily v=1 {now - 5}", f"pipeline_latency,m=x p50_ms=1 {now}"], now)
    points = {p.tags["measurement"]: p for p in rec.take_points(now) if p.measurement == LATENCY_MEASUREMENT}
    assert set(points) == {"weighing", "tonnage_daily"}
    w = points["weighing"]
    assert w.fields["p50_ms"] == 2.0 and w.fields["max_ms"] == 4.0 and w.fields["count"] == 2
    assert w.tags == {"measurement": "weighing", "host": "h", "worker": "w"}
    assert rec.take_points(now) == []  # reset after each interval


def result_fixture() -> dict[str, object]:
    step = {k: 1.0 for k in STEP_KEYS} | {"cpu_pct": {"worker-0": 90.0}, "drained": True, "saturated": False,
                                            "sent": 10, "acked": 10, "delivered": 10}
    raw = {"kafka": {"component": "kafka", "msg_per_s": 50_000.0, "delivered": 1, "detail": {}},
           "mosquitto": {"component": "mosquitto", "msg_per_s": 10_000.0, "delivered": 1, "detail": {}}}
    naive = {"msg_per_s": 1000.0, "p50_ms": math.nan}
    return {"schema": RESULT_SCHEMA, "run_id": "x", "machine": {"cpus": 2}, "config": {}, "raw": raw,
            "naive": naive, "steps": [step], "summary": summarise_run(raw, naive, [step])}


def test_result_file_schema_and_plot(tmp_path: Path) -> None:
    result = result_fixture()
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary["slowest_raw"] == "mosquitto"
    assert summary["ratio_vs_slowest_raw"] == 1.0 / 10_000 and summary["ratio_vs_naive"] == 1.0 / 1000
    text = json.dumps(nan_to_none(result), allow_nan=False)  # strict JSON: NaN becomes null
    loaded = json.loads(text)
    assert loaded["naive"]["p50_ms"] is None
    assert set(STEP_KEYS) <= set(loaded["steps"][0])
    plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_city_model_scales_with_population() -> None:
    from wastestream.bench.city import CityModel

    city = CityModel()
    summary = city.summary()
    assert summary["devices"] == {"sorting_station": 3571, "truck": 2880, "weighbridge": 60}
    total = summary["peak_total_msg_per_s"]
    assert isinstance(total, float) and 300 < total < 700
    half = CityModel(population=2_000_000).summary()["peak_total_msg_per_s"]
    assert isinstance(half, float) and abs(half - total / 2) < 5  # all but the fixed weighbridges scale


def test_sink_writes_pipeline_latency_points_while_busy() -> None:
    import asyncio
    import time

    from stream.sinks.influx import InfluxSink
    from stream.sinks.line_protocol import Point

    class Slow:
        target = "fake"

        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        async def prepare(self) -> None:
            pass

        async def write(self, body: bytes) -> None:
            await asyncio.sleep(0.01)
            self.bodies.append(body)

        async def close(self) -> None:
            pass

    async def scenario() -> list[bytes]:
        transport = Slow()
        sink = InfluxSink(transport, deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=5, flush_ms=10, latency_interval_s=0.05,
                                            latency_sample_every=1))
        await sink.start()
        for i in range(300):  # faster than the transport: the buffer stays non-empty
            await sink.write(Point("weighing", {"site": "s"}, {"v": float(i)}, time.time_ns()))
        await sink.flush(10)
        await sink.stop()
        return transport.bodies

    bodies = asyncio.run(asyncio.wait_for(scenario(), 20))
    latency = [b for b in bodies if b.startswith(b"pipeline_latency")]
    assert len(latency) >= 3  # one per interval even though the buffer never emptied in between
    assert b"measurement=weighing" in latency[0] and b"p99_ms=" in latency[0]
    data_lines = sum(len(b.split(b"\n")) for b in bodies if not b.startswith(b"pipeline_latency"))
    assert data_lines == 300  # telemetry never replaces or drops data


def test_summary_names_the_best_step_within_the_p99_target() -> None:
    base = {k: 1.0 for k in STEP_KEYS} | {"drained": True, "saturated": False}
    steps = [base | {"sustained_msg_per_s": 400.0, "latency_p99_ms": 350.0, "latency_within_1s": 0.999},
             base | {"sustained_msg_per_s": 760.0, "latency_p99_ms": 2500.0,  # faster, but p99 too high
                     "latency_within_1s": 0.97},
             base | {"sustained_msg_per_s": 900.0, "latency_p99_ms": 900.0, "drained": False}]  # fell behind
    summary = summarise_run({}, None, steps)
    assert summary["pipeline_msg_per_s"] == 900.0  # the best sustained, whatever its latency
    assert summary["within_p99_target_msg_per_s"] == 400.0 and summary["within_p99_target_p99_ms"] == 350.0
    assert "within_p99_target_msg_per_s" not in summarise_run({}, None, steps[1:])


def test_summary_judges_p99_by_the_share_within_1s_when_histograms_exist() -> None:
    """The worst 5 s window's p99 can be far above the p99 of all messages: one stall decides it."""
    base = {k: 1.0 for k in STEP_KEYS} | {"drained": True, "saturated": False}
    step = base | {"sustained_msg_per_s": 800.0, "latency_p99_ms": 980.0, "latency_within_1s": 0.991,
                   "latency_p99_worst_window_ms": 2900.0}
    assert summarise_run({}, None, [step])["within_p99_target_msg_per_s"] == 800.0
    old = base | {"sustained_msg_per_s": 800.0, "latency_p99_ms": 2900.0, "latency_within_1s": math.nan}
    assert "within_p99_target_msg_per_s" not in summarise_run({}, None, [old])


def test_sink_latency_histogram_is_cumulative_and_scaled_by_the_sampling() -> None:
    rec = LatencyRecorder(SinkConfig(latency_sample_every=2), host="h", worker="w")
    now = 100_000_000_000
    ages_ms = [5, 15, 15, 40, 600, 600, 1000, 1000, 2500, 90_000]  # every other one is sampled
    rec.record([f"weighing v=1 {now - a * 1_000_000}" for a in ages_ms], now)
    [p] = [p for p in rec.take_points(now) if p.measurement == LATENCY_MEASUREMENT]
    sampled = ages_ms[::2]  # 5, 15, 600, 1000, 2500
    for bound in LATENCY_BUCKETS_MS:
        assert p.fields[f"le_{bound}"] == 2 * sum(1 for a in sampled if a <= bound), bound
    assert p.fields["count"] == 10


def test_pooled_latency_adds_windows_up() -> None:
    def window(ages_ms: list[float]) -> dict[str, float | None]:
        row: dict[str, float | None] = {f"le_{b}": float(sum(1 for a in ages_ms if a <= b))
                                        for b in LATENCY_BUCKETS_MS}
        return row | {"count": float(len(ages_ms)), "max_ms": max(ages_ms), "p99_ms": max(ages_ms)}

    calm = window([150.0] * 990)  # 99 % of all messages in the bucket (100, 150]
    stall = window([2500.0] * 10)  # one window's p99 is 2.5 s
    pooled = pooled_latency([calm, stall])
    assert pooled["share_within"] == 0.99
    assert pooled["p99_ms"] == 150.0  # the 990th of 1000 is the last of the calm bucket
    assert 100.0 < pooled["p50_ms"] < 150.0  # interpolated inside its bucket
    assert pooled_latency([calm, stall | {"le_1000": None}])["p99_ms"] != pooled["p99_ms"]  # NaN: no mixing
    beyond = pooled_latency([window([90_000.0] * 5)])
    assert beyond["p99_ms"] == 90_000.0 and beyond["share_within"] == 0.0


def test_sink_counts_every_stored_point_per_measurement_not_only_the_sampled_ones() -> None:
    """`pipeline_stored` is exact (readers count with it instead of scanning the measurement's
    series), whatever the sampling, in runs or interleaved, with and without tags."""
    rec = LatencyRecorder(SinkConfig(latency_sample_every=4), host="h", worker="w")
    now = 10_000_000_000
    rec.record([f"deposit,station=a kg=1 {now}"] * 3 + [f"bin_level,station=a fill_pct=1 {now}"]
               + [f"deposit,station=b kg=2 {now}"] * 2 + [f"tonnage_daily net_kg=1 {now}"], now)
    rec.record([f"deposit,station=c kg=1 {now}", f"tonnage_daily net_kg=2 {now}"], now)
    stored = {p.tags["measurement"]: p.fields["points"] for p in rec.take_points(now)
              if p.measurement == STORED_MEASUREMENT}
    assert stored == {"deposit": 6, "bin_level": 1, "tonnage_daily": 2}
    assert [p for p in rec.take_points(now) if p.measurement == STORED_MEASUREMENT] == []  # per interval
