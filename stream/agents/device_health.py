"""Device health: ws.device-status through the per-device state of device_health_state.py.

In batches (stream/agents/runner.py), each record in partition order: decode, apply to
the device's ONE table value (dedup mark + state); then the batch's alerts are sent and
Kafka has them, only then one table write per device, then the `device_status` points;
the offsets are acked once InfluxDB has them (the pattern of transport.py: a crash before
the table write re-sends the same alert ids).

Silence: Faust cannot write a table from a timer, so `find_silent_devices` only looks: for
each device of a partition this worker owns as active that has been silent for
`offline_after_s` (on a watermark of record times, so a replayed backlog is not silent), it
sends a `check` into `{app_id}-device-health-checks`, to the device's own partition number.
That topic is co-partitioned with ws.device-status (same partition count: Faust assigns both
together) and `device_health` consumes both, so the check is decided and written by the
owner of the device's state, in order with its statuses. Residual risk: after a restart the
watermark starts with the first status heard, so a worker whose devices ALL stay silent
raises nothing until one speaks.

A site's edge going offline (its Last-Will) or coming back: the edge's owner sends the
`EdgeNotice` of device_health_state.py to EVERY partition of the same checks topic (with the
batch's alerts, before the table write: a crash re-sends the same numbered notices, which
devices that applied them already ignore), and each partition's owner applies it to the
devices of that site whose state it holds (`Health.partition`), one table write each, in
order with their statuses: no key is written from another partition, whatever the number
of workers. Finding them scans the local table, which costs once per edge outage, not per
status. The timer's "already asked" memory includes the notice number, so a device judged
while its edge was down is asked again once the edge is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import msgspec

from contract.events import Alert, DeviceStatus
from contract.msgid import MsgKey, device_key, split_device_key
from contract.topics import KAFKA_TOPICS
from stream.agents.device_health_state import (
    EdgeNotice,
    Health,
    edge_device_id,
    on_check,
    on_edge_notice,
    on_status,
)
from stream.agents.manifest_state import Watermark
from stream.agents.runner import (
    Ack,
    AgentCounters,
    StateCache,
    decode_valid,
    items_in_turns,
    run_batches,
    sent_from_timer,
    write_points,
)
from stream.agents.slots import SlotTable
from stream.app import app, rules, settings
from stream.senders import send_alerts
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = min(5.0, rules.device_health.offline_after_s / 2)

STATUS_TOPIC = KAFKA_TOPICS["device_status"]
CHECK_TOPIC = f"{settings.faust_app_id}-device-health-checks"
_topic_args: dict[str, Any] = dict(key_type=bytes, value_type=bytes, internal=True,
                                   partitions=settings.kafka_partitions, replicas=1)
source_topic = app.topic(STATUS_TOPIC, CHECK_TOPIC, **_topic_args)  # internal: declares CHECK_TOPIC
check_topic = app.topic(CHECK_TOPIC, **_topic_args)

health_table = SlotTable(app.Table(
    "device-health-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per site/device: dedup mark + online/offline, last heard, outbox and alert episodes",
), settings.kafka_partitions)  # values of a partition in a few records: stream/agents/slots.py

WATERMARK = Watermark()


class Check(msgspec.Struct, tag="check", tag_field="kind"):
    device: str
    now_ns: int


_control_decoder = msgspec.json.Decoder(Check | EdgeNotice)
_check_decoder = msgspec.json.Decoder(Check)  # a check of a worker before notices had no `kind`
_sent_checks: dict[str, tuple[str, int]] = {}
"""device -> (last msg_id, edge notice) a check was sent for (no repeat while it is being processed)."""


Counters = AgentCounters(log)


async def process(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """One batch of statuses and checks, in partition order, on one `StateCache`.

    A check and a status of one device in the same batch see each other's effects, as they
    would one at a time. Then the order of runner.py: alerts (Kafka has them), one table
    write per changed device, the `device_status` points, the ack once InfluxDB has them.
    """
    statuses = [e for e in events if e.message.topic != CHECK_TOPIC]
    valid, rejected = await decode_valid(statuses, DeviceStatus, STATUS_TOPIC)
    Counters.rejected += rejected
    decoded: dict[int, list[tuple[DeviceStatus, MsgKey]]] = {}  # a record holds one or more statuses
    for event, s, key in valid:
        decoded.setdefault(id(event), []).append((s, key))
    batch_devices = {device_key(s.site_id, s.device_id) for _, s, _ in valid}
    states = StateCache(health_table, Health.from_json, Health.to_json)
    alerts: list[Alert] = []
    notices: list[EdgeNotice] = []
    points: list[Point] = []
    heard_max: int | None = None
    for event in events:
        msg = event.message
        if msg.topic == CHECK_TOPIC:
            _control(event, states, alerts, batch_devices)
            continue
        heard_ns = round(msg.timestamp * 1000) * 1_000_000
        for s, key in decoded.get(id(event), ()):  # none: rejected, already dead-lettered
            heard_max = heard_ns if heard_max is None else max(heard_max, heard_ns)
            device = device_key(s.site_id, s.device_id)  # ids are unique within a site only
            h = states.get(device, event)
            out = on_status(h, s, key, heard_ns, rules)
            alerts += out.alerts
            notices += out.notices
            if out.duplicate:
                Counters.duplicate(s.msg_id)
            else:
                h.partition = msg.partition
                states.changed(device, event)  # mark + state + episodes: one changelog record per batch
                Counters.processed += 1
            points += out.points
    await send_alerts(alerts)
    Counters.alerts += len(alerts)
    await _send_notices(notices)
    states.write()
    if heard_max is not None:  # after the write: the timer judges silence on the table's state
        WATERMARK.observe(heard_max, time.time())
    await write_points(sink, points, ack)


async def _send_notices(notices: Sequence[EdgeNotice]) -> None:
    """Each notice to every partition of the checks topic; returns once Kafka has them all."""
    futures = [await check_topic.send(key=device_key(n.site, edge_device_id(n.site)).encode(), partition=p,
                                      value=msgspec.json.encode(n))
               for n in notices for p in range(settings.kafka_partitions)]
    for future in futures:
        await future
    if notices:
        log.info("edge notices sent: %s", ", ".join(f"{n.site} {'down' if n.down else 'up'} #{n.n}"
                                                     for n in notices))


def _control(event: Any, states: StateCache[Health], alerts: list[Alert], batch_devices: set[str]) -> None:
    """A record of the checks topic: a silence check, or an edge's notice for its devices here."""
    payload: bytes = event.value
    try:
        c = _control_decoder.decode(payload)
    except msgspec.DecodeError:
        try:
            c = _check_decoder.decode(payload)
        except msgspec.DecodeError as exc:
            log.error("bad device-health check %r: %s", payload[:200], exc)
            return
    if isinstance(c, EdgeNotice):
        _edge_notice(c, event, states, batch_devices)
        return
    if not _is_device_key(c.device):
        log.info("silence check for %r ignored: not a site/device key (from before the upgrade)", c.device)
        return
    out = on_check(states.get(c.device, event), c.device, c.now_ns, rules)
    alerts.extend(out.alerts)
    if out.alerts:
        states.changed(c.device, event)


