"""Exactly-once effects on at-least-once input: de-duplication by msg_id, per device.

Why this works: msg_id = `device:epoch:seq` with (epoch, seq) growing per device, and
Kafka is keyed by device, so one partition holds a device's messages in order. So the
last (epoch, seq) seen per device is enough: anything at or below it is a duplicate
(an MQTT or Kafka redelivery, or a replay after a crash).

The Faust caveat: a worker killed abruptly may already have written its table
changelog but not committed its Kafka offsets, so the same messages are processed
again after restart. If the tonnage total lived in one table and `last_seen` in
another, the two changelog records could be split by the crash (one written, one
not) and the total would be off by that message. Therefore the de-duplication mark
and the running totals live in ONE value per device (`DeviceState`), written as one
changelog record in the same agent step: after any crash either both or neither are
in the changelog, and a replayed message is either a recognised duplicate (the total
already holds it) or new (the total does not). Table keys are device ids, the same
key as the source topic, so the table is co-partitioned and scale-out safe.

Duplicates still re-emit their InfluxDB points: those are idempotent (same series
and timestamp), and this heals the window where the changelog was written but the
points were not yet in InfluxDB when the worker died.

Residual risks: (1) a device whose epoch goes backwards (outbox rebuilt with a clock
set in the past) would have everything dropped as duplicates: counted and logged at
WARNING; (2) a ticket for a day older than `KEEP_DAYS` before the device's newest day
updates no total (logged), since its running total has been pruned; (3) exactness
assumes one producer order per device (true for the bridge: key = device).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from contract.msgid import MsgKey

log = logging.getLogger(__name__)

KEEP_DAYS = 40
"""Daily running totals kept per device: late tickets up to this old still update their day."""

NS_PER_DAY = 86_400 * 1_000_000_000


def is_duplicate(last: tuple[int, int] | None, key: MsgKey) -> bool:
    """True when (epoch, seq) is not after the last one seen for the device."""
    return last is not None and (key.epoch, key.seq) <= last


@dataclass
class DeviceState:
    """What the stream remembers per device: the dedup mark and its daily running totals."""

    last: tuple[int, int] | None = None
    days: dict[str, tuple[float, int]] = field(default_factory=dict)
    """`site|category|day_ns` -> (net kg, tickets)."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DeviceState:
        if not data:
            return cls()
        last = data.get("last")
        return cls(
            last=(int(last[0]), int(last[1])) if last else None,
            days={k: (float(v[0]), int(v[1])) for k, v in data.get("days", {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {"last": list(self.last) if self.last else None,
                "days": {k: [kg, n] for k, (kg, n) in self.days.items()}}

    def total(self, day_key: str) -> tuple[float, int]:
        return self.days.get(day_key, (0.0, 0))

    def accept(self, key: MsgKey, day_key: str, net_kg: float) -> bool:
        """Record a message; False (and no change) when it is a duplicate."""
        if is_duplicate(self.last, key):
            return False
        self.last = (key.epoch, key.seq)
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
