"""The loop every analysis agent shares: batches of events, one InfluxDB sink, manual acks.

Why batches: per event, Faust and aiokafka cost far more than our own code, and every table
write is a changelog record that Kafka must store. So an agent takes up to `settings.batch_max`
events (or what came within `settings.batch_within_s`: WS_BATCH_MAX, WS_BATCH_WITHIN_S), reads
each key's state once, applies the events in order, and writes ONE table value per key per batch
(`StateCache`). The order of effects in a batch is the order a single event had, so crash safety
is unchanged:

1. alerts and forwarded records of the batch are sent, and Kafka has them,
2. then each touched key's state (dedup mark + aggregates) is written, one changelog record
   (on a SlotTable one record per partition holds every key's value the batch changed, slots.py),
3. then the points; the batch's events are acked once InfluxDB has its last point.

A crash before 2 re-delivers the batch and re-raises the same alert ids (the alert service
drops repeats); a crash after 2 re-delivers records the state already holds, which are
dropped as duplicates and only re-send their idempotent points.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from faust.exceptions import NotReady
from faust.streams import _current_event

from contract.codec import ContractError
from contract.events import Envelope
from contract.kafka_record import Part, RecordError, decode_part, split_record
from contract.msgid import MsgKey, parse_msg_id
from stream import metrics
from stream.agents.slots import SlotTable
from stream.app import settings
from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.senders import send_deadletter
from stream.sinks import shared as shared_sink
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point
from wastestream.foundation import logs

log = logging.getLogger(__name__)

_internal_errors = RateLimitedLog(log, per_interval=5)


Ack = Callable[[], Any]
BatchStep = Callable[[Sequence[Any], InfluxSink, Ack], Awaitable[None]]
S = TypeVar("S")
T = TypeVar("T")
M = TypeVar("M", bound=Envelope)


class AgentCounters:
    """An agent's tallies for its summary line at stop; each dropped repeat is logged (rate-limited)."""

    def __init__(self, logger: logging.Logger, processed_label: str = "processed") -> None:
        self.processed = self.duplicates = self.rejected = self.alerts = 0
        self._log, self._label = logger, processed_label
        self._dup_log = RateLimitedLog(logger, per_interval=10)

    def duplicate(self, msg_id: str, last_seen: object = None) -> None:
        self.duplicates += 1
        seen = "" if last_seen is None else f" (last seen {last_seen})"
        self._dup_log.warning("duplicate %s dropped%s; %d duplicates so far", msg_id, seen, self.duplicates,
                              extra=logs.fields(msg_id=msg_id))

    def summary(self, name: str) -> Callable[[], None]:
        """The `on_stop` of `run_batches`: one line with every tally."""
        def report() -> None:
            self._log.info("%s: %d %s, %d duplicates, %d rejected, %d alerts", name, self.processed,
                           self._label, self.duplicates, self.rejected, self.alerts)
        return report


def batch_acker(stream: Any, events: Sequence[Any]) -> Ack:
    """One callback that acks every event of a batch (each event is its own Kafka offset)."""
    async def ack() -> None:
        for event in events:
            await stream.ack(event)
    return ack


async def run_batches(stream: Any, step: BatchStep, on_stop: Callable[[], None],
                      within_s: float | None = None) -> None:
    """Feed the agent's stream to `step` in batches (gathered for `within_s`, default the
    settings' `batch_within_s`); flush the sink and report on stop."""
    sink = await shared_sink.acquire(settings, send_deadletter)  # one per worker process: one write per flush
    within = settings.batch_within_s if within_s is None else within_s
    try:
        async for events in stream.noack_take(settings.batch_max, within=within):
            await step(events, sink, batch_acker(stream, events))
    finally:
        await shared_sink.release(sink, timeout=10)  # flushes this agent's points; the last stops it
        on_stop()


