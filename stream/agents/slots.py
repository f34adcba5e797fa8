"""Many keys' table values in a few changelog records: `SlotTable` (issue 14).

Why: every Faust table write is one changelog record, ~140 us of CPU (Faust, aiokafka, the broker,
the standby that applies it), and at city scale a batch touches about as many devices as it holds
messages, so per-device values cost a record per message however the agents batch. So a batch's
changed values of ONE partition go into ONE record: the table key `~{partition}.{slot}` holds
`{"seq": n, "values": {key: value, ...}}`, and each write takes the partition's next slot (round
robin over `SLOTS`) with a seq one above the partition's highest.

A value's newest copy is the one in the slot with the highest seq that holds it. Kafka compacts
the changelog by key, keeping each slot's last record only, so a slot's rewrite CARRIES every
value whose newest copy it holds (and that the batch did not change): nothing live is ever only
in an overwritten record. Each value is whole inside one record, so a key's state (dedup mark and
aggregates, stream/dedup.py) is still written atomically: after a crash a key is either at its
old value or its new one. A write fills a slot up to `SLOT_BYTES` and goes on in the next ones
(each its own record), so a record stays far below Kafka's 1 MB. The bytes of a write are the
batch's changed values plus the slot's carried ones (about 1/`SLOTS` of the partition's keys).

The index (key -> slot, per partition) is rebuilt from the table whenever a slot's seq is not the
one this worker last saw (recovery, a standby promoted, a rebalance), so the table is the truth.
A slot key holds no `/`, so no `site/device` key is ever mistaken for one, and a value written
under its own key before this (a worker before issue 14) is still read (`get` falls back to it)
and moves into a slot at its first change.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import orjson
from faust.streams import _current_event

SLOTS = 64
"""Slot records per partition: a write carries about 1/SLOTS of the partition's values."""
SLOT_BYTES = 256 * 1024
"""A slot's values stop growing at this (JSON bytes); the write goes on in the next slot."""


def slot_key(partition: int, slot: int) -> str:
    return f"~{partition}.{slot}"


class SlotTable:
    """A Faust table used as `slots` records per partition (see the module docstring); `get` as
    on the table, `write` per partition (through stream/agents/runner.py's StateCache)."""

    def __init__(self, table: Any, partitions: int, slots: int = SLOTS, slot_bytes: int = SLOT_BYTES) -> None:
        self.table, self.partitions, self.slots, self.slot_bytes = table, partitions, slots, slot_bytes
        self._where: dict[int, dict[str, int]] = {}  # partition -> key -> slot of its newest copy
        self._home: dict[str, int] = {}  # key -> the partition of its newest copy
        self._seqs: dict[int, list[int]] = {}  # partition -> each slot's seq when indexed (-1: empty)
        self._sizes: dict[int, dict[str, int]] = {}  # partition -> key -> JSON bytes of its value
        self._fresh: set[int] = set()  # partitions whose index was checked since `refresh`

    def refresh(self) -> None:
        """Check each partition's index against the table again at its next use (once a batch)."""
        self._fresh.clear()

    def _slot(self, partition: int, slot: int) -> dict[str, Any] | None:
        value = self.table.get(slot_key(partition, slot))
        return value if isinstance(value, dict) else None

    def _check(self, partition: int) -> None:
        """Rebuild the partition's index when the table changed underneath (S lookups, once a batch)."""
        if partition in self._fresh:
            return
        self._fresh.add(partition)
        slots = [self._slot(partition, s) for s in range(self.slots)]
        seqs = [int(v["seq"]) if v else -1 for v in slots]
        if self._seqs.get(partition) == seqs:
            return
        for key in self._where.get(partition, {}):
            if self._home.get(key) == partition:
                del self._home[key]
        where: dict[str, int] = {}
        for s in sorted(range(self.slots), key=seqs.__getitem__):
            value = slots[s]
            if value:
                where.update(dict.fromkeys(value["values"], s))
        self._where[partition], self._seqs[partition], self._sizes[partition] = where, seqs, {}
        self._home.update(dict.fromkeys(where, partition))

    def get(self, key: str, partition: int | None = None) -> Any:
        """The newest value of `key` (or the one under its own key, from before slots), or None.

        `partition`: the key's partition (its record's), when known: only that partition's index
        is looked at; without it a key not found yet makes every partition's index be checked."""
        if partition is not None:
            self._check(partition)
            slot = self._where.get(partition, {}).get(key)
            if slot is None:
                return self.table.get(key)
            value = self._slot(partition, slot)
            return value["values"][key] if value else None
        partition = self._home.get(key)
        if partition is not None:
            self._check(partition)
            partition = self._home.get(key)
        if partition is None:  # a new key, or moved: every partition's index checked
            for p in range(self.partitions):
                self._check(p)
            partition = self._home.get(key)
            if partition is None:
                return self.table.get(key)
        value = self._slot(partition, self._where[partition][key])
        return value["values"][key] if value else None

    def write(self, partition: int, changed: dict[str, Any], event: Any) -> int:
        """Write `changed` (key -> JSON value) of `partition` in as few records as the size bound
        allows; `event` is a Faust event of that partition (it routes the changelog records)."""
        self._check(partition)
        where = self._where.setdefault(partition, {})
        seqs = self._seqs.setdefault(partition, [-1] * self.slots)
        sizes = self._sizes.setdefault(partition, {})
        pending = list(changed.items())[::-1]  # popped from the end: in order
        records = 0
        while pending:
            seq = max(seqs) + 1
            slot = (seqs.index(seq - 1) + 1) % self.slots if seq else 0  # after the newest
            old = self._slot(partition, slot)
            values = {k: v for k, v in (old["values"] if old else {}).items()
                      if where.get(k) == slot and k not in changed}
            size = sum(sizes.get(k) or self._size(sizes, k, v) for k, v in values.items())
            while pending:  # at least one changed value per slot, then up to the bound
                k, v = pending.pop()
                values[k] = v
                size += self._size(sizes, k, v)
                if size >= self.slot_bytes:
                    break
            token = _current_event.set(weakref.ref(event))
            try:
                self.table[slot_key(partition, slot)] = {"seq": seq, "values": values}
            finally:
                _current_event.reset(token)
            records += 1
            seqs[slot] = seq
            for k in values:
                where[k] = slot
                self._home[k] = partition
        return records

    @staticmethod
    def _size(sizes: dict[str, int], key: str, value: Any) -> int:
        size = sizes[key] = len(orjson.dumps(value)) + len(key) + 4
        return size

    def items(self) -> Iterator[tuple[str, Any]]:
        """(key, newest value) of every key this worker holds (every partition, standbys too)."""
        newest: dict[str, tuple[int, Any]] = {}
        legacy: list[tuple[str, Any]] = []
        for key, value in list(self.table.items()):
            if isinstance(key, str) and key.startswith("~") and isinstance(value, dict):
                seq = int(value["seq"])
                for k, v in value["values"].items():
                    if k not in newest or newest[k][0] < seq:
                        newest[k] = (seq, v)
            else:
                legacy.append((key, value))
        yield from ((k, v) for k, v in legacy if k not in newest)
        yield from ((k, v) for k, (_, v) in newest.items())
