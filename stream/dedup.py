"""Exactly-once effects on at-least-once input: de-duplication by msg_id, per device.

Why this works: msg_id = `device:epoch:seq` with (epoch, seq) growing per device, and
Kafka is keyed by device, so one partition holds a device's messages in the order the
bridge produced them. So the last (epoch, seq) seen per device is nearly enough:
anything at or below it is a duplicate (an MQTT or Kafka redelivery, a replay after a
crash). "Nearly", because order can break before Kafka: a message held in a crashed
bridge's MQTT session (shared subscription: its successors went to another bridge), a
Kafka send retried by the bridge, an edge redelivery. Dropping such a late message as
"<= last" would lose it. So the state also keeps the *gaps*: sequence numbers skipped
below `last` within the last `WINDOW` of the device. A late message that fills a gap
is new; anything else at or below `last` is a duplicate. In-order traffic has no gaps,
so the state stays tiny; a permanent hole (a message the edge dropped) ages out of the
window.

The Faust caveat: a worker killed abruptly may already have written its table
changelog but not committed its Kafka offsets, so the same messages are processed
again after restart. If the tonnage total lived in one table and `last_seen` in
another, the two changelog records could be split by the crash (one written, one
not) and the total would be off by that message. Therefore the de-duplication mark
and the running totals live in ONE value per device (`DeviceState`), written as one
changelog record (once per device per batch, stream/agents/runner.py): after any crash
either both or neither are in the changelog, and a replayed message is either a
recognised duplicate (the total already holds it) or new (the total does not). Table
keys are device ids, the same key as the source topic, so the table is co-partitioned
and scale-out safe.

Duplicates still re-emit their InfluxDB points: those are idempotent (same series
and timestamp), and this heals the window where the changelog was written but the
points were not yet in InfluxDB when the worker died.

Residual risks: (1) a device whose epoch goes backwards (outbox rebuilt with a clock
set in the past) would have everything dropped as duplicates: counted and logged at
WARNING; (2) a ticket for a day older than `KEEP_DAYS` before the device's newest day
updates no total (logged), since its running total has been pruned; (3) a message
arriving more than `WINDOW` sequence numbers late (or, for a device first seen at seq >
`INITIAL_GAPS`, one older than that first message) is taken for a duplicate. One message
is late by design: an edge agent's Last-Will (its seq is taken at connect, every heartbeat
after it takes a newer one), so device health de-duplicates the agent's own `offline`
statuses apart from this window (stream/agents/device_health_state.py).
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from contract.msgid import MsgKey

log = logging.getLogger(__name__)

WINDOW = 1000
"""How far below the newest seq a late (reordered) message is still recognised as new."""

INITIAL_GAPS = 64
"""A device (or epoch) first seen at seq <= this may still deliver seqs 1.. late; beyond, history
before the stream started is not tracked (it would be a window of gaps that never fill)."""

KEEP_DAYS = 40
"""Daily running totals kept per device: late tickets up to this old still update their day."""

NS_PER_DAY = 86_400 * 1_000_000_000


def is_duplicate(last: tuple[int, int] | None, key: MsgKey, gaps: AbstractSet[tuple[int, int]] = frozenset()
                 ) -> bool:
    """True when (epoch, seq) is not after the last one seen for the device and fills no gap."""
    return last is not None and (key.epoch, key.seq) <= last and (key.epoch, key.seq) not in gaps


@dataclass
class SeqMark:
    """The de-duplication mark alone: last (epoch, seq) seen and the gaps below it.

    Analyses embed it in their own per-device state (see `DeviceState`, and the sorting
    station's state) so mark and aggregates are always one table value.
    """

    last: tuple[int, int] | None = None
    gaps: set[tuple[int, int]] = field(default_factory=set)
    """(epoch, seq) skipped below `last` and not seen yet, within `WINDOW` of it."""

    def mark_from_json(self, data: dict[str, Any]) -> None:
        last = data.get("last")
        self.last = (int(last[0]), int(last[1])) if last else None
        self.gaps = {(int(e), int(s)) for e, s in data.get("gaps", ())}
        if self.last is not None and data.get("gapmask"):
            epoch, top = self.last
            mask = int(data["gapmask"], 16)
            while mask:
                low = mask & -mask
                self.gaps.add((epoch, top - low.bit_length()))
                mask ^= low

    def mark_to_json(self) -> dict[str, Any]:
        """Gaps of the current epoch as a hex bitmask below `last` (bit i = seq last-1-i).

        A device interleaves event types in one sequence, so a topic sees every other seq
        as a gap: a mask is ~30x smaller in the changelog than a list of pairs."""
        if self.last is None:
            return {"last": None}
        epoch, top = self.last
        mask = 0
        other: list[list[int]] = []
        for e, seq in self.gaps:
            if e == epoch and 0 < top - seq <= WINDOW:
                mask |= 1 << (top - seq - 1)
            else:
                other.append([e, seq])
        out: dict[str, Any] = {"last": [epoch, top]}
        if mask:
            out["gapmask"] = format(mask, "x")
        if other:
            out["gaps"] = sorted(other)
        return out

    def seen(self, key: MsgKey) -> bool:
        """True when `key` was already recorded (a duplicate)."""
        return is_duplicate(self.last, key, self.gaps)

    def record(self, key: MsgKey) -> bool:
        """Mark `key` seen; False (and no change) when it is a duplicate."""
        if self.seen(key):
            return False
        self._advance(key)
        return True

    def _advance(self, key: MsgKey) -> None:
        """Mark `key` seen: fill its gap, or move `last` up and remember what was skipped."""
        point = (key.epoch, key.seq)
        if self.last is not None and point <= self.last:
            self.gaps.discard(point)
            return
        if self.last is not None and key.epoch == self.last[0]:
            start = max(self.last[1] + 1, key.seq - WINDOW)
        else:  # first message of a device or epoch: its predecessors are gaps only if near seq 1
            start = 1 if key.seq <= INITIAL_GAPS + 1 else key.seq
        self.gaps.update((key.epoch, s) for s in range(start, key.seq))
        self.last = point
        floor = key.seq - WINDOW
        self.gaps = {g for g in self.gaps if g[0] != key.epoch or g[1] >= floor}
        if len(self.gaps) > WINDOW:  # gaps of older epochs: keep the newest
            self.gaps = set(sorted(self.gaps)[-WINDOW:])


@dataclass
class DeviceState(SeqMark):
    """What the stream remembers per weighbridge: the dedup mark and its daily running totals."""

    days: dict[str, tuple[float, int]] = field(default_factory=dict)
    """`site|category|day_ns` -> (net kg, tickets); day_ns = start of the local day."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DeviceState:
        state = cls()
        if data:
            state.mark_from_json(data)
            state.days = {k: (float(v[0]), int(v[1])) for k, v in data.get("days", {}).items()}
        return state

    def to_json(self) -> dict[str, Any]:
        return {**self.mark_to_json(), "days": {k: [kg, n] for k, (kg, n) in self.days.items()}}

    def total(self, day_key: str) -> tuple[float, int]:
        return self.days.get(day_key, (0.0, 0))

    def site_day_total(self, site_id: str, day_ns: int) -> tuple[float, int]:
        """This device's (net kg, tickets) at `site_id` on the day starting `day_ns`, all categories."""
        kg, n = 0.0, 0
        for k, (k_kg, k_n) in self.days.items():
            site, _, day = k.split("|")
            if site == site_id and int(day) == day_ns:
                kg, n = kg + k_kg, n + k_n
        return kg, n

    def accept(self, key: MsgKey, day_key: str, net_kg: float) -> bool:
        """Record a message; False (and no change) when it is a duplicate."""
        if not self.record(key):
            return False
        day_ns = _day_ns(day_key)
        newest = max([day_ns, *map(_day_ns, self.days)])
        if day_ns <= newest - KEEP_DAYS * NS_PER_DAY:
            log.warning("ticket %s for a day beyond the %d-day window: per-ticket point only", key, KEEP_DAYS)
            return True
        kg, n = self.total(day_key)
        self.days[day_key] = (kg + net_kg, n + 1)
        self.days = {k: v for k, v in self.days.items() if _day_ns(k) > newest - KEEP_DAYS * NS_PER_DAY}
        return True


def _day_ns(day_key: str) -> int:
    return int(day_key.rsplit("|", 1)[1])
