"""Sorting stations: per-deposit points, per-station daily accuracy, bin fill, and their alerts.

Both agents take batches (stream/agents/runner.py says why and in what order).

`sorting` (ws.deposits, keyed `site/device` per station): decode, de-duplicate and count each
deposit in order; ONE table write per station and batch (dedup mark + the station's daily
counters, stream/dedup.py); newly qualifying `low_sorting_accuracy` alerts are raised
BEFORE that write (a crash re-raises the same ids, never loses them); then a `deposit`
point per deposit and the batch's last `sorting_daily` point per station and day (each one
overwrote the one before it: same series and time), and the ack once InfluxDB has them.
Community accuracy and participation are InfluxQL over those points
(stream/agents/sorting_state.py says why).

`bin_levels` (ws.bin-levels, same key): a `bin_level` point per reading and `bin_full` once
per fill cycle. Its own table: its readings are last-writer-wins per bin, so they need no
gap tracking, and keeping them apart from the deposits' mark keeps that mark's gaps to
the seqs this station spent on other event types.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust

from contract.events import Alert, BinLevel, Deposit
from contract.msgid import device_key
from contract.topics import KAFKA_TOPICS
from stream.agents.runner import Ack, AgentCounters, StateCache, decode_valid, run_batches, write_points
from stream.agents.slots import SlotTable
from stream.agents.sorting_state import (
    BinState,
    DayCounts,
    StationState,
    bin_level_point,
    deposit_point,
    low_accuracy,
    sorting_daily_point,
    station_day_key,
)
from stream.app import app, rules, settings
from stream.senders import send_alerts
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point

log = logging.getLogger(__name__)


deposits_topic = app.topic(KAFKA_TOPICS["deposit"], key_type=bytes, value_type=bytes)
bin_levels_topic = app.topic(KAFKA_TOPICS["bin_level"], key_type=bytes, value_type=bytes)

_json: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
station_state = SlotTable(app.Table(
    "sorting-station-state", default=None, partitions=settings.kafka_partitions, schema=_json,
    help="per site/station: (epoch, seq) marks and its counters per local day; see stream/dedup.py",
), settings.kafka_partitions)
bin_state = SlotTable(app.Table(
    "sorting-bin-state", default=None, partitions=settings.kafka_partitions, schema=_json,
    help="per site/station: per bin, the last reading applied and the msg_id that started a full cycle",
), settings.kafka_partitions)


Counters = AgentCounters(log, processed_label="deposits")


async def process_deposits(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """One batch of ws.deposits (runner.py: alerts, then one write per station, then points)."""
    valid, rejected = await decode_valid(events, Deposit, KAFKA_TOPICS["deposit"])
    Counters.rejected += rejected
    states = StateCache(station_state, StationState.from_json, StationState.to_json)
    alerts: list[Alert] = []
    points: list[Point] = []
    daily: dict[tuple[str, str], tuple[Deposit, DayCounts]] = {}  # one series + time: the last point wins
    for event, d, key in valid:
        station = device_key(d.site_id, d.device_id)  # ids are unique within a site only
        state = states.get(station, event)
        dk = station_day_key(d, rules.timezone)
        if state.accept(key, dk, d):
            counts = state.days.get(dk)
            alert = low_accuracy(counts, d, rules.sorting, rules.timezone) if counts else None
            if alert is not None:
                alerts.append(alert)
            states.changed(station, event)  # dedup mark + counters: one changelog record per batch
            Counters.processed += 1
        else:
            Counters.duplicate(d.msg_id)
        points.append(deposit_point(d))
        counts = state.days.get(dk)
        if counts:
            daily[(station, dk)] = d, counts  # only events of this day change these counts
    await send_alerts(alerts)  # before the table write: a crash re-raises (same ids), never loses
    Counters.alerts += len(alerts)
    states.write()
    points += [sorting_daily_point(d, counts, rules.timezone) for d, counts in daily.values()]
    await write_points(sink, points, ack)


async def process_bin_levels(events: Sequence[Any], sink: InfluxSink, ack: Ack) -> None:
    """One batch of ws.bin-levels: `bin_full` alerts, then one write per station, then the points."""
    valid, rejected = await decode_valid(events, BinLevel, KAFKA_TOPICS["bin_level"])
    Counters.rejected += rejected
    states = StateCache(bin_state, BinState.from_json, BinState.to_json)
    alerts: list[Alert] = []
    for event, b, key in valid:
        station = device_key(b.site_id, b.device_id)
        changed, alert = states.get(station, event).apply(key, b, rules.sorting.bin_full_pct)
        if alert is not None:
            alerts.append(alert)
        if changed:
            states.changed(station, event)
    await send_alerts(alerts)
    Counters.alerts += len(alerts)
    states.write()
    await write_points(sink, [bin_level_point(b) for _, b, _ in valid], ack)


@app.agent(deposits_topic)
async def sorting(stream: Any) -> None:
    await run_batches(stream, process_deposits, Counters.summary("sorting"))


@app.agent(bin_levels_topic)
async def bin_levels(stream: Any) -> None:
    await run_batches(stream, process_bin_levels, Counters.summary("bin_levels"))
