"""The sink's knobs, one frozen value shared by the sink and its latency recorder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SinkConfig:
    batch_size: int = 5000
    flush_ms: int = 100
    """Least time between the starts of two writes (unless a batch is full or a flush is asked):
    bounds the request rate (InfluxDB spends ~0.5 ms of CPU per request) and a point's wait."""
    max_buffered: int = 50_000
    give_up_s: float = 60.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    deadletter_chunk_bytes: int = 512 * 1024
    """Kafka's default message limit is 1 MB; a big failed batch is split into records below it."""
    latency_interval_s: float = 5.0
    """How often a `pipeline_latency` point is written per measurement; 0 turns the measurement off."""
    latency_sample_every: int = 4
    """Record the age of one stored point in this many: cheap, yet enough samples for a p99."""
    latency_max_samples: int = 20_000
    """Per measurement and interval; further samples in that interval are skipped (bounded memory)."""