def _edge_notice(notice: EdgeNotice, event: Any, states: StateCache[Health], batch_devices: set[str]) -> None:
    """Apply `notice` to the devices of its site on this record's partition (table and batch)."""
    partition = event.message.partition
    held = {device for device, value in list(health_table.items())
            if value and value.get("site") == notice.site and value.get("partition") == partition
            and _is_device_key(device)}
    for device in sorted(held | batch_devices):
        h = states.get(device)
        if h.partition == partition and on_edge_notice(h, split_device_key(device)[1], notice):
            states.changed(device, event)


def _is_device_key(key: str) -> bool:
    """A `site/device` table key; False for a bare device id (a table value written before the
    key had the site: stream/dedup.py residual risk 4), which the timer and notices leave alone."""
    try:
        split_device_key(key)
    except ValueError:
        return False
    return True


@app.agent(source_topic)
async def device_health(stream: Any) -> None:
    await run_batches(stream, process, Counters.summary("device_health"))


@app.timer(interval=CHECK_INTERVAL_S)
async def find_silent_devices() -> None:
    """Ask the owner of each silent device (this worker, active partitions only) to decide."""
    now = WATERMARK.now_ns(time.time())
    if now is None:
        return
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == STATUS_TOPIC}
    async for device, value in items_in_turns(health_table):
        h = Health.from_json(value)
        token = (h.msg_id, h.edge_notice)
        if (h.partition in owned and h.silent(now, rules) and _sent_checks.get(device) != token
                and _is_device_key(device)):
            if not await sent_from_timer(_send_check(device, h.partition, now),
                                         f"silence check for {device}"):
                return
            _sent_checks[device] = token


async def _send_check(device: str, partition: int | None, now: int) -> None:
    future = await check_topic.send(key=device.encode(), partition=partition,
                                    value=msgspec.json.encode(Check(device, now)))
    await future
