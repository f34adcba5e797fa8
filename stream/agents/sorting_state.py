"""Sorting's pure logic: per-station daily counters, accuracy, bin fill cycles, and their points.

Accuracy (per station and local day):
- count-based = correct / checked, where checked = correct + incorrect. `unchecked` deposits
  (no camera or inspector verdict) are counted in `deposits` and `kg` but excluded from both
  accuracy ratios: they say nothing about sorting quality.
- weight-based = correct kg / checked kg.
A community's accuracy is the sum of its stations' counters (InfluxQL over `sorting_daily`).

Participation (distinct households that deposited on a local day / registered households) is
computed by InfluxQL from the per-deposit points: `count(distinct("household"))`, exact and
replay-safe (a replayed point overwrites itself). Anonymous drops carry no `household` field,
so they are never counted. The stream keeps no household sets.

The station's counters and its de-duplication mark are ONE value (`StationState`, see
stream/dedup.py), as for tonnage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contract.events import Alert, BinLevel, Deposit, Verdict
from contract.msgid import MsgKey, device_key, parse_msg_id, site_msg_id
from stream.agents.localday import day_label, local_day_start_ns
from stream.alerting.make import make_alert
from stream.dedup import KEEP_DAYS, NS_PER_DAY, SeqMark
from stream.rules import SortingRules
from stream.sinks.line_protocol import Point, to_ns

DEPOSIT = "deposit"
SORTING_DAILY = "sorting_daily"
BIN_LEVEL = "bin_level"
ANONYMOUS = "anonymous"
"""The household id the edge gives a drop without a card (edge/devices/sorting_station/pseudonym.py)."""


@dataclass
class DayCounts:
    deposits: int = 0
    checked: int = 0
    correct: int = 0
    kg: float = 0.0
    checked_kg: float = 0.0
    correct_kg: float = 0.0
    alerted: bool = False
    """low_sorting_accuracy already raised for this station and day."""

    def add(self, d: Deposit) -> None:
        self.deposits += 1
        self.kg += d.kg
        if d.verdict != Verdict.UNCHECKED:
            self.checked += 1
            self.checked_kg += d.kg
            if d.verdict == Verdict.CORRECT:
                self.correct += 1
                self.correct_kg += d.kg

    @property
    def accuracy_pct(self) -> float | None:
        return 100 * self.correct / self.checked if self.checked else None

    @property
    def weight_accuracy_pct(self) -> float | None:
        return 100 * self.correct_kg / self.checked_kg if self.checked_kg else None

    def to_json(self) -> list[Any]:
        return [self.deposits, self.checked, self.correct, self.kg, self.checked_kg, self.correct_kg,
                self.alerted]

    @classmethod
    def from_json(cls, v: list[Any]) -> DayCounts:
        return cls(int(v[0]), int(v[1]), int(v[2]), float(v[3]), float(v[4]), float(v[5]), bool(v[6]))


def station_day_key(d: Deposit, tz: str) -> str:
    return f"{d.site_id}|{d.community_id}|{local_day_start_ns(d.ts, tz)}"


@dataclass
class StationState(SeqMark):
    """Per sorting station: the dedup mark and its counters per (site, community, local day)."""

    days: dict[str, DayCounts] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StationState:
        state = cls()
        if data:
            state.mark_from_json(data)
            state.days = {k: DayCounts.from_json(v) for k, v in data.get("days", {}).items()}
        return state

    def to_json(self) -> dict[str, Any]:
        return {**self.mark_to_json(), "days": {k: v.to_json() for k, v in self.days.items()}}

    def accept(self, key: MsgKey, day_key: str, d: Deposit) -> bool:
        """Count a deposit once; False (no change) for a duplicate. Days beyond KEEP_DAYS: point only."""
        if not self.record(key):
            return False
        day_ns = _day_ns(day_key)
        newest = max([day_ns, *map(_day_ns, self.days)])
        floor = newest - KEEP_DAYS * NS_PER_DAY
        if day_ns > floor:
            self.days.setdefault(day_key, DayCounts()).add(d)
        self.days = {k: v for k, v in self.days.items() if _day_ns(k) > floor}
        return True


def low_accuracy(counts: DayCounts, d: Deposit, rules: SortingRules, tz: str) -> Alert | None:
    """Raised (once: marks `counts`) the first time a station's day has enough checked deposits
    and its count-based accuracy is below the threshold."""
    acc = counts.accuracy_pct
    if counts.alerted or counts.checked < rules.min_deposits_for_accuracy or acc is None \
            or acc >= rules.low_accuracy_pct:
        return None
    counts.alerted = True
    day = day_label(local_day_start_ns(d.ts, tz), tz)
    return make_alert(
        "low_sorting_accuracy", site_id=d.site_id, device_id=d.device_id,
        subject=d.device_id,
        summary=f"sorting accuracy at station {d.device_id} ({d.community_id}) on {day}: {acc:.1f} % "
                f"({counts.correct}/{counts.checked} checked deposits), below {rules.low_accuracy_pct:g} %",
        evidence=[d.msg_id], ts=d.ts, dedup_key=f"{device_key(d.site_id, d.device_id)}|{day}",
    )


@dataclass
class BinState:
    """Per sorting station: per bin, the last reading applied and the msg_id that started a full cycle.

    Readings are last-writer-wins by seq within an epoch: a duplicate or late reading is stale
    and changes nothing (a newer reading already described the bin), so no gap tracking is
    needed. A reading of another epoch (a replaced box: its epoch may be lower, stream/dedup.py)
    is applied in arrival order: epochs are not ordered against each other.
    """

    bins: dict[str, tuple[tuple[int, int], str | None]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BinState:
        bins = (data or {}).get("bins", {})
        return cls({b: ((int(v[0][0]), int(v[0][1])), v[1]) for b, v in bins.items()})

    def to_json(self) -> dict[str, Any]:
        return {"bins": {b: [list(last), full] for b, (last, full) in self.bins.items()}}

    def apply(self, key: MsgKey, b: BinLevel, full_pct: float) -> tuple[bool, Alert | None]:
        """(changed, alert): `bin_full` once per fill cycle; re-armed when the fill drops below `full_pct`."""
        point = (key.epoch, key.seq)
        last, full = self.bins.get(b.bin.value, (None, None))
        if last is not None and last[0] == key.epoch and key.seq <= last[1]:
            return False, None
        alert = None
        if b.fill_pct >= full_pct and full is None:
            full = b.msg_id
            alert = make_alert(
                "bin_full", site_id=b.site_id, device_id=b.device_id,
                subject=f"{b.device_id}/{b.bin.value}",
                summary=f"{b.bin.value} bin at station {b.device_id} ({b.community_id}) is "
                        f"{b.fill_pct:.0f} % full (threshold {full_pct:g} %)",
                evidence=[b.msg_id], ts=b.ts, dedup_key=f"{b.bin.value}|{site_msg_id(b.site_id, b.msg_id)}",
            )
        elif b.fill_pct < full_pct:
            full = None
        self.bins[b.bin.value] = (point, full)
        return True, alert


def deposit_point(d: Deposit) -> Point:
    """One per deposit at its own time; household (unbounded) is a field, absent for anonymous drops."""
    fields: dict[str, float | int | bool | str] = {
        "kg": float(d.kg), "msg_id": d.msg_id, "verdict_source": d.verdict_source.value}
    if d.household != ANONYMOUS:
        fields["household"] = d.household
    tags = {"site": d.site_id, "community": d.community_id, "device": d.device_id, "bin": d.bin.value,
            "verdict": d.verdict.value}
    return Point(DEPOSIT, tags, fields, deposit_time_ns(d))


def deposit_time_ns(d: Deposit) -> int:
    """The deposit's time plus its seq (mod 1000) in nanoseconds.

    A station reports the drops it saw since the last poll with the same `ts` (the registers
    carry no drop time); two same-bin, same-verdict drops would share a series and a timestamp
    and one would overwrite the other. `ts` has microsecond resolution, so the sub-microsecond
    seq offset keeps drops apart and stays deterministic (a replay still overwrites itself)."""
    return to_ns(d.ts) + parse_msg_id(d.msg_id).seq % 1000


def sorting_daily_point(d: Deposit, c: DayCounts, tz: str) -> Point:
    """The station's running counters for the deposit's local day (overwritten as the day fills)."""
    fields: dict[str, float | int | bool | str] = {
        "deposits": c.deposits, "checked": c.checked, "correct": c.correct,
        "kg": c.kg, "checked_kg": c.checked_kg, "correct_kg": c.correct_kg}
    if c.accuracy_pct is not None:
        fields["accuracy_pct"] = c.accuracy_pct
    if c.weight_accuracy_pct is not None:
        fields["weight_accuracy_pct"] = c.weight_accuracy_pct
    return Point(SORTING_DAILY, {"site": d.site_id, "community": d.community_id, "device": d.device_id},
                 fields, local_day_start_ns(d.ts, tz))


def bin_level_point(b: BinLevel) -> Point:
    tags = {"site": b.site_id, "community": b.community_id, "device": b.device_id, "bin": b.bin.value}
    return Point(BIN_LEVEL, tags, {"fill_pct": float(b.fill_pct), "msg_id": b.msg_id}, to_ns(b.ts))


def _day_ns(day_key: str) -> int:
    return int(day_key.rsplit("|", 1)[1])
