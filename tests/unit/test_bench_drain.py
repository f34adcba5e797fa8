"""The workers-alone drain's figures from a count that moves in jumps (issue 14's worker CPU target).

Since the bridges pack up to 1,000 messages into one Kafka record, the drain's count in InfluxDB
moves in a few big steps. The old figures (the rate between 10 % and 90 % of the backlog, the
best 10 s window from every sample, the CPU over the 10-90 % samples) came out missing or 0 for
such a count; these series are built the way the bench samples a drain (count and CPU snapshot
together, every poll) from a known processing rate and CPU cost.
"""

from __future__ import annotations

import math
import os

import pytest

from wastestream.bench.config import DRAIN_BACKLOG_MIN, BenchConfig
from wastestream.bench.stats import best_jump_rate, jump_rate, rises
from wastestream.bench.steps import drain_backlog, drain_figures

HZ = os.sysconf("SC_CLK_TCK")


def drain(*, backlog: int, rate: float, jump: int, startup_s: float, poll_s: float, cpu_us: float,
          stall_at: int | None = None, stall_s: float = 0.0,
          ) -> tuple[list[tuple[float, int]], list[dict[str, object]]]:
    """Samples of a drain: after `startup_s` (a core busy with imports and table recovery) the
    workers process `rate` msg/s at `cpu_us` each; their points land in InfluxDB `jump` at a time,
    each jump once its messages are processed; after `stall_at` messages a stall of `stall_s`
    (a rebalance, no CPU). Polled every `poll_s` from t = 0 (the restart)."""
    landed: list[tuple[float, int]] = []  # (time, count) of every jump
    t, done = startup_s, 0
    while done < backlog:
        if stall_at is not None and done == stall_at:
            t += stall_s
        n = min(jump, backlog - done)
        t += n / rate
        done += n
        landed.append((t, done))

    def count_at(when: float) -> int:
        return max((c for at, c in landed if at <= when), default=0)

    def cpu_at(when: float) -> float:  # CPU seconds of the workers by `when`
        cpu = min(when, startup_s)
        processed = count_at(when)
        started = next((at - jump / rate for at, c in landed if c > processed), None)
        partial = 0.0 if started is None else max(0.0, min(when - started, jump / rate)) * rate
        return cpu + (processed + partial) * cpu_us / 1e6

    samples, snapshots = [], []
    when = 0.3
    while True:
        c = count_at(when)
        samples.append((when, c))
        snapshots.append({"t": when, "procs": {"worker-0": round(cpu_at(when) * HZ)}})
        if c >= backlog:
            return samples, snapshots
        when += poll_s


def test_a_count_that_jumps_from_under_10_to_over_90_percent_still_gives_the_rate() -> None:
    # The old 10 %..90 % rate had no span here (one sample passes both): "not measured".
    samples = [(0.5 * i, 0) for i in range(20)] + [(10.0, 1000), (10.5, 19_000), (11.0, 20_000)]
    assert jump_rate(samples) == pytest.approx(19_000 / 1.0)
    assert rises(samples) == [(10.0, 1000), (10.5, 19_000), (11.0, 20_000)]
    assert math.isnan(jump_rate([*samples[:20], (10.0, 20_000)]))  # the whole backlog in one jump: no span


def test_drain_rate_best_window_and_worker_cpu_from_jumps_of_a_thousand() -> None:
    samples, snapshots = drain(backlog=60_000, rate=4000.0, jump=1000, startup_s=9.0, poll_s=0.5, cpu_us=80.0)
    d = drain_figures(samples, snapshots, started=0.0)
    assert d["msg_per_s"] == pytest.approx(4000, rel=0.03)
    assert d["best_10s_msg_per_s"] == pytest.approx(4000, rel=0.06)
    # The start-up's CPU (9 s of one core, 150 µs per message of the backlog) is not the drain's.
    assert d["worker_cpu_us_per_msg"] == pytest.approx(80, rel=0.1)
    assert d["worker_cpu_ms_per_msg"] == pytest.approx(d["worker_cpu_us_per_msg"] / 1000)
    assert d["first_delivery_s"] == pytest.approx(9.5, abs=0.5)
    assert d["span_s"] == pytest.approx(14.75, abs=0.6) and d["jumps"] >= 25


def test_the_best_window_leaves_a_rebalance_stall_out_and_the_mean_keeps_it() -> None:
    samples, snapshots = drain(backlog=150_000, rate=5000.0, jump=2500, startup_s=6.0, poll_s=0.5,
                               cpu_us=60.0, stall_at=75_000, stall_s=8.0)  # 15 s, stall, 15 s
    d = drain_figures(samples, snapshots, started=0.0)
    assert d["best_10s_msg_per_s"] == pytest.approx(5000, rel=0.06)
    assert d["msg_per_s"] == pytest.approx(147_500 / (29.5 + 8.0), rel=0.05)  # the stall is in the mean
    assert d["worker_cpu_us_per_msg"] == pytest.approx(60, rel=0.1)  # a stall costs no CPU


def test_a_drain_shorter_than_the_window_has_a_mean_but_no_best_window() -> None:
    samples, snapshots = drain(backlog=6000, rate=2000.0, jump=1000, startup_s=10.0, poll_s=0.5, cpu_us=100.0)
    d = drain_figures(samples, snapshots, started=0.0)
    assert math.isnan(d["best_10s_msg_per_s"])  # 2.5 s of deliveries: no 10 s window
    assert d["msg_per_s"] == pytest.approx(2000, rel=0.15)
    assert d["worker_cpu_us_per_msg"] == pytest.approx(100, rel=0.25)
    assert math.isnan(best_jump_rate([(0.0, 0), (5.0, 10)], 10.0))


def test_nothing_delivered_gives_no_figures_rather_than_zeros() -> None:
    samples = [(float(i), 0) for i in range(5)]
    d = drain_figures(samples, [{"t": t, "procs": {"worker-0": 0}} for t, _ in samples], started=0.0)
    assert all(math.isnan(d[k]) for k in ("msg_per_s", "best_10s_msg_per_s", "worker_cpu_us_per_msg"))
    assert d["jumps"] == 0 and d["cost_by_kind"] == {}


def test_the_automatic_backlog_lasts_well_over_the_window() -> None:
    steps = [{"sustained_msg_per_s": 400.0}, {"sustained_msg_per_s": 2400.0},
             {"sustained_msg_per_s": math.nan}]
    assert drain_backlog(BenchConfig(steps=[]), steps) == 72_000  # 30 s of the best step
    assert drain_backlog(BenchConfig(steps=[]), []) == DRAIN_BACKLOG_MIN
    assert drain_backlog(BenchConfig(steps=[], backlog=6000), steps) == 6000  # --backlog as given
    assert drain_backlog(BenchConfig(steps=[], backlog=0), steps) == 0  # no drain
