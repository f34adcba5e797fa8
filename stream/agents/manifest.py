"""Electronic manifests (电子联单): departures matched to arrivals, per plate, on an internal topic.

Why an internal topic: telemetry is keyed by truck device and weighings by weighbridge, but
a manifest joins both by plate. So the transport agent and `weighings_to_manifest` below
re-key what matters (departures, arrivals) into `{app_id}-manifest-events`, keyed by plate,
with the app's partition count; `manifest_matcher` consumes it with ONE table value per
plate (seen event ids + open manifests, manifest_state.py), so a plate's events are
co-partitioned with its state however many workers share the partitions.

Timeouts run on event time (manifest_state.Watermark: the newest event time this worker has
seen, advanced by wall time since). Faust cannot write a table from a timer, so
`expire_manifests` only looks: for each plate of a partition this worker owns as active
(state remembers its partition) with a manifest past the timeout, it sends a `check` event
into the plate's partition, and the matcher closes it there, in order with the plate's own
events. A plate whose truck never reports again is still checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import msgspec

from contract.codec import ContractError, decode
from contract.events import Direction, Weighing
from stream.agents.manifest_state import Event, PlateState, Watermark, step
from stream.agents.runner import acker
from stream.app import app, rules, send_alert, send_deadletter, settings, weighings_topic
from stream.sinks.influx import InfluxSink, make_transport
from stream.sinks.line_protocol import to_ns

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 5.0

MANIFEST_TOPIC = f"{settings.faust_app_id}-manifest-events"
manifest_topic = app.topic(MANIFEST_TOPIC, key_type=bytes, value_type=bytes, internal=True,
                           partitions=settings.kafka_partitions, replicas=1)

plate_state = app.Table(
    "manifest-plate-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per plate: manifest event ids seen + open manifests; see manifest_state.py",
)

WATERMARK = Watermark()
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


async def send_event(event: dict[str, Any]) -> None:
    """Re-key one departure/arrival/check by plate and wait until Kafka has it."""
    await send_events([event])


async def send_events(events: Sequence[dict[str, Any]]) -> None:
    """Re-key departures/arrivals/checks by plate: all sent, then all awaited (one round trip)."""
    futures = [await manifest_topic.send(key=e["plate"].encode(), value=_encoder.encode(e)) for e in events]
    for future in futures:
        await future


def weighing_event(w: Weighing) -> dict[str, Any]:
    """An origin's `out` ticket is a departure; a facility's `in` ticket an arrival (net kg)."""
    kind = "departure" if w.direction is Direction.OUTBOUND else "arrival"
    return {"type": kind, "id": f"wb:{w.msg_id}", "plate": w.plate, "ts_ns": to_ns(w.ts), "kg": w.net_kg,
            "place": w.site_id, "source": "weighbridge", "device": w.device_id, "site": w.site_id,
            "msg_id": w.msg_id}


@app.agent(weighings_topic)
async def weighings_to_manifest(stream: Any) -> None:
    """Re-key tickets by plate; invalid ones are the tonnage agent's to dead-letter."""
    manual = stream.noack()
    async for event in manual.events():
        try:
            w = decode(event.value, Weighing)
        except ContractError:
            await manual.ack(event)
            continue
        assert isinstance(w, Weighing)
        e = weighing_event(w)
        # Pipelined: ack once Kafka has it, without waiting here (a backlog of tickets would
        # otherwise take one broker round trip each).
        future = await manifest_topic.send(key=e["plate"].encode(), value=_encoder.encode(e))
        asyncio.ensure_future(future).add_done_callback(_ack_when_sent(manual, event))
        WATERMARK.observe(to_ns(w.ts), time.time())


def _ack_when_sent(stream: Any, event: Any) -> Any:
    def done(future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("manifest event not sent; offset stays unacked (re-delivered after a restart)")
            return
        _pending.add(asyncio.ensure_future(stream.ack(event)))
        for task in [t for t in _pending if t.done()]:
            _pending.discard(task)
    return done


_pending: set[asyncio.Future[Any]] = set()


@app.agent(manifest_topic)
async def manifest_matcher(stream: Any) -> None:
    sink = InfluxSink(make_transport(settings), send_deadletter)
    await sink.start()
    manual = stream.noack()
    try:
        async for event in manual.events():
            try:
                e = _decoder.decode(event.value)
            except msgspec.DecodeError as exc:
                log.error("bad manifest event %r: %s", event.value[:200], exc)
                await manual.ack(event)
                continue
            if e.type != "check":
                WATERMARK.observe(e.ts_ns, time.time())
            state = PlateState.from_json(plate_state.get(e.plate))
            out = step(state, e, rules)
            for alert in out.alerts:
                await send_alert(alert)
            if not out.duplicate:
                state.partition = event.message.partition
                plate_state[e.plate] = state.to_json()
            if not out.points:
                await manual.ack(event)
            for point in out.points[:-1]:
                await sink.write(point)
            if out.points:
                await sink.write(out.points[-1], on_done=acker(manual, event))
    finally:
        await sink.stop(timeout=10)


@app.timer(interval=CHECK_INTERVAL_S)
async def expire_manifests() -> None:
    """Ask the owner of each timed-out plate (this worker, active partitions only) to close it."""
    now = WATERMARK.now_ns(time.time())
    if now is None:
        return
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == MANIFEST_TOPIC}
    for plate, value in list(plate_state.items()):
        state = PlateState.from_json(value)
        if state.partition in owned and state.due(now, rules):
            await send_event({"type": "check", "plate": plate, "ts_ns": now})

