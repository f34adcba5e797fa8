"""CPU per message by kind of process: which stage of the pipeline spends the machine's CPU.

Each measured process is read from /proc/<pid>/stat (utime + stime: every thread of it). A
process that leads its own process group (the pipeline's children and the services all do)
counts with every live process of its group, so whatever it spawned is its cost too. The ticks
of two snapshots give each kind's CPU seconds over the window; divided by the messages the
pipeline carried in that window, its microseconds per message. Parsing and arithmetic here; the
bench takes the snapshots (measure.cpu_snapshot) and picks the window and its message count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KINDS = ("load generator", "Mosquitto", "bridges", "Kafka", "workers", "InfluxDB")
"""Kinds of process, in the order a message passes them."""
PIPELINE_KINDS = KINDS[1:]
"""What runs whether or not anyone publishes: the idle cost is theirs."""
_PREFIXES = (("loadgen-", "load generator"), ("city-pub-", "load generator"), ("bridge-", "bridges"),
             ("worker-", "workers"), ("mosquitto", "Mosquitto"), ("kafka", "Kafka"),
             ("influxdb", "InfluxDB"))


def kind_of(name: str) -> str:
    """The kind of a measured process from the bench's name for it ("worker-1", "kafka", ...)."""
    for prefix, kind in _PREFIXES:
        if name.startswith(prefix):
            return kind
    return "other"


def parse_stat(text: str) -> tuple[int, int]:
    """(process group, utime + stime in clock ticks) from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces or ')': the fields
    are counted from the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    return int(fields[2]), int(fields[11]) + int(fields[12])


def read_stats(proc: Path = Path("/proc")) -> dict[int, tuple[int, int]]:
    """pid -> (process group, CPU ticks) of every process readable now."""
    out: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile, or not ours to read
    return out


def group_ticks(leaders: Mapping[str, int], stats: Mapping[int, tuple[int, int]]) -> dict[str, int | None]:
    """CPU ticks per named process: with its whole group when it leads one; None when gone."""
    members: dict[int, int] = {}
    for group, ticks in stats.values():
        members[group] = members.get(group, 0) + ticks
    out: dict[str, int | None] = {}
    for name, pid in leaders.items():
        if pid not in stats:
            out[name] = None
            continue
        group, ticks = stats[pid]
        out[name] = members[group] if group == pid else ticks
    return out


def kind_costs(a: Mapping[str, Any], b: Mapping[str, Any], messages: float, *,
               hz: int | None = None, cpus: int | None = None) -> dict[str, dict[str, float]]:
    """Per kind between snapshots `a` and `b` (`procs`: name -> ticks, `t`: seconds): CPU seconds,
    % of one core, % of the machine, microseconds per message (NaN without messages) and how
    many processes were measured. A process missing from either snapshot is left out."""
    hz = hz or os.sysconf("SC_CLK_TCK")
    cpus = cpus or os.cpu_count() or 1
    wall = max(1e-6, b["t"] - a["t"])
    ticks: dict[str, int] = {}
    procs: dict[str, int] = {}
    for name, t0 in a["procs"].items():
        t1 = b["procs"].get(name)
        if t0 is None or t1 is None:
            continue
        kind = kind_of(name)
        ticks[kind] = ticks.get(kind, 0) + max(0, t1 - t0)
        procs[kind] = procs.get(kind, 0) + 1
    out: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, "other"):
        if kind not in ticks:
            continue
        cpu_s = ticks[kind] / hz
        out[kind] = {"cpu_s": round(cpu_s, 3), "core_pct": round(100 * cpu_s / wall, 1),
                     "machine_pct": round(100 * cpu_s / wall / cpus, 2),
                     "us_per_msg": round(1e6 * cpu_s / messages, 1) if messages > 0 else math.nan,
                     "procs": procs[kind]}
    return out


def total_cost(costs: Mapping[str, Mapping[str, float]], kinds: tuple[str, ...] = KINDS) -> dict[str, float]:
    """The sum over `kinds` of kind_costs' figures (µs per message NaN if any is)."""
    chosen = [costs[k] for k in kinds if k in costs]
    return {key: round(sum(c[key] for c in chosen), 2) for key in ("cpu_s", "core_pct", "machine_pct",
                                                                    "us_per_msg")}


def machine_shares(costs: Mapping[str, Mapping[str, float]], machine_pct: float) -> dict[str, float]:
    """The machine's busy % over a window split: the pipeline's processes, the load generator's,
    and the rest (everyone else's work, the bench itself), each as % of the whole machine."""
    pipeline = total_cost(costs, PIPELINE_KINDS)["machine_pct"] if costs else math.nan
    loadgen = costs["load generator"]["machine_pct"] if "load generator" in costs else math.nan
    other = machine_pct - sum(x for x in (pipeline, loadgen) if not math.isnan(x))
    return {"machine_pct": machine_pct, "pipeline_pct": round(pipeline, 1),
            "load_generator_pct": round(loadgen, 1), "other_pct": round(other, 1)}


def cost_table(costs: Mapping[str, Mapping[str, float]], title: str) -> list[str]:
    """Lines: one per kind (CPU seconds, % of one core, µs per message), the pipeline's sum
    (load generator left out) and the bound: the kind that spends the most per message."""
    def fmt(x: float, spec: str) -> str:
        return "-" if math.isnan(x) else format(x, spec)

    lines = [title, f"    {'process kind':<15} {'procs':>5} {'CPU s':>8} {'% core':>7} {'µs/msg':>8}"]
    for kind, c in costs.items():
        lines.append(f"    {kind:<15} {c['procs']:>5.0f} {c['cpu_s']:>8.2f} {c['core_pct']:>7.1f} "
                     f"{fmt(c['us_per_msg'], '.0f'):>8}")
    pipeline = total_cost(costs, PIPELINE_KINDS)
    lines.append(f"    {'pipeline':<15} {'':>5} {pipeline['cpu_s']:>8.2f} {pipeline['core_pct']:>7.1f} "
                 f"{fmt(pipeline['us_per_msg'], '.0f'):>8}  (all but the load generator: "
                 f"{pipeline['machine_pct']:.1f} % of the machine)")
    ranked = [(c["us_per_msg"], k) for k, c in costs.items() if k in PIPELINE_KINDS
              and not math.isnan(c["us_per_msg"])]
    if ranked:
        us, kind = max(ranked)
        lines.append(f"    the next bound: {kind} ({us:.0f} µs of CPU per message)")
    return lines
