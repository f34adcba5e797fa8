"""Illegal dumping and transport: every truck report through the per-truck state machine.

In batches (stream/agents/runner.py), each report in order per truck (ws.truck-telemetry
is keyed `site/device`): decode, run `transport_state.step` on the truck's ONE table value
(dedup mark + every episode); then the batch's alerts and manifest events are sent and
Kafka has them, only then one table write per truck, then the points (a `truck_position`
per report, the batch's last `transport_daily` per truck and day: each overwrote the one
before, same series and time); the offsets are acked once InfluxDB has them. A crash
before the table write replays the reports and re-sends the same alerts (deterministic
ids) and manifest events (deduplicated by event id); a crash after it drops the replays
as duplicates, whose idempotent position points are simply written again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from contract.events import Alert, TruckTelemetry
from contract.msgid import device_key
from contract.topics import KAFKA_TOPICS
from stream.agents import manifest
from stream.agents.runner import Ack, AgentCounters, StateCache, decode_valid, run_batches, write_points
from stream.agents.slots import SlotTable
from stream.agents.transport_state import TRANSPORT_DAILY, TruckState, step
from stream.app import app, rules, settings
from stream.senders import send_alerts
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point, to_ns

log = logging.getLogger(__name__)

telemetry_topic = app.topic(KAFKA_TOPICS["truck_telemetry"], key_type=bytes, value_type=bytes)

truck_state = SlotTable(app.Table(
    "transport-truck-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per site/truck terminal: dedup mark + dump/uncovered/route/stuck episodes + sealed km",
), settings.kafka_partitions)


Counters = AgentCounters(log)


async def process(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """One batch of ws.truck-telemetry; `ack` runs once its effects are durable."""
    valid, rejected = await decode_valid(events, TruckTelemetry, KAFKA_TOPICS["truck_telemetry"])
    Counters.rejected += rejected
    states = StateCache(truck_state, TruckState.from_json, TruckState.to_json)
    alerts: list[Alert] = []
    manifest_events: list[dict[str, Any]] = []
    points: list[Point] = []
    daily: dict[tuple[str, str, int], Point] = {}  # one series + time: the last point wins
    for event, t, key in valid:
        truck = device_key(t.site_id, t.device_id)  # ids are unique within a site only
        out = step(states.get(truck, event), t, key, rules)
        alerts += out.alerts
        manifest_events += out.manifest_events
        if out.duplicate:
            Counters.duplicate(t.msg_id)
        else:
            states.changed(truck, event)  # dedup mark + episodes: one changelog record per batch
            Counters.processed += 1
        for point in out.points:
            if point.measurement == TRANSPORT_DAILY:
                daily[(point.tags["site"], point.tags["device"], point.ts_ns)] = point
            else:
                points.append(point)
    await asyncio.gather(send_alerts(alerts), manifest.send_events(manifest_events))
    Counters.alerts += len(alerts)
    if valid:  # after its manifest events are in Kafka
        manifest.WATERMARK.observe(max(to_ns(t.ts) for _, t, _ in valid), time.time())
    states.write()
    await write_points(sink, [*points, *daily.values()], ack)


@app.agent(telemetry_topic)
async def transport(stream: Any) -> None:
    await run_batches(stream, process, Counters.summary("transport"))