async def decode_valid(events: Iterable[Any], type_: type[M], topic: str
                       ) -> tuple[list[tuple[Any, M, MsgKey]], int]:
    """The batch's valid (event, message, msg key) in order; the others are dead-lettered.

    A Faust event is one Kafka record, which holds one message (version 1) or several (version
    2, the bridge's batches: contract/kafka_record.py); the messages come out in record order,
    each with its event (whose partition routes its table write). A message is rejected when
    the contract refuses it or its msg_id names another device: it alone is dead-lettered (its
    own bytes), the record's others go on; a record whose frame is unreadable is dead-lettered
    whole. Returns the valid ones and how many were rejected; every rejection is in Kafka's
    dead-letter topic before this returns (so acking the batch afterwards loses nothing).
    """
    valid: list[tuple[Any, M, MsgKey]] = []
    rejected: list[bytes] = []
    for event in events:
        try:
            parts = split_record(event.value)
        except RecordError as exc:
            log.warning("dead-lettering a %s record: %.1000s", topic, exc)
            rejected.append(deadletter_record(str(exc), f"kafka:{topic}", _raw(event.value)))
            continue
        except Exception as exc:  # one record must never crash the worker (issue 11)
            rejected.append(_internal(exc, topic, _raw(event.value)))
            continue
        for part in parts:
            try:
                m = _valid_message(part, type_)
            except (ContractError, ValueError) as exc:
                log.warning("dead-lettering a %s message: %.1000s", topic, exc)
                rejected.append(deadletter_record(str(exc), f"kafka:{topic}", part.raw))
                continue
            except Exception as exc:  # one message must never crash the worker (issue 11)
                rejected.append(_internal(exc, topic, part.raw))
                continue
            valid.append((event, m[0], m[1]))
    if rejected:
        await asyncio.gather(*(send_deadletter(record) for record in rejected))
    metrics.worker_decoded(topic, len(valid), len(rejected))
    return valid, len(rejected)


def _valid_message(part: Part, type_: type[M]) -> tuple[M, MsgKey]:
    m = cast(M, decode_part(part, type_))
    key = parse_msg_id(m.msg_id)
    if key.device_id != m.device_id:
        raise ContractError(f"msg_id {m.msg_id!r} does not belong to device {m.device_id!r}")
    return m, key


def _internal(exc: Exception, topic: str, raw: bytes) -> bytes:
    _internal_errors.warning("dead-lettering a %s record after an internal error:\n%s", topic,
                             traceback.format_exc(limit=20))
    return deadletter_record(f"internal error: {type(exc).__name__}: {exc}", f"kafka:{topic}", raw)


def partition_of(key: str, partitions: int | None = None) -> int:
    """The partition Kafka's default partitioner (murmur2) gives `key` on an internal topic of
    `partitions` (default: the app's): what a record keyed `key` would get. Agents that re-key
    (manifest events by plate, day totals by facility) send one record per PARTITION holding
    every key of it, instead of one per key, so the receiving agent's keys stay where they were."""
    return _partition(key, partitions or settings.kafka_partitions)


@lru_cache(maxsize=65_536)
def _partition(key: str, partitions: int) -> int:
    """murmur2 is pure Python in aiokafka (~10 us); the keys (sites, plates) repeat all day."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def by_partition(items: Iterable[T], key: Callable[[T], str], most: int = 1000) -> list[tuple[int, list[T]]]:
    """`items` grouped by the partition of `key(item)`, in order, at most `most` per group."""
    groups: dict[int, list[list[T]]] = {}
    for item in items:
        chunks = groups.setdefault(partition_of(key(item)), [[]])
        if len(chunks[-1]) >= most:
            chunks.append([])
        chunks[-1].append(item)
    return [(p, chunk) for p, chunks in groups.items() for chunk in chunks]


def _raw(value: Any) -> bytes:
    """A record's value as the bytes a dead-letter record keeps (a tombstone is empty)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return b"" if value is None else repr(value).encode("utf-8", "backslashreplace")


