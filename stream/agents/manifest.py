"""Electronic manifests (电子联单): departures matched to arrivals, per plate, on an internal topic.

Why an internal topic: telemetry is keyed by truck device and weighings by weighbridge, but
a manifest joins both by plate. So the transport agent and the tonnage agent (for tickets,
see `weighing_event`) re-key what matters (departures, arrivals) into `{app_id}-manifest-events`,
keyed by plate,
with the app's partition count: one record per partition (a JSON array of that partition's events,
in order; the partition a record keyed by the plate would get, stream/agents/runner.py
`partition_of`), so a batch of tickets costs a few records, not one per ticket; a record of a
single JSON object (a worker before issue 14) is read too. `manifest_matcher` consumes it with ONE
table value per plate (seen event ids + open manifests, manifest_state.py), so a plate's events are
co-partitioned with its state however many workers share the partitions.

Timeouts run on event time (manifest_state.Watermark: the newest event time this worker has
seen, advanced by wall time since). Faust cannot write a table from a timer, so
`expire_manifests` only looks: for each plate of a partition this worker owns as active
(state remembers its partition) with a manifest past the timeout, it sends a `check` event
into the plate's partition, and the matcher closes it there, in order with the plate's own
events. A plate whose truck never reports again is still checked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import faust
import msgspec

from contract.events import Alert, Direction, Weighing
from contract.msgid import site_msg_id
from stream.agents.manifest_state import Event, PlateState, Watermark, step
from stream.agents.runner import (
    Ack,
    StateCache,
    by_partition,
    items_in_turns,
    run_batches,
    sent_from_timer,
    write_points,
)
from stream.agents.slots import SlotTable
from stream.app import app, rules, settings
from stream.senders import send_alerts
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point, to_ns

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 5.0

MANIFEST_TOPIC = f"{settings.faust_app_id}-manifest-events"
manifest_topic = app.topic(MANIFEST_TOPIC, key_type=bytes, value_type=bytes, internal=True,
                           partitions=settings.kafka_partitions, replicas=1)

plate_state = SlotTable(app.Table(
    "manifest-plate-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per plate: manifest event ids seen + open manifests; see manifest_state.py",
), settings.kafka_partitions)

WATERMARK = Watermark()
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


async def send_event(event: dict[str, Any]) -> None:
    """Re-key one departure/arrival/check by plate and wait until Kafka has it."""
    await send_events([event])


async def send_events(events: Sequence[dict[str, Any]]) -> None:
    """Re-key departures/arrivals/checks by plate: all sent, then all awaited (one round trip)."""
    for future in await send_events_soon(events):
        await future


async def send_events_soon(events: Sequence[dict[str, Any]]) -> list[Awaitable[Any]]:
    """Re-key events by plate without waiting, one record per partition; each returned future
    resolves when Kafka has its record."""
    return [await manifest_topic.send(key=b"~p%d" % p, partition=p, value=_encoder.encode(chunk))
            for p, chunk in by_partition(events, lambda e: str(e["plate"]))]


def _events_of(value: bytes) -> list[Event]:
    """The events of one record: a JSON array of them, or one object (before issue 14); a bad
    one is logged and skipped (this topic is written by the workers only)."""
    try:
        raws = _list_decoder.decode(value) if value[:1] == b"[" else [msgspec.Raw(value)]
    except (msgspec.DecodeError, TypeError) as exc:
        log.error("bad manifest record %r: %s", value[:200], exc)
        return []
    out = []
    for raw in raws:
        try:
            out.append(_decoder.decode(raw))
        except msgspec.DecodeError as exc:
            log.error("bad manifest event %r: %s", bytes(raw)[:200], exc)
    return out


def weighing_event(w: Weighing) -> dict[str, Any]:
    """An origin's `out` ticket is a departure; a facility's `in` ticket an arrival (net kg)."""
    kind = "departure" if w.direction is Direction.OUTBOUND else "arrival"
    return {"type": kind, "id": f"wb:{site_msg_id(w.site_id, w.msg_id)}", "plate": w.plate,
            "ts_ns": to_ns(w.ts), "kg": w.net_kg, "place": w.site_id, "source": "weighbridge",
            "device": w.device_id, "site": w.site_id, "msg_id": w.msg_id}


def _to_json(state: PlateState) -> Any:
    return state.to_json()


async def match_batch(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """Apply a batch of manifest events to their plates' states (one table write per plate)."""
    states = StateCache(plate_state, PlateState.from_json, _to_json)
    alerts: list[Alert] = []
    points: list[Point] = []
    now = time.time()
    for event, e in ((record, e) for record in events for e in _events_of(record.value)):
        if e.type != "check":
            WATERMARK.observe(e.ts_ns, now)
        state = states.get(e.plate, event)
        out = step(state, e, rules)
        alerts.extend(out.alerts)
        if not out.duplicate:
            state.partition = event.message.partition
            states.changed(e.plate, event)
        points.extend(out.points)
    await send_alerts(alerts)  # before the table write: a crash re-raises (same ids), never loses
    states.write()
    await write_points(sink, points, ack)


@app.agent(manifest_topic)
async def manifest_matcher(stream: Any) -> None:
    await run_batches(stream, match_batch, lambda: None)


@app.timer(interval=CHECK_INTERVAL_S)
async def expire_manifests() -> None:
    """Ask the owner of each timed-out plate (this worker, active partitions only) to close it."""
    now = WATERMARK.now_ns(time.time())
    if now is None:
        return
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == MANIFEST_TOPIC}
    async for plate, value in items_in_turns(plate_state):
        state = PlateState.from_json(value)
        due = state.partition in owned and state.due(now, rules)
        if due and not await sent_from_timer(send_event({"type": "check", "plate": plate, "ts_ns": now}),
                                             f"manifest check for {plate}"):
            return

