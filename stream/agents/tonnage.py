"""Tonnage: per-ticket points, per-device local-day totals, facility load, and ticket alerts.

`tonnage` (keyed `site/device` per weighbridge, like ws.weighings), a batch of tickets at a time
(stream/agents/runner.py), in order per device: decode, de-duplicate and add to the device's
daily total, kept in ONE table value per device (see stream/dedup.py for why one) and written
once per batch; a new ticket's alerts (integrity flags, raw waste at a zero-landfill facility)
are raised BEFORE that write, so a crash re-raises them with the same ids rather than losing
them; each device's running total for the facility-day is forwarded to the site-keyed internal
topic and each ticket, re-keyed by plate, to the manifest topic (stream/agents/manifest.py:
one stream over ws.weighings, not two); the points are written and the batch is acked only
once InfluxDB and Kafka have everything. A re-delivery is dropped as a duplicate, raises no
alert, and re-sends its idempotent total, manifest event and points.

`facility_load` (keyed by facility): sums the latest per-device totals of a local day
(stream/agents/tonnage_rules.py), writes `facility_load` and raises `over_capacity` once
per facility and day.

Hour / origin / category breakdowns are not tables: the per-ticket `weighing` points are
summed by InfluxQL (`GROUP BY time(1h), origin tz('Asia/Shanghai')`), exact and replay-safe
by construction. Tables exist only where the stream must act (capacity alerts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from contract.events import Alert, Weighing
from contract.msgid import device_key
from contract.topics import KAFKA_TOPICS
from stream.agents import manifest
from stream.agents.integrity import integrity_alerts
from stream.agents.localday import local_day_start_ns
from stream.agents.runner import (
    Ack,
    AgentCounters,
    StateCache,
    by_partition,
    decode_valid,
    maybe_await,
    run_batches,
    write_points,
)
from stream.agents.slots import SlotTable
from stream.agents.tonnage_points import (
    DeviceDayTotal,
    daily_point,
    day_key,
    decode_totals,
    encode_totals,
    facility_load_point,
    weighing_point,
)
from stream.agents.tonnage_rules import SiteLoad, over_capacity, raw_waste_landfilled
from stream.app import app, rules, settings, weighings_topic
from stream.dedup import WeighbridgeState
from stream.senders import send_alerts
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point, to_ns

log = logging.getLogger(__name__)


device_state = SlotTable(app.Table(
    "tonnage-device-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per site/device: (epoch, seq) marks and its daily running net kg; see stream/dedup.py",
), settings.kafka_partitions)

site_totals_topic = app.topic(
    f"{settings.faust_app_id}-tonnage-by-site", internal=True, partitions=settings.kafka_partitions,
    key_type=bytes, value_type=bytes,
)
"""Per-device running day totals re-keyed by facility (a record per facility per batch); named after
the app (one per deployment)."""

site_load = SlotTable(app.Table(
    "tonnage-site-load",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per facility: largest running total per device and local day, and days alerted over capacity",
), settings.kafka_partitions)


Counters = AgentCounters(log)


def _to_json(state: WeighbridgeState) -> Any:
    return state.to_json()


async def process_batch(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """Handle a batch of ws.weighings records; `ack` runs once all their effects are durable.

    Per ticket, in order: de-duplicate and add to the device's running totals; a new ticket's
    alerts are collected. Then (stream/agents/runner.py): alerts sent, one table write per
    device, each device's latest facility-day total forwarded, the per-ticket points and each
    device-day's latest total point written; the batch is acked when Kafka and InfluxDB have all.
    """
    valid, rejected = await decode_valid(events, Weighing, KAFKA_TOPICS["weighing"])
    Counters.rejected += rejected
    states = StateCache(device_state, WeighbridgeState.from_json, _to_json)
    alerts: list[Alert] = []
    points: list[Point] = []
    daily: dict[tuple[str, str], Point] = {}
    forwards: dict[tuple[str, str, int], DeviceDayTotal] = {}
    tz = rules.timezone
    for event, w, key in valid:
        device = device_key(w.site_id, w.device_id)  # ids are unique within a site only
        state = states.get(device, event)
        dk = day_key(w, tz)
        if state.accept(key, dk, w.net_kg):
            alerts.extend(integrity_alerts(w))
            raw = raw_waste_landfilled(w, rules)
            if raw is not None:
                alerts.append(raw)
            states.changed(device, event)  # dedup mark + total: one changelog record per batch
            Counters.processed += 1
        else:
            Counters.duplicate(w.msg_id, state.last)
        day_ns = local_day_start_ns(w.ts, tz)
        site_kg, site_tickets = state.site_day_total(w.site_id, day_ns)
        if site_tickets:  # 0: a ticket too old for the kept days (per-ticket point only)
            forwards[(w.site_id, w.device_id, day_ns)] = DeviceDayTotal(
                w.site_id, w.device_id, day_ns, site_kg, site_tickets, w.msg_id, to_ns(w.ts))
        kg, tickets = state.total(dk)
        points.append(weighing_point(w))
        daily[(device, dk)] = daily_point(w, kg, tickets, tz)  # one series per device-day
    await send_alerts(alerts)  # before the table write: a crash re-raises (same ids), never loses
    Counters.alerts += len(alerts)
    states.write()
    # Not awaited here: the batch's ack waits for them. A crash before re-sends them: totals only
    # grow (the receiver keeps the largest), manifest events carry ids (the matcher drops repeats).
    # One record per partition of the facility-keyed topic (all its facilities), not per facility.
    sent = [await site_totals_topic.send(key=b"~p%d" % p, partition=p, value=encode_totals(totals))
            for p, totals in by_partition(forwards.values(), lambda t: t.site)]
    sent += await manifest.send_events_soon([manifest.weighing_event(w) for _event, w, _key in valid])
    points.extend(daily.values())
    newest_ns = max((to_ns(w.ts) for _event, w, _key in valid), default=None)
    await write_points(sink, points, _after(sent, newest_ns, ack))


def _after(sent: Sequence[Awaitable[Any]], newest_ns: int | None, ack: Ack) -> Callable[[], Awaitable[None]]:
    """An ack that also waits until Kafka has the forwarded records (so a crash before re-sends them)."""
    async def done() -> None:
        for future in sent:
            await future
        if newest_ns is not None:  # the manifest clock moves only once its events are in Kafka
            manifest.WATERMARK.observe(newest_ns, time.time())
        await maybe_await(ack())
    return done


def _load_to_json(load: SiteLoad) -> Any:
    return load.to_json()


async def process_site_totals(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """Merge devices' day totals into their facility's load; alert once per facility-day over capacity."""
    loads = StateCache(site_load, SiteLoad.from_json, _load_to_json)
    alerts: list[Alert] = []
    points: dict[tuple[str, int], Point] = {}
    for event, t in ((e, t) for e in events for t in decode_totals(e.value)):
        load = loads.get(t.site, event)
        load.merge(t)
        alert = over_capacity(load, t, rules)  # marks the day alerted: once per facility and day
        if alert is not None:
            alerts.append(alert)
        loads.changed(t.site, event)
        kg, tickets, devices = load.total(t.day_ns)
        facility = rules.facility(t.site)
        capacity = facility.capacity_t_per_day if facility else None
        points[(t.site, t.day_ns)] = facility_load_point(t.site, t.day_ns, kg, tickets, devices, capacity)
    await send_alerts(alerts)  # before the table write: a crash re-raises (same id), never loses
    loads.write()
    await write_points(sink, list(points.values()), ack)


@app.agent(weighings_topic)
async def tonnage(stream: Any) -> None:
    await run_batches(stream, process_batch, Counters.summary("tonnage"))


@app.agent(site_totals_topic)
async def facility_load(stream: Any) -> None:
    await run_batches(stream, process_site_totals, lambda: None, within_s=settings.aggregate_within_s)
