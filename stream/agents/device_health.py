"""Device health: ws.device-status through the per-device state of device_health_state.py.

One step per record, in partition order: decode, apply to the device's ONE table value
(dedup mark + state), send its alerts and wait for Kafka, only then write the table, then
the `device_status` point; the offset is acked once InfluxDB has it (the pattern of
transport.py: a crash before the table write re-sends the same alert ids).

Silence: Faust cannot write a table from a timer, so `find_silent_devices` only looks: for
each device of a partition this worker owns as active that has been silent for
`offline_after_s` (on a watermark of record times, so a replayed backlog is not silent), it
sends a `check` into `{app_id}-device-health-checks`, to the device's own partition number.
That topic is co-partitioned with ws.device-status (same partition count: Faust assigns both
together) and `device_health` consumes both, so the check is decided and written by the
owner of the device's state, in order with its statuses. Residual risk: after a restart the
watermark starts with the first status heard, so a worker whose devices ALL stay silent
raises nothing until one speaks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import msgspec

from contract.codec import ContractError, decode
from contract.events import DeviceStatus
from contract.msgid import parse_msg_id
from contract.topics import KAFKA_TOPICS
from stream.agents.device_health_state import Health, on_check, on_status
from stream.agents.manifest_state import Watermark
from stream.agents.runner import acker
from stream.app import app, rules, send_alert, send_deadletter, settings
from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.sinks.influx import InfluxSink, make_transport

log = logging.getLogger(__name__)
_dup_log = RateLimitedLog(log, per_interval=10)
CHECK_INTERVAL_S = min(5.0, rules.device_health.offline_after_s / 2)

STATUS_TOPIC = KAFKA_TOPICS["device_status"]
CHECK_TOPIC = f"{settings.faust_app_id}-device-health-checks"
_topic_args: dict[str, Any] = dict(key_type=bytes, value_type=bytes, internal=True,
                                   partitions=settings.kafka_partitions, replicas=1)
source_topic = app.topic(STATUS_TOPIC, CHECK_TOPIC, **_topic_args)  # internal: declares CHECK_TOPIC
check_topic = app.topic(CHECK_TOPIC, **_topic_args)

health_table = app.Table(
    "device-health-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per device: dedup mark + online/offline, last heard, outbox and alert episodes",
)

WATERMARK = Watermark()


class Check(msgspec.Struct):
    device: str
    now_ns: int


_check_decoder = msgspec.json.Decoder(Check)
_sent_checks: dict[str, str] = {}
"""device -> the last msg_id a check was sent for (no repeat while it is being processed)."""


class Counters:
    processed = 0
    duplicates = 0
    rejected = 0
    alerts = 0


async def _ack(ack: Any) -> None:
    result = ack()
    if hasattr(result, "__await__"):
        await result


async def process_status(payload: bytes, heard_ns: int, partition: int, sink: InfluxSink, ack: Any) -> None:
    """Handle one ws.device-status record; `ack` runs once its point is durable."""
    try:
        s = decode(payload, DeviceStatus)
        key = parse_msg_id(s.msg_id)
        if key.device_id != s.device_id:
            raise ContractError(f"msg_id {s.msg_id!r} does not belong to device {s.device_id!r}")
    except (ContractError, ValueError) as exc:
        Counters.rejected += 1
        log.warning("dead-lettering a ws.device-status record: %s", exc)
        await send_deadletter(deadletter_record(str(exc), f"kafka:{STATUS_TOPIC}", payload))
        await _ack(ack)
        return
    assert isinstance(s, DeviceStatus)
    WATERMARK.observe(heard_ns, time.time())
    h = Health.from_json(health_table.get(s.device_id))
    out = on_status(h, s, key, heard_ns, rules)
    for alert in out.alerts:
        await send_alert(alert)
        Counters.alerts += 1
    if out.duplicate:
        Counters.duplicates += 1
        _dup_log.warning("duplicate %s dropped; %d duplicates so far", s.msg_id, Counters.duplicates)
    else:
        h.partition = partition
        health_table[s.device_id] = h.to_json()  # dedup mark + state + episodes: one changelog record
        Counters.processed += 1
    for point in out.points[:-1]:
        await sink.write(point)
    await sink.write(out.points[-1], on_done=ack)


async def process_check(payload: bytes) -> None:
    """Decide one silence check where the device's state lives."""
    try:
        c = _check_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        log.error("bad device-health check %r: %s", payload[:200], exc)
        return
    h = Health.from_json(health_table.get(c.device))
    out = on_check(h, c.device, c.now_ns, rules)
    for alert in out.alerts:
        await send_alert(alert)
        Counters.alerts += 1
    if out.alerts:
        health_table[c.device] = h.to_json()


@app.agent(source_topic)
async def device_health(stream: Any) -> None:
    sink = InfluxSink(make_transport(settings), send_deadletter)
    await sink.start()
    manual = stream.noack()
    try:
        async for event in manual.events():
            msg = event.message
            if msg.topic == CHECK_TOPIC:
                await process_check(event.value)
                await manual.ack(event)
                continue
            await process_status(event.value, round(msg.timestamp * 1000) * 1_000_000, msg.partition, sink,
                                 acker(manual, event))
    finally:
        await sink.stop(timeout=10)
        log.info("device_health: %d processed, %d duplicates, %d rejected, %d alerts",
                 Counters.processed, Counters.duplicates, Counters.rejected, Counters.alerts)


@app.timer(interval=CHECK_INTERVAL_S)
async def find_silent_devices() -> None:
    """Ask the owner of each silent device (this worker, active partitions only) to decide."""
    now = WATERMARK.now_ns(time.time())
    if now is None:
        return
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == STATUS_TOPIC}
    for device, value in list(health_table.items()):
        h = Health.from_json(value)
        if h.partition in owned and h.silent(now, rules) and _sent_checks.get(device) != h.msg_id:
            _sent_checks[device] = h.msg_id
            future = await check_topic.send(key=device.encode(), partition=h.partition,
                                            value=msgspec.json.encode(Check(device, now)))
            await future
