"""Issue 14's targets against a run's figures: each shown as met or not met, never asserted.

A benchmark measures; these lines only say how far each figure is from the bar the issue set
(ten times the throughput on the same two cores). A figure the run did not measure is shown as
such (`make bench` has no city, `make bench-city` no raw limits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RATIO_VS_SLOWEST_RAW = 0.5
RATIO_VS_NAIVE = 5.0
WORKER_US_PER_MSG = 100.0
CITY_MACHINE_PCT = 25.0
IDLE_MACHINE_PCT = 5.0
P99_MS = 1000.0


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    """NaN: not measured in this run."""
    bound: float
    at_least: bool
    """Met when value >= bound (else when value <= bound)."""
    spec: str = ".2f"
    unit: str = ""
    yes_no: bool = False
    """A condition (value 1 or 0) shown as yes / no."""
    info: str = ""
    """Not a target: a figure shown beside one for comparison, with this note instead of a verdict."""

    @property
    def met(self) -> bool | None:
        if math.isnan(self.value) or self.info:
            return None
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    def line(self) -> str:
        if self.info:
            value = "-" if math.isnan(self.value) else f"{self.value:{self.spec}}{self.unit}"
            return f"  {self.name:<56} {value:>10}  ({self.info})"
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        if self.yes_no:
            value = "-" if math.isnan(self.value) else ("yes" if self.value else "no")
            return f"  {self.name:<56} {value:>10}  target yes: {verdict}"
        value = "-" if math.isnan(self.value) else f"{self.value:{self.spec}}{self.unit}"
        return (f"  {self.name:<56} {value:>10}  target {'≥' if self.at_least else '≤'} "
                f"{self.bound:{self.spec}}{self.unit}: {verdict}")


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def drain_worker_us(drain: Mapping[str, Any] | None) -> float:
    """The drain's worker CPU per message in µs (result files before the µs key had only ms)."""
    drain = drain or {}
    if "worker_cpu_us_per_msg" in drain:
        return _num(drain["worker_cpu_us_per_msg"])
    return 1000 * _num(drain.get("worker_cpu_ms_per_msg"))


def live_worker_us(headline: Mapping[str, Any] | None) -> Target:
    """The workers' CPU per message in the headline step, with everything else running: what a
    live load's busy % follows (bench-city's), shown beside the drain's target figure."""
    step = headline or {}
    us = _num(step.get("cost_by_kind", {}).get("workers", {}).get("us_per_msg"))
    offered = _num(step.get("offered_msg_per_s"))
    at = "" if math.isnan(offered) else f" at {offered:.0f} msg/s"
    return Target(f"  the same, live (headline step{at})", us, math.nan, False, ".0f", " µs",
                  info="not the target's figure: the workers share the machine")


def bench_targets(summary: Mapping[str, Any], drain: Mapping[str, Any] | None,
                  idle: Mapping[str, Any] | None, headline: Mapping[str, Any] | None = None) -> list[Target]:
    """`make bench`'s: the throughput ratios (at p99 under 1 s), worker CPU, idle cost; and the
    workers' CPU per message in the headline step beside the drain's (a figure, not a target)."""
    p99_rate = _num(summary.get("within_p99_target_msg_per_s"))
    raw = _num(summary.get("slowest_raw_msg_per_s"))
    naive = _num(summary.get("naive_msg_per_s"))
    return [
        Target("sustained at p99 < 1 s / slowest raw component", p99_rate / raw if raw else math.nan,
               RATIO_VS_SLOWEST_RAW, True, ".3f"),
        Target("sustained at p99 < 1 s / naive baseline", p99_rate / naive if naive else math.nan,
               RATIO_VS_NAIVE, True),
        Target("worker CPU per message (workers-alone drain)", drain_worker_us(drain), WORKER_US_PER_MSG,
               False, ".0f", " µs"),
        live_worker_us(headline),
        idle_target(idle),
    ]


def idle_target(idle: Mapping[str, Any] | None) -> Target:
    return Target("idle cost (pipeline up, no traffic), % of the machine",
                  _num((idle or {}).get("machine_pct")), IDLE_MACHINE_PCT, False, ".1f", " %")


def city_targets(city: Mapping[str, Any], idle: Mapping[str, Any] | None, scale: str) -> list[Target]:
    """`make bench-city`'s: p99 under 1 s in real time (and kept up), machine busy, idle cost."""
    total = city.get("total", {})
    kept_up = city.get("kept_up")
    targets = [
        Target(f"{scale}: p99 device → InfluxDB, all kinds", _num(total.get("latency_p99_ms")), P99_MS,
               False, ".0f", " ms"),
        Target(f"{scale}: kept up (drained within 5 s of the last publish)",
               math.nan if kept_up is None else float(bool(kept_up)), 1.0, True, yes_no=True),
    ]
    if scale == "city":  # the bar is for the 4-million city (the province is 10x its load)
        targets.append(Target("city: machine busy during the run", _num(city.get("machine_cpu_pct")),
                              CITY_MACHINE_PCT, False, ".0f", " %"))
    shares = city.get("machine_shares") or {}
    share = "% of the machine, not a target"
    targets += [Target("  of which the pipeline (all but the load generator)",
                       _num(shares.get("pipeline_pct")), math.nan, False, ".1f", " %", info=share),
                Target("  of which the load generator (citygen.py publishers)",
                       _num(shares.get("load_generator_pct")), math.nan, False, ".1f", " %", info=share)]
    targets.append(idle_target(idle))
    return targets


def target_lines(targets: list[Target]) -> list[str]:
    return ["targets (issue 14; measured, not asserted):", *(t.line() for t in targets)]
