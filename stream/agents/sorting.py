"""Sorting stations: per-deposit points, per-station daily accuracy, bin fill, and their alerts.

`sorting` (ws.deposits, keyed by station device): decode, de-duplicate and count in ONE
table write (dedup mark + the station's daily counters, stream/dedup.py); a newly
qualifying `low_sorting_accuracy` is raised BEFORE that write (a crash re-raises the same
id, never loses it); then the `deposit` and `sorting_daily` points, and the ack once
InfluxDB has them. Community accuracy and participation are InfluxQL over those points
(stream/agents/sorting_state.py says why).

`bin_levels` (ws.bin-levels, same key): a `bin_level` point per reading and `bin_full` once
per fill cycle. Its own table: its readings are last-writer-wins per bin, so they need no
gap tracking, and keeping them apart from the deposits' mark keeps that mark's gaps to
the seqs this station spent on other event types.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from contract.codec import ContractError, decode
from contract.events import BinLevel, Deposit, Envelope
from contract.msgid import MsgKey, parse_msg_id
from contract.topics import KAFKA_TOPICS
from stream.agents.runner import run_steps
from stream.agents.sorting_state import (
    BinState,
    StationState,
    bin_level_point,
    deposit_point,
    low_accuracy,
    sorting_daily_point,
    station_day_key,
)
from stream.app import app, rules, send_alert, send_deadletter, settings
from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.sinks.influx import InfluxSink

log = logging.getLogger(__name__)
_dup_log = RateLimitedLog(log, per_interval=10)


deposits_topic = app.topic(KAFKA_TOPICS["deposit"], key_type=bytes, value_type=bytes)
bin_levels_topic = app.topic(KAFKA_TOPICS["bin_level"], key_type=bytes, value_type=bytes)

_json: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
station_state = app.Table(
    "sorting-station-state", default=None, partitions=settings.kafka_partitions, schema=_json,
    help="per station: last (epoch, seq) seen and its counters per local day; see stream/dedup.py",
)
bin_state = app.Table(
    "sorting-bin-state", default=None, partitions=settings.kafka_partitions, schema=_json,
    help="per station: per bin, the last reading applied and the msg_id that started a full cycle",
)


class Counters:
    deposits = 0
    duplicates = 0
    rejected = 0


async def _decode(payload: bytes, type_: type[Envelope], event: str,
                  ack: Callable[[], Any]) -> tuple[Any, MsgKey] | None:
    """The message and its msg_id key, or None after dead-lettering it (and acking)."""
    try:
        m = decode(payload, type_)
        key = parse_msg_id(m.msg_id)
        if key.device_id != m.device_id:
            raise ContractError(f"msg_id {m.msg_id!r} does not belong to device {m.device_id!r}")
    except (ContractError, ValueError) as exc:
        Counters.rejected += 1
        log.warning("dead-lettering a %s record: %s", KAFKA_TOPICS[event], exc)
        await send_deadletter(deadletter_record(str(exc), f"kafka:{KAFKA_TOPICS[event]}", payload))
        result = ack()
        if hasattr(result, "__await__"):
            await result
        return None
    return m, key


async def process_deposit(payload: bytes, sink: InfluxSink, ack: Callable[[], Any]) -> None:
    decoded = await _decode(payload, Deposit, "deposit", ack)
    if decoded is None:
        return
    d, key = decoded
    assert isinstance(d, Deposit)
    state = StationState.from_json(station_state.get(d.device_id))
    dk = station_day_key(d, rules.timezone)
    if state.accept(key, dk, d):
        counts = state.days.get(dk)
        alert = low_accuracy(counts, d, rules.sorting, rules.timezone) if counts else None
        if alert is not None:
            await send_alert(alert)
        station_state[d.device_id] = state.to_json()  # dedup mark + counters: one changelog record
        Counters.deposits += 1
    else:
        Counters.duplicates += 1
        _dup_log.warning("duplicate deposit %s dropped; %d duplicates so far", d.msg_id, Counters.duplicates)
    counts = state.days.get(dk)
    await sink.write(deposit_point(d), on_done=None if counts else ack)
    if counts:
        await sink.write(sorting_daily_point(d, counts, rules.timezone), on_done=ack)


async def process_bin_level(payload: bytes, sink: InfluxSink, ack: Callable[[], Any]) -> None:
    decoded = await _decode(payload, BinLevel, "bin_level", ack)
    if decoded is None:
        return
    b, key = decoded
    assert isinstance(b, BinLevel)
    state = BinState.from_json(bin_state.get(b.device_id))
    changed, alert = state.apply(key, b, rules.sorting.bin_full_pct)
    if alert is not None:
        await send_alert(alert)
    if changed:
        bin_state[b.device_id] = state.to_json()
    await sink.write(bin_level_point(b), on_done=ack)


def _summary(name: str) -> Callable[[], None]:
    return lambda: log.info("%s: %d deposits, %d duplicates, %d rejected", name, Counters.deposits,
                            Counters.duplicates, Counters.rejected)


@app.agent(deposits_topic)
async def sorting(stream: Any) -> None:
    await run_steps(stream, process_deposit, _summary("sorting"))


@app.agent(bin_levels_topic)
async def bin_levels(stream: Any) -> None:
    await run_steps(stream, process_bin_level, _summary("bin_levels"))
