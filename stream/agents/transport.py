"""Illegal dumping and transport: every truck report through the per-truck state machine.

One step per report, in order per truck (ws.truck-telemetry is keyed by device): decode,
run `transport_state.step` on the truck's ONE table value (dedup mark + every episode),
send its alerts and manifest events and wait for Kafka, only then write the table, then
the points; the Kafka offset is acked once InfluxDB has them. A crash before the table
write replays the report and re-sends the same alerts (deterministic ids) and manifest
events (deduplicated by event id); a crash after it drops the replay as a duplicate,
whose idempotent position point is simply written again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from contract.codec import ContractError, decode
from contract.events import TruckTelemetry
from contract.msgid import parse_msg_id
from contract.topics import KAFKA_TOPICS
from stream.agents import manifest
from stream.agents.runner import run_steps
from stream.agents.transport_state import TruckState, step
from stream.app import app, rules, send_alert, send_deadletter, settings
from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import to_ns

log = logging.getLogger(__name__)
_dup_log = RateLimitedLog(log, per_interval=10)

telemetry_topic = app.topic(KAFKA_TOPICS["truck_telemetry"], key_type=bytes, value_type=bytes)

truck_state = app.Table(
    "transport-truck-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per truck terminal: dedup mark + dump/uncovered/route/stuck episodes + sealed km",
)


class Counters:
    processed = 0
    duplicates = 0
    rejected = 0
    alerts = 0


async def process(payload: bytes, sink: InfluxSink, ack: Any) -> None:
    """Handle one ws.truck-telemetry record; `ack` runs once its effects are durable."""
    try:
        t = decode(payload, TruckTelemetry)
        key = parse_msg_id(t.msg_id)
        if key.device_id != t.device_id:
            raise ContractError(f"msg_id {t.msg_id!r} does not belong to device {t.device_id!r}")
    except (ContractError, ValueError) as exc:
        Counters.rejected += 1
        log.warning("dead-lettering a ws.truck-telemetry record: %s", exc)
        topic = KAFKA_TOPICS["truck_telemetry"]
        await send_deadletter(deadletter_record(str(exc), f"kafka:{topic}", payload))
        result = ack()
        if hasattr(result, "__await__"):
            await result
        return
    assert isinstance(t, TruckTelemetry)
    state = TruckState.from_json(truck_state.get(t.device_id))
    out = step(state, t, key, rules)
    for alert in out.alerts:
        await send_alert(alert)
        Counters.alerts += 1
    for event in out.manifest_events:
        await manifest.send_event(event)
    if out.duplicate:
        Counters.duplicates += 1
        _dup_log.warning("duplicate %s dropped; %d duplicates so far", t.msg_id, Counters.duplicates)
    else:
        truck_state[t.device_id] = state.to_json()  # dedup mark + episodes: one changelog record
        Counters.processed += 1
    manifest.WATERMARK.observe(to_ns(t.ts), time.time())  # after its manifest events are in Kafka
    for point in out.points[:-1]:
        await sink.write(point)
    await sink.write(out.points[-1], on_done=ack)


@app.agent(telemetry_topic)
async def transport(stream: Any) -> None:
    await run_steps(stream, process, lambda: log.info(
        "transport: %d processed, %d duplicates, %d rejected, %d alerts",
        Counters.processed, Counters.duplicates, Counters.rejected, Counters.alerts))
