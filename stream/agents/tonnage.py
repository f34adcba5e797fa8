"""Tonnage: per-ticket points, per-device local-day totals, facility load, and ticket alerts.

`tonnage` (keyed by weighbridge device, like ws.weighings): one step per ticket, in order
per device: decode, de-duplicate and add to the device's daily total in ONE table write
(see stream/dedup.py for why one); for a new ticket raise its alerts (integrity flags,
raw waste at a zero-landfill facility) BEFORE that write, so a crash re-raises them with
the same ids rather than losing them; forward the device's running total for the
facility-day to the site-keyed internal topic; write the points and ack the Kafka
message only once InfluxDB has them. A re-delivery is dropped as a duplicate, raises no
alert, and re-sends its idempotent total and points.

`facility_load` (keyed by facility): sums the latest per-device totals of a local day
(stream/agents/tonnage_rules.py), writes `facility_load` and raises `over_capacity` once
per facility and day.

Hour / origin / category breakdowns are not tables: the per-ticket `weighing` points are
summed by InfluxQL (`GROUP BY time(1h), origin tz('Asia/Shanghai')`), exact and replay-safe
by construction. Tables exist only where the stream must act (capacity alerts).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from contract.codec import ContractError, decode
from contract.events import Weighing
from contract.msgid import parse_msg_id
from contract.topics import KAFKA_TOPICS
from stream.agents.integrity import integrity_alerts
from stream.agents.localday import local_day_start_ns
from stream.agents.runner import run_steps
from stream.agents.tonnage_points import (
    DeviceDayTotal,
    daily_point,
    day_key,
    facility_load_point,
    weighing_point,
)
from stream.agents.tonnage_rules import SiteLoad, over_capacity, raw_waste_landfilled
from stream.app import app, rules, send_alert, send_deadletter, settings, weighings_topic
from stream.deadletter import deadletter_record
from stream.dedup import DeviceState
from stream.logutil import RateLimitedLog
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import to_ns

log = logging.getLogger(__name__)
_dup_log = RateLimitedLog(log, per_interval=10)


device_state = app.Table(
    "tonnage-device-state",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per device: last (epoch, seq) seen and its daily running net kg; see stream/dedup.py",
)

site_totals_topic = app.topic(
    f"{settings.faust_app_id}-tonnage-by-site", internal=True, partitions=settings.kafka_partitions,
    key_type=bytes, value_type=bytes,
)
"""Per-device running day totals re-keyed by facility; named after the app (one per deployment)."""

site_load = app.Table(
    "tonnage-site-load",
    default=None,
    partitions=settings.kafka_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    help="per facility: largest running total per device and local day, and days alerted over capacity",
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
    dk = day_key(w, rules.timezone)
    if state.accept(key, dk, w.net_kg):
        raw = raw_waste_landfilled(w, rules)
        for alert in [*integrity_alerts(w), *([raw] if raw else [])]:
            await send_alert(alert)
        device_state[w.device_id] = state.to_json()  # dedup mark + total: one changelog record
        Counters.processed += 1
    else:
        Counters.duplicates += 1
        _dup_log.warning("duplicate %s dropped (last seen %s); %d duplicates so far",
                         w.msg_id, state.last, Counters.duplicates)
    day_ns = local_day_start_ns(w.ts, rules.timezone)
    site_kg, site_tickets = state.site_day_total(w.site_id, day_ns)
    done = ack
    if site_tickets:  # 0: a ticket too old for the kept days (per-ticket point only)
        total = DeviceDayTotal(w.site_id, w.device_id, day_ns, site_kg, site_tickets, w.msg_id, to_ns(w.ts))
        sent = await site_totals_topic.send(key=w.site_id.encode(), value=total.encode())
        done = _after(sent, ack)  # not awaited here: one Kafka round trip per ticket would cap throughput
    kg, tickets = state.total(dk)
    await sink.write(weighing_point(w))
    await sink.write(daily_point(w, kg, tickets, rules.timezone), on_done=done)


def _after(sent: Awaitable[Any], ack: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    """An ack that waits until Kafka also has the forwarded total (so a crash before re-sends it)."""
    async def done() -> None:
        await sent
        await _maybe_await(ack())
    return done


async def process_site_total(payload: bytes, sink: InfluxSink, ack: Callable[[], Any]) -> None:
    """Merge one device's day total into its facility's load; alert once when over capacity."""
    t = DeviceDayTotal.decode(payload)
    load = SiteLoad.from_json(site_load.get(t.site))
    load.merge(t)
    alert = over_capacity(load, t, rules)
    if alert is not None:
        await send_alert(alert)  # before the table write: a crash re-raises (same id), never loses
    site_load[t.site] = load.to_json()
    kg, tickets, devices = load.total(t.day_ns)
    facility = rules.facility(t.site)
    capacity = facility.capacity_t_per_day if facility else None
    await sink.write(facility_load_point(t.site, t.day_ns, kg, tickets, devices, capacity), on_done=ack)


async def _maybe_await(result: Any) -> None:
    if hasattr(result, "__await__"):
        await result


@app.agent(weighings_topic)
async def tonnage(stream: Any) -> None:
    await run_steps(stream, process, lambda: log.info(
        "tonnage: %d processed, %d duplicates, %d rejected",
        Counters.processed, Counters.duplicates, Counters.rejected))


@app.agent(site_totals_topic)
async def facility_load(stream: Any) -> None:
    await run_steps(stream, process_site_total, lambda: None)