class StateCache(Generic[S]):
    """Each key's table value read once per batch and written once (if changed) at its end.

    `load` turns the table's JSON value (or None) into the state object; `dump` back. Why:
    one changelog record per key per batch instead of one per event (see the module doc).
    `changed(key, event)` takes the event that changed it: Faust writes a key's changelog
    record to the partition of the event in hand (`current_event()`), which a batch must set.
    On a `SlotTable` (stream/agents/slots.py) the batch's changed states of each partition go
    into one record instead (issue 14: a batch touches about as many devices as messages).
    """

    def __init__(self, table: Any, load: Callable[[Any], S], dump: Callable[[S], Any]) -> None:
        self._table, self._load, self._dump = table, load, dump
        self._states: dict[str, S] = {}
        self._dirty: dict[str, Any] = {}
        self._decoded = _decoded_cache(table)
        if isinstance(table, SlotTable):
            table.refresh()

    def get(self, key: str, event: Any = None) -> S:
        """`key`'s state; `event`, a Faust event of the key's partition, narrows a SlotTable's
        look-up to that partition (without it, a key new to the table costs a look at all)."""
        state = self._states.get(key)
        if state is None:
            if isinstance(self._table, SlotTable):
                value = self._table.get(key, None if event is None else event.message.partition)
            else:
                value = self._table.get(key)
            kept = self._decoded.pop(key, None)  # taken out: a batch that fails never writes it back
            state = kept[1] if kept is not None and kept[0] is value else self._load(value)
            self._states[key] = state
        return state

    def changed(self, key: str, event: Any) -> None:
        """Mark `key` for writing; `event` (a Faust event of the key's partition) routes its record."""
        self._dirty[key] = event

    def write(self) -> int:
        """Write every changed state to the table; how many changelog records that took (one per
        key, or on a SlotTable one per partition unless the size bound splits it)."""
        if isinstance(self._table, SlotTable):
            return self._write_slots(self._table)
        for key, event in self._dirty.items():
            token = _current_event.set(weakref.ref(event))
            try:
                state = self._states[key]
                self._table[key] = value = self._dump(state)
                self._decoded[key] = (value, state)
            finally:
                _current_event.reset(token)
        n = len(self._dirty)
        self._dirty.clear()
        return n

    def _write_slots(self, table: SlotTable) -> int:
        by_partition: dict[int, tuple[Any, dict[str, Any]]] = {}
        for key, event in self._dirty.items():
            values = by_partition.setdefault(event.message.partition, (event, {}))[1]
            state = self._states[key]
            values[key] = value = self._dump(state)
            self._decoded[key] = (value, state)
        self._dirty.clear()
        return sum(table.write(p, values, event) for p, (event, values) in by_partition.items())


_DECODED_MAX = 200_000
"""Decoded states kept per table (StateCache): beyond it the cache starts afresh (memory bound)."""
_decoded_by_table: dict[int, tuple[Any, dict[str, tuple[Any, Any]]]] = {}


def _decoded_cache(table: Any) -> dict[str, tuple[Any, Any]]:
    """Per table, key -> (the table value a batch wrote, the state it was dumped from).

    Why (issue 14): decoding each key's JSON value at every batch was a fifth of the agents' CPU.
    The in-memory store keeps the very object a batch wrote, so while the table still holds THAT
    object (`is`), the state it came from is current and is used again; any other value (a
    recovery, a standby promoted, another writer) is decoded afresh. `StateCache.get` takes the
    entry out, so a state changed by a batch that then failed is never reused; the write puts
    it back. The dumps must not share mutable parts with the state (every `to_json` builds new
    containers)."""
    entry = _decoded_by_table.get(id(table))
    if entry is None or entry[0] is not table:
        entry = _decoded_by_table[id(table)] = (table, {})
    if len(entry[1]) > _DECODED_MAX:
        entry[1].clear()
    return entry[1]


async def sent_from_timer(send: Awaitable[Any], what: str) -> bool:
    """Await a Faust timer's send; False (logged) when the producer is stopping or rebalancing.

    An exception in a Faust timer crashes the worker; the timers' checks lose nothing by waiting:
    what was due is still due at the next tick and asked then."""
    try:
        await send
    except (NotReady, KafkaError) as exc:
        log.info("%s not sent (%s: %s); next tick", what, type(exc).__name__, exc)
        return False
    return True


SCAN_SLICE = 500
"""Items a timer's table scan handles between two turns of the event loop."""


async def items_in_turns(table: Any, slice_size: int = SCAN_SLICE) -> AsyncIterator[tuple[Any, Any]]:
    """A table's items (a snapshot) for a timer's scan, giving the event loop a turn every
    `slice_size` items. Why (issue 14): a province's device-health table holds ~65,000 devices, and
    decoding them all in one go held a worker's loop for 0.1-0.9 s every 5 s: every agent's batch
    waited meanwhile (p99 over 1 s). A value may change during the scan; the timers only ask the
    key's owner, who decides on the current value."""
    for i, item in enumerate(list(table.items())):
        if i and not i % slice_size:
            await asyncio.sleep(0)
        yield item


async def maybe_await(result: Any) -> None:
    """Await an ack's result when it is awaitable (a stream's ack is; a plain callback's is not)."""
    if hasattr(result, "__await__"):
        await result


async def write_points(sink: InfluxSink, points: Sequence[Point], ack: Ack) -> None:
    """Buffer the batch's points; `ack` runs once InfluxDB has the last one (batches are in order).

    With no points, `ack` runs at once: nothing of the batch is left to make durable.
    """
    if not points:
        await maybe_await(ack())
        return
    for point in points[:-1]:
        await sink.write(point)
    await sink.write(points[-1], on_done=ack)
