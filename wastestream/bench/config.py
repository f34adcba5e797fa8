"""The bench's settings (one run's BenchConfig) and the result file's schema constants."""

from __future__ import annotations

import dataclasses

from wastestream.bench.city import CityModel, model_for

RESULT_SCHEMA = "wastestream-bench/1"
CITY_RESULT_SCHEMA = "wastestream-bench-city/1"
STEP_KEYS = ("offered_msg_per_s", "sent", "acked", "publish_rate", "sustained_msg_per_s", "delivered",
             "drained", "drain_s", "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
             "latency_p99_worst_window_ms", "latency_within_1s", "cpu_pct",
             "machine_cpu_pct", "saturated")
"""Every step record has these keys (tests/unit/test_bench_result.py checks the file against them)."""
SATURATION = 0.85
"""A step delivering less than this share of what was published is past the pipeline's knee ..."""
CATCH_UP_S = 5.0
P99_TARGET_MS = 1000.0
"""The latency bar of the summary's `within_p99_target_msg_per_s` (issue 6: p99 under 1 s)."""
DRAIN_WINDOW_S = 10.0
"""The workers-alone drain's best window (leaves a rebalance stall out of the rate)."""
DRAIN_BACKLOG_S = 30.0
DRAIN_BACKLOG_MIN = 20_000
DRAIN_BACKLOG_MAX = 300_000
"""The drain's automatic backlog: this many seconds of the best sustained step, within these
bounds. The bridges pack up to 1,000 messages into one Kafka record, so the count in InfluxDB
moves in big jumps: 6,000 messages (the old default) were stored in one or two of them, ~3 s
of processing, and neither a rate nor a CPU per message could be taken from that."""
STEP_POLL_S = 2.0
"""How often a step's delivered count is read from InfluxDB: the count scans every series of the
step's devices, and InfluxDB's CPU for it is charged to the pipeline; every second it was ~a fifth
of InfluxDB's CPU in a profile. Seven or more samples still give the step's rate."""
DRAIN_POLL_S = 0.5
"""How often the drain's count (and the CPU) is read: the jumps' times are known to this."""
PRIVATE_PORTS = (38830, 39092, 38086)
"""MQTT, Kafka (+1: its controller), InfluxDB (+2: its RPC) of the bench's own services."""
"""... when it also needs more than this after the step's last publish to deliver everything."""


@dataclasses.dataclass
class BenchConfig:
    steps: list[float]
    step_s: float = 20.0
    warmup_s: float = 5.0
    workers: int = 2
    bridges: int = 2
    publishers: int = 2
    devices: int = 2000
    raw_s: float = 8.0
    raw_procs: int = 2
    naive_rate: float = 2500.0
    naive_s: float = 12.0
    drain_timeout_s: float = 45.0
    backlog: int = -1
    """Messages of the workers-alone drain; -1: automatic (steps.drain_backlog); 0: no drain."""
    skip_raw: bool = False
    skip_naive: bool = False
    keep_going: bool = False
    keep_db: bool = False
    py_spy: str = ""
    profile_step: int = -1
    worker_env: dict[str, str] = dataclasses.field(default_factory=dict)
    """Extra environment for the children, e.g. Faust settings (STREAM_WAIT_EMPTY, PRODUCER_LINGER)
    to measure a tuning without editing the app."""
    city_scale: bool = False
    """Instead of raw limits, baseline and steps: the city of city.py in real time (cityrun.py)."""
    city_s: float = 120.0
    city_population: int | None = None
    """--city-scale: another population than the scale's (devices and rates follow it; city.py)."""
    scale: str = "city"
    """--city-scale: city.py's SCALES entry ("city": 4 million people, "province": 40 million)."""
    idle_s: float = 20.0
    """How long the pipeline runs with no traffic before the load, for its idle cost (0: skip)."""
    private_services: bool = True
    confirmations: bool = False
    """Every message asks for a pipeline confirmation, as edge agents' do: measures their cost."""
    """Own services for the run (see run_bench); False measures on the shared ones."""

    def city_model(self) -> CityModel:
        return model_for(self.scale, self.city_population)
