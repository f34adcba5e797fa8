"""Exactly-once effects on at-least-once input: de-duplication by msg_id, per device.

Why this works: msg_id = `device:epoch:seq` with seq growing per device within an epoch (one
outbox), and Kafka is keyed by device (`site/device`: contract.msgid.device_key; device ids
are unique within a site only), so one partition holds a device's messages in the order the
bridge produced them. So the last seq seen per device and epoch is nearly enough:
anything at or below it is a duplicate (an MQTT or Kafka redelivery, a replay after a
crash). "Nearly", because order can break before Kafka: a message held in a crashed
bridge's MQTT session (shared subscription: its successors went to another bridge), a
Kafka send retried by the bridge, an edge redelivery. Dropping such a late message as
"<= last" would lose it. So the state also keeps the *gaps*: sequence numbers skipped
below the top within the last `WINDOW` of the device's epoch. A late message that fills a
gap is new; anything else at or below the top is a duplicate. In-order traffic has no gaps,
so the state stays tiny; a permanent hole (a message the edge dropped) ages out of the
window.

Epochs are not ordered against each other (`SeqMark`): the last `EPOCHS_KEPT` epochs of a
device each keep their own top and gaps, and a message of an epoch not remembered is new.
An epoch is the outbox's creation time on the edge host's clock, so a replaced box whose
clock was wrong starts with a LOWER epoch; ordering by (epoch, seq) dropped all of its
messages as duplicates, for good. The bridge also refuses an epoch far in the future
(stream/validation.py), so a forged id is dead-lettered rather than remembered.

The Faust caveat: a worker killed abruptly may already have written its table
changelog but not committed its Kafka offsets, so the same messages are processed
again after restart. If the tonnage total lived in one table and `last_seen` in
another, the two changelog records could be split by the crash (one written, one
not) and the total would be off by that message. Therefore the de-duplication mark
and the running totals live in ONE value per device (`WeighbridgeState`), written as one
changelog record (once per batch, inside the record of the device's partition that holds every
value the batch changed there: stream/agents/slots.py): after any crash
either both or neither are in the changelog, and a replayed message is either a
recognised duplicate (the total already holds it) or new (the total does not). Table
keys are `site/device`, the same key as the source topic, so the table is co-partitioned
and scale-out safe.

Duplicates still re-emit their InfluxDB points: those are idempotent (same series
and timestamp), and this heals the window where the changelog was written but the
points were not yet in InfluxDB when the worker died.

Residual risks: (1) a device whose epoch changes more than `EPOCHS_KEPT` times forgets the
oldest (least recently advanced; logged at WARNING), and a redelivery of a forgotten epoch is
counted again: only the device's own site can send such ids (a compromised site can forge its
own data anyway), and the table key `site/device` keeps it from touching any other site;
(2) a ticket for a day older than `KEEP_DAYS` before the device's newest day
updates no total (logged), since its running total has been pruned; (3) a message
arriving more than `WINDOW` sequence numbers late (or, for a device or epoch first seen at
seq > `INITIAL_GAPS`, one older than that first message) is taken for a duplicate. One message
is late by design: an edge agent's Last-Will (its seq is taken at connect, every heartbeat
after it takes a newer one), so device health de-duplicates the agent's own `offline`
statuses apart from this window (stream/agents/device_health_state.py); (4) table values
written before the `site/device` key (bare device ids) are not found after that upgrade: the
per-device state starts afresh once (a replay of data already counted would then count again).
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
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


EPOCHS_KEPT = 8
"""Epochs (outboxes) remembered per device, the current one included: least recently advanced
forgotten first. A device starts a new epoch only when its outbox is rebuilt (a replaced box)."""


def is_duplicate(last: tuple[int, int] | None, key: MsgKey, gaps: AbstractSet[tuple[int, int]] = frozenset()
                 ) -> bool:
    """True when `last` (epoch, top seq) is of `key`'s epoch, seq is not after it and fills no gap.

    Epochs are not ordered against each other: another epoch's message is not a duplicate of
    this one (see `SeqMark` for how epochs are remembered)."""
    return (last is not None and key.epoch == last[0] and key.seq <= last[1]
            and (key.epoch, key.seq) not in gaps)


def _mask(top: int, seqs: AbstractSet[int]) -> str:
    """Seqs below `top` (within `WINDOW`) as a hex bitmask: bit i = seq top-1-i."""
    mask = 0
    for seq in seqs:
        mask |= 1 << (top - seq - 1)
    return format(mask, "x") if mask else ""


def _unmask(top: int, mask_hex: str) -> set[int]:
    mask, seqs = int(mask_hex, 16) if mask_hex else 0, set()
    while mask:
        low = mask & -mask
        seqs.add(top - low.bit_length())
        mask ^= low
    return seqs


@dataclass
class SeqMark:
    """The de-duplication mark alone: per epoch, the top seq seen and the gaps below it.

    Analyses embed it in their own per-device state (see `WeighbridgeState`, and the sorting
    station's state) so mark and aggregates are always one table value.

    Epochs are NOT ordered against each other: an epoch is an outbox's creation time on the
    edge host's clock, and a replaced box whose clock was wrong starts LOWER than the old one.
    Ordering by (epoch, seq) made every message of such a box a duplicate forever (and one
    forged future epoch silenced a device). So each of the last `EPOCHS_KEPT` epochs has its
    own top seq and gaps, and a message of an epoch not remembered is new, whatever its order.
    """

    last: tuple[int, int] | None = None
    """(epoch, top seq) of the epoch most recently advanced (the device's current outbox)."""
    gaps: set[tuple[int, int]] = field(default_factory=set)
    """(epoch, seq) skipped below its epoch's top and not seen yet, within `WINDOW` of it."""
    epochs: dict[int, int] = field(default_factory=dict)
    """The other remembered epochs -> their top seq, most recently advanced first."""

    def mark_from_json(self, data: dict[str, Any]) -> None:
        """Read `mark_to_json`'s form; also the older form without `epochs` (one epoch known)."""
        last = data.get("last")
        self.last = (int(last[0]), int(last[1])) if last else None
        self.gaps = {(int(e), int(s)) for e, s in data.get("gaps", ())}
        self.epochs = {}
        for entry in data.get("epochs", ()):
            epoch, top = int(entry[0]), int(entry[1])
            self.epochs[epoch] = top
            self.gaps.update((epoch, s) for s in _unmask(top, str(entry[2]) if len(entry) > 2 else ""))
        if self.last is not None:
            epoch, top = self.last
            self.gaps.update((epoch, s) for s in _unmask(top, str(data.get("gapmask") or "")))
        for epoch, seq in sorted(self.gaps):  # the older form kept other epochs' gaps only
            if self._top(epoch) is None:
                self.epochs[epoch] = seq + 1  # a gap is below something seen

    def mark_to_json(self) -> dict[str, Any]:
        """Each epoch's gaps as a hex bitmask below its top (`_mask`); the current epoch's as
        `gapmask` beside `last`, as before epochs were kept (so older values still read).

        A device interleaves event types in one sequence, so a topic sees every other seq
        as a gap: a mask is ~30x smaller in the changelog than a list of pairs."""
        if self.last is None:
            return {"last": None}
        by_epoch: dict[int, set[int]] = {}
        other: list[list[int]] = []
        for e, seq in self.gaps:
            top = self._top(e)
            if top is not None and 0 < top - seq <= WINDOW:
                by_epoch.setdefault(e, set()).add(seq)
            else:
                other.append([e, seq])
        epoch, top = self.last
        out: dict[str, Any] = {"last": [epoch, top]}
        if mask := _mask(top, by_epoch.get(epoch, set())):
            out["gapmask"] = mask
        if self.epochs:
            out["epochs"] = [[e, t, _mask(t, by_epoch.get(e, set()))] for e, t in self.epochs.items()]
        if other:
            out["gaps"] = sorted(other)
        return out

    def _top(self, epoch: int) -> int | None:
        """The top seq seen of `epoch`, or None when the epoch is not remembered."""
        if self.last is not None and self.last[0] == epoch:
            return self.last[1]
        return self.epochs.get(epoch)

    def seen(self, key: MsgKey) -> bool:
        """True when `key` was already recorded (a duplicate)."""
        top = self._top(key.epoch)
        return is_duplicate(None if top is None else (key.epoch, top), key, self.gaps)

    def record(self, key: MsgKey) -> bool:
        """Mark `key` seen; False (and no change) when it is a duplicate."""
        if self.seen(key):
            return False
        self._advance(key)
        return True

    def _advance(self, key: MsgKey) -> None:
        """Mark `key` seen: fill its gap, or move its epoch's top up and remember what was skipped."""
        point = (key.epoch, key.seq)
        top = self._top(key.epoch)
        if top is not None and key.seq <= top:
            self.gaps.discard(point)
            return
        if top is not None:
            start = max(top + 1, key.seq - WINDOW)
        else:  # first message of a device or epoch: its predecessors are gaps only if near seq 1
            start = 1 if key.seq <= INITIAL_GAPS + 1 else key.seq
        self.gaps.update((key.epoch, s) for s in range(start, key.seq))
        if self.last is not None and self.last[0] != key.epoch:
            self._switch_to(self.last, key.epoch)
        self.last = point
        floor = key.seq - WINDOW
        self.gaps = {g for g in self.gaps if g[0] != key.epoch or g[1] >= floor}
        if len(self.gaps) > WINDOW:  # gaps of other epochs: keep the current epoch's, then the newest
            rank = {e: i for i, e in enumerate([key.epoch, *self.epochs])}
            self.gaps = set(sorted(self.gaps, key=lambda g: (rank[g[0]], -g[1]))[:WINDOW])

    def _switch_to(self, current: tuple[int, int], epoch: int) -> None:
        """`epoch` becomes the current one: `current` goes first into `epochs`; the least
        recently advanced beyond `EPOCHS_KEPT` is forgotten with its gaps."""
        older = {e: t for e, t in self.epochs.items() if e != epoch}
        kept = list({current[0]: current[1], **older}.items())
        self.epochs = dict(kept[:EPOCHS_KEPT - 1])
        if len(kept) >= EPOCHS_KEPT:
            forgotten = {e for e, _ in kept[EPOCHS_KEPT - 1:]}
            log.warning("epoch %d: forgetting epoch(s) %s of the device (more than %d outboxes)",
                        epoch, sorted(forgotten), EPOCHS_KEPT)
            self.gaps = {g for g in self.gaps if g[0] not in forgotten}


@dataclass
class WeighbridgeState(SeqMark):
    """What the stream remembers per weighbridge: the dedup mark and its daily running totals."""

    days: dict[str, tuple[float, int]] = field(default_factory=dict)
    """`site|category|day_ns` -> (net kg, tickets); day_ns = start of the local day."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> WeighbridgeState:
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
            site, day = _site_day(k)
            if site == site_id and day == day_ns:
                kg, n = kg + k_kg, n + k_n
        return kg, n

    def accept(self, key: MsgKey, day_key: str, net_kg: float) -> bool:
        """Record a message; False (and no change) when it is a duplicate."""
        if not self.record(key):
            return False
        day_ns = _day_ns(day_key)
        days = [_day_ns(k) for k in self.days]
        newest = max([day_ns, *days])
        floor = newest - KEEP_DAYS * NS_PER_DAY
        if day_ns <= floor:
            log.warning("ticket %s for a day beyond the %d-day window: per-ticket point only", key, KEEP_DAYS)
            return True
        kg, n = self.total(day_key)
        self.days[day_key] = (kg + net_kg, n + 1)
        if days and min(days) <= floor:  # a day left the window
            self.days = {k: v for k, v in self.days.items() if _day_ns(k) > floor}
        return True


@lru_cache(maxsize=65_536)
def _day_ns(day_key: str) -> int:
    return int(day_key.rsplit("|", 1)[1])


@lru_cache(maxsize=65_536)
def _site_day(day_key: str) -> tuple[str, int]:
    site, _, day = day_key.split("|")
    return site, int(day)
