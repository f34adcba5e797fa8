"""SlotTable (stream/agents/slots.py): a partition's changed values in one changelog record per
batch, and every value still there after Kafka's compaction and a restart.

The fake table is a dict: one value per key, the newest, which is exactly what a compacted
changelog restores; a new SlotTable over it is a worker that restarted (or a standby promoted)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from faust import current_event

from stream.agents.runner import StateCache
from stream.agents.slots import SlotTable, slot_key


@dataclass
class Msg:
    partition: int


@dataclass
class Event:
    message: Msg


class Table(dict[str, Any]):
    """Set of a key: one changelog record, routed by the event in hand (as Faust does)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.records.append((key, current_event().message.partition))
        super().__setitem__(key, value)


def write(slots: SlotTable, batch: dict[str, tuple[int, Any]]) -> None:
    """One agent batch through StateCache: key -> (partition, new value)."""
    cache: StateCache[Any] = StateCache(slots, lambda v: {"v": v}, lambda s: s["v"])
    for key, (partition, value) in batch.items():
        cache.get(key)["v"] = value
        cache.changed(key, Event(Msg(partition)))
    cache.write()


def test_a_batch_is_one_record_per_partition_on_that_partition() -> None:
    table = Table()
    slots = SlotTable(table, partitions=4, slots=8)
    write(slots, {f"s/d{i}": (i % 2, i) for i in range(100)})
    assert len(table.records) == 2 and {p for _, p in table.records} == {0, 1}
    assert {k for k, _ in table.records} == {slot_key(0, 0), slot_key(1, 0)}
    assert all(slots.get(f"s/d{i}") == i for i in range(100)) and slots.get("s/other") is None


def test_random_batches_survive_compaction_and_restart() -> None:
    rng = random.Random(14)
    table = Table()
    slots = SlotTable(table, partitions=3, slots=5, slot_bytes=400)
    model: dict[str, int] = {}
    home = {f"s/d{i}": i % 3 for i in range(60)}
    for n in range(300):
        keys = rng.sample(sorted(home), rng.choice([1, 2, 5, 30]))
        before = len(table.records)
        write(slots, {k: (home[k], n) for k in keys})
        model.update(dict.fromkeys(keys, n))
        assert len(table.records) - before >= len({home[k] for k in keys})
        assert all(slots.get(k) == v for k, v in model.items())
        restarted = SlotTable(dict(table), partitions=3, slots=5, slot_bytes=400)
        assert all(restarted.get(k) == v for k, v in model.items())
        assert dict(restarted.items()) == model
    big = max(len(str(v)) for v in table.values())
    assert big < 400 + 200  # a record stops growing at the bound (plus the value that crossed it)


def test_a_value_from_before_slots_is_read_then_moves_into_a_slot() -> None:
    table = Table()
    dict.__setitem__(table, "s/old", 7)  # written per key by a worker before issue 14
    slots = SlotTable(table, partitions=2, slots=4)
    assert slots.get("s/old") == 7 and dict(slots.items()) == {"s/old": 7}
    write(slots, {"s/old": (1, 8)})
    assert slots.get("s/old") == 8 and dict(slots.items()) == {"s/old": 8}


def test_another_worker_writing_the_table_is_seen_at_the_next_batch() -> None:
    table = Table()
    mine, theirs = SlotTable(table, partitions=2, slots=4), SlotTable(table, partitions=2, slots=4)
    write(mine, {"s/a": (0, 1)})
    assert theirs.get("s/a") == 1
    write(theirs, {"s/a": (0, 2), "s/b": (0, 3)})  # after a rebalance the partition is theirs
    mine.refresh()  # a new batch
    assert mine.get("s/a") == 2 and mine.get("s/b") == 3


def test_a_look_up_on_the_keys_partition_reads_only_that_partition() -> None:
    table = Table()
    slots = SlotTable(table, partitions=4, slots=4)
    write(slots, {"s/a": (1, 1), "s/b": (2, 2)})
    assert slots.get("s/a", 1) == 1 and slots.get("s/b", 2) == 2
    assert slots.get("s/a", 2) is None  # not on partition 2
    dict.__setitem__(table, "s/old", 7)
    assert slots.get("s/old", 3) == 7  # from before slots, wherever its partition


class Counted:
    """A state whose decodes are counted (StateCache's decoded-state cache, issue 14)."""

    decodes = 0

    def __init__(self, value: Any) -> None:
        Counted.decodes += 1
        self.v = value


def _batch(slots: SlotTable, key: str, add: int, *, write: bool = True) -> Counted:
    cache: StateCache[Counted] = StateCache(slots, Counted, lambda s: s.v)
    state = cache.get(key, Event(Msg(0)))
    state.v = (state.v or 0) + add
    cache.changed(key, Event(Msg(0)))
    if write:
        cache.write()
    return state


def test_a_state_written_by_a_batch_is_used_again_not_decoded_while_the_table_holds_its_value() -> None:
    slots = SlotTable(Table(), partitions=1, slots=4)
    Counted.decodes = 0
    first = _batch(slots, "s/d", 1)
    assert _batch(slots, "s/d", 1) is first and Counted.decodes == 1 and slots.get("s/d") == 2


def test_a_failed_batch_or_a_value_from_elsewhere_is_decoded_afresh() -> None:
    table = Table()
    slots = SlotTable(table, partitions=1, slots=4)
    _batch(slots, "s/d", 5)
    Counted.decodes = 0
    _batch(slots, "s/d", 100, write=False)  # changed, then the batch failed: the table still says 5
    after = _batch(slots, "s/d", 1)
    assert Counted.decodes == 1 and after.v == 6 and slots.get("s/d") == 6
    restored = SlotTable(table, partitions=1, slots=4)  # recovery: another SlotTable, same records
    for key, value in list(table.items()):
        dict.__setitem__(table, key, {"seq": value["seq"], "values": dict(value["values"])})  # new objects
    Counted.decodes = 0
    assert _batch(restored, "s/d", 1).v == 7 and Counted.decodes == 1
