"""Tonnage: every weighbridge ticket becomes a per-ticket point and a per-day running total.

One step per ticket, in order per device: decode, de-duplicate and add to the device's
daily total in ONE table write (see stream/dedup.py for why one), write both points to
InfluxDB, and ack the Kafka message only once InfluxDB has them. So a crash at any point
re-delivers, and a re-delivery changes nothing: it is dropped as a duplicate and its
idempotent points are simply written again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from contract.codec import ContractError, decode
from contract.events import Weighing
from contract.msgid import parse_msg_id
from contract.topics import KAFKA_TOPICS
from stream.agents.tonnage_points import daily_point, day_key, weighing_point
from stream.app import app, send_deadletter, settings, weighings_topic
from stream.deadletter import deadletter_record
from stream.dedup import DeviceState
from stream.logutil import RateLimitedLog
from stream.sinks.influx import InfluxSink, make_transport

log = logging.getLogger(__name__)
_dup_log = RateLimitedLog(log, per_interval=10)

device_state = app.Table(
    "tonnage-device-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per device: last (epoch, seq) seen and its daily running net kg; see stream/dedup.py",
)


class Counters:
    processed = 0
    duplicates = 0
    rejected = 0


async def process(payload: bytes, sink: InfluxSink, ack: Callable[[], Any]) -> None:
    """Handle one ws.weighings record; `ack` runs once its effects are durable."""
    try:
        w = decode(payload, Weighing)
        key = parse_msg_id(w.msg_id)
        if key.device_id != w.device_id:
            raise ContractError(f"msg_id {w.msg_id!r} does not belong to device {w.device_id!r}")
    except (ContractError, ValueError) as exc:
        Counters.rejected += 1
        log.warning("dead-lettering a ws.weighings record: %s", exc)
        await send_deadletter(deadletter_record(str(exc), f"kafka:{KAFKA_TOPICS['weighing']}", payload))
        await _maybe_await(ack())
        return
    assert isinstance(w, Weighing)
    state = DeviceState.from_json(device_state.get(w.device_id))
    dk = day_key(w)
    if state.accept(key, dk, w.net_kg):
        device_state[w.device_id] = state.to_json()  # dedup mark + total: one changelog record
        Counters.processed += 1
    else:
        Counters.duplicates += 1
        _dup_log.warning("duplicate %s dropped (last seen %s); %d duplicates so far",
                         w.msg_id, state.last, Counters.duplicates)
    kg, tickets = state.total(dk)
    await sink.write(weighing_point(w))
    await sink.write(daily_point(w, kg, tickets), on_done=ack)


async def _maybe_await(result: Any) -> None:
    if hasattr(result, "__await__"):
        await result


def _acker(stream: Any, event: Any) -> Callable[[], Any]:
    return lambda: stream.ack(event)


@app.agent(weighings_topic)
async def tonnage(stream: Any) -> None:
    sink = InfluxSink(make_transport(settings), send_deadletter)
    await sink.start()
    manual = stream.noack()
    try:
        async for event in manual.events():
            await process(event.value, sink, _acker(manual, event))
    finally:
        await sink.stop(timeout=10)
        log.info("tonnage: %d processed, %d duplicates, %d rejected",
                 Counters.processed, Counters.duplicates, Counters.rejected)
