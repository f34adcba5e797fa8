"""A replayed day as each site's edge would hold it after an outage: rows in the site's outbox.

The day's events (firmware_sim/replay/day.py) go into the outbox of the site's edge agent (the
SQLite file its config names) before the agent starts; the agent then delivers them exactly as
it replays its backlog after an outage: MQTT, bridge, Kafka, workers, with their own (past)
timestamps. msg_ids are `device:epoch:seq` with the day's start (Unix seconds) as the epoch and
seq counting the device's events of the day, so replaying the same day again (another demo run)
sends the same ids: the workers de-duplicate them and InfluxDB overwrites the same points; and
the live traffic of the device (its outbox's own epoch) never collides with them.

`<run_dir>/sim/replay.json` records what was written: the day, its bounds, per site and event
type the counts, per weighbridge facility tickets and net kg (the expected tonnage).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contract import encode, mqtt_topic
from contract.events import Weighing
from contract.msgid import make_msg_id
from edge.outbox import Outbox
from firmware_sim.replay.day import DayPlan, Item

SUMMARY = "replay.json"


@dataclass(frozen=True)
class Backlog:
    """What went into the outboxes."""

    rows: int
    per_site: dict[str, int]
    per_event: dict[str, int]


def outbox_paths(run_dir: Path) -> dict[str, Path]:
    """site_id -> outbox file, from the edge site configs under `<run_dir>/edge/`."""
    out = {}
    for config in sorted((run_dir / "edge").glob("*.yaml")):
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        out[str(data["site_id"])] = Path(data["outbox"]["path"])
    return out


def rows_of(plan: DayPlan) -> dict[str, list[tuple[str, int, str, str, bytes]]]:
    """site -> outbox rows (device, seq, msg_id, topic, payload), each device's in time order."""
    epoch = int(plan.start.timestamp())
    seqs: Counter[tuple[str, str]] = Counter()
    rows: dict[str, list[tuple[str, int, str, str, bytes]]] = defaultdict(list)
    for item in sorted(plan.items, key=lambda i: (i.site_id, i.event.ts, i.device_id)):
        seqs[(item.site_id, item.device_id)] += 1
        seq = seqs[(item.site_id, item.device_id)]
        msg_id = make_msg_id(item.device_id, epoch, seq)
        rows[item.site_id].append((item.device_id, seq, msg_id, _topic(item),
                                   encode(msgspec.structs.replace(item.event, msg_id=msg_id))))
    return rows


def _topic(item: Item) -> str:
    return mqtt_topic(item.site_id, item.kind, item.device_id, item.event.event)


def write_backlog(plan: DayPlan, run_dir: Path) -> Backlog:
    """Put the day into every site's outbox (a site without an edge config is refused: its
    events would silently vanish) and write `<run_dir>/sim/replay.json`."""
    paths = outbox_paths(run_dir)
    site_rows = rows_of(plan)
    missing = sorted(set(site_rows) - set(paths))
    if missing:
        raise ValueError(f"no edge site config under {run_dir / 'edge'} for {missing}")
    per_site = {}
    for site, rows in site_rows.items():
        box = Outbox(paths[site], max_messages=max(100_000, 2 * len(rows)))
        try:
            per_site[site] = box.put_allocated(rows)
        finally:
            box.close()
    per_event = Counter(i.event.event for i in plan.items)
    write_summary(plan, run_dir / "sim" / SUMMARY)
    return Backlog(sum(per_site.values()), per_site, dict(per_event))


def write_summary(plan: DayPlan, path: Path) -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for i in plan.items:
        counts[i.site_id][i.event.event] += 1
    tonnage: dict[str, dict[str, float]] = defaultdict(lambda: {"tickets": 0, "net_kg": 0.0})
    for w in plan.of(Weighing):
        assert isinstance(w, Weighing)
        tonnage[w.site_id]["tickets"] += 1
        tonnage[w.site_id]["net_kg"] += w.net_kg
    summary: dict[str, Any] = {
        "day": plan.day.isoformat(), "tz": plan.tz,
        "start": plan.start.isoformat(), "end": plan.end.isoformat(),
        "messages": len(plan.items), "events": dict(Counter(i.event.event for i in plan.items)),
        "sites": {s: dict(c) for s, c in sorted(counts.items())}, "tonnage": dict(sorted(tonnage.items())),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """`<run_dir>/sim/replay.json`, or None when the run replayed no day."""
    path = run_dir / "sim" / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
