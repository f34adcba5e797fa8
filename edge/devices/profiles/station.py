"""The profile of one sorting-station model: which registers make a drop, a bin level, a door and a
verdict (decoded by `edge.devices.sorting_station.registers`).

Roles:

- `drop_counter` (required): drops since power-up, u16 or u32, wrapping; also the sequence number of
  the latest drop. `epoch` (required): any register that changes at power-up (a boot counter), so a
  restart is not mistaken for a wrap. Without both, drops cannot be counted exactly once.
- `ring` (required): the last `slots` drops, slot k = seq mod slots at `base + k * stride`; its
  fields' addresses are relative to the slot: `seq` (same type as the counter), `bin` (a code table
  to categories), `weight` (kg after scale/offset), `verdict` (a code table to a verdict, or to a
  verdict and its source: many vendors have one "result" code), `source` (optional code table),
  `card` (optional string: the household card; absent = anonymous drops).
- `bins` (at least one): per bin its `fill` (% after scale/offset), optional `door` (a bool, true =
  open unless `open_when: false`, or a code table to closed/open/fault) and `total` (kg).
- `checks`: registers that must hold a constant (a layout version), else the poll is refused.

The counter and the ring are in one table within one read, so a poll never sees a counter whose
drop is half-written.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contract.events import Verdict, VerdictSource, WasteCategory
from edge.devices.profiles.fields import Address, Field, Placed, ProfileHead, place

DoorState = Literal["closed", "open", "fault"]
NUMERIC = frozenset({"u16", "i16", "u32", "i32", "f32"})
DEFAULT_DOOR_CODES: dict[int, DoorState] = {0: "closed", 1: "open", 2: "fault"}


class Check(Field, frozen=True, kw_only=True):
    """A register that must hold `equals` (after scale/offset), e.g. the map version."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    equals: float


class DoorField(Field, frozen=True, kw_only=True):
    codes: dict[int, DoorState] | None = None
    """For a numeric door register; default 0 closed, 1 open, 2 fault."""
    open_when: bool = True
    """For a bool door (a coil, discrete input or register bit): the value that means open."""


class VerdictCode(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    verdict: Verdict
    source: VerdictSource


class BinCodeField(Field, frozen=True, kw_only=True):
    codes: dict[int, WasteCategory]


class VerdictField(Field, frozen=True, kw_only=True):
    codes: dict[int, Verdict | VerdictCode]


class SourceField(Field, frozen=True, kw_only=True):
    codes: dict[int, VerdictSource]


class Bin(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    category: WasteCategory
    fill: Field
    door: DoorField | None = None
    total: Field | None = None


class Ring(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    base: Address
    slots: Annotated[int, msgspec.Meta(ge=1, le=64)]
    stride: Annotated[int, msgspec.Meta(ge=1, le=125)]
    seq: Field
    bin: BinCodeField
    weight: Field
    verdict: VerdictField | None = None
    source: SourceField | None = None
    card: Field | None = None


class SortingStationProfile(ProfileHead, frozen=True, kw_only=True):
    """One vendor model's register map (YAML; `wastestream schema --profile sorting_station`)."""

    kind: Literal["sorting_station"]
    checks: list[Check] = msgspec.field(default_factory=list)
    epoch: Field
    drop_counter: Field
    bins: Annotated[list[Bin], msgspec.Meta(min_length=1)]
    ring: Ring

    def slot_fields(self, slot: int) -> list[tuple[str, Placed]]:
        """(role, placed field) of ring slot `slot`."""
        r, d = self.ring, self.defaults
        base = r.base + slot * r.stride
        roles: list[tuple[str, Field | None]] = [
            ("seq", r.seq), ("bin", r.bin), ("weight", r.weight), ("verdict", r.verdict),
            ("source", r.source), ("card", r.card)]
        return [(role, place(f"ring[{slot}].{role}", f, d, base)) for role, f in roles if f is not None]

    def bin_fields(self, index: int) -> list[tuple[str, Placed]]:
        b, d = self.bins[index], self.defaults
        roles: list[tuple[str, Field | None]] = [("fill", b.fill), ("door", b.door), ("total", b.total)]
        return [(role, place(f"bins[{b.category.value}].{role}", f, d)) for role, f in roles if f is not None]

    def placed(self) -> list[Placed]:
        """Every register the profile reads, at its absolute address."""
        d = self.defaults
        out = [place(f"checks[{c.name}]", c, d) for c in self.checks]
        out += [place("epoch", self.epoch, d), place("drop_counter", self.drop_counter, d)]
        for i in range(len(self.bins)):
            out += [p for _, p in self.bin_fields(i)]
        for k in range(self.ring.slots):
            out += [p for _, p in self.slot_fields(k)]
        return out

    def problems(self) -> list[str]:
        """What makes the profile unusable, beyond what its schema says; [] when it is sound."""
        d, r = self.defaults, self.ring
        out: list[str] = []
        counter, seq = place("drop_counter", self.drop_counter, d), place("ring.seq", r.seq, d)
        epoch = place("epoch", self.epoch, d)
        if counter.type not in ("u16", "u32"):
            out.append(f"drop_counter: type {counter.type} is not u16 or u32 (a wrapping counter)")
        if epoch.type not in ("u16", "i16", "u32", "i32"):
            out.append(f"epoch: type {epoch.type} is not an integer type")
        if seq.type != counter.type:
            out.append(f"ring.seq: type {seq.type} is not the counter's ({counter.type}): they wrap together")
        if self.drop_counter.scale != 1 or self.drop_counter.offset or r.seq.scale != 1 or r.seq.offset:
            out.append("drop_counter and ring.seq are counts: no scale or offset")
        if r.slots & (r.slots - 1):
            out.append(f"ring.slots {r.slots} is not a power of two (seq mod slots must survive the wrap)")
        slot0 = self.slot_fields(0)
        for role, p in slot0:
            if p.address - r.base + p.width > r.stride:
                out.append(f"ring.{role}: its registers {p.address - r.base}..{p.last - r.base} "
                           f"run past the slot's stride {r.stride}")
            if p.function != counter.function:
                out.append(f"ring.{role}: in the {p.function} table, the counter in {counter.function}: "
                           "the counter and its ring must come from one read")
        kinds = dict(slot0)
        for role in ("weight",):
            if kinds[role].type not in NUMERIC:
                out.append(f"ring.{role}: type {kinds[role].type} is not numeric")
        for role in ("bin", "verdict", "source"):
            if role in kinds and kinds[role].type not in NUMERIC - {"f32"}:
                out.append(f"ring.{role}: a code table needs an integer type, not {kinds[role].type}")
        if "card" in kinds and kinds["card"].type != "string":
            out.append(f"ring.card: type {kinds['card'].type} is not string")
        if r.verdict is not None and r.source is not None and any(
                isinstance(c, VerdictCode) for c in r.verdict.codes.values()):
            out.append("ring.verdict codes give the source too: leave ring.source out")
        seen: set[WasteCategory] = set()
        for i, b in enumerate(self.bins):
            if b.category in seen:
                out.append(f"bins: {b.category.value} appears twice")
            seen.add(b.category)
            for role, p in self.bin_fields(i):
                if role in ("fill", "total") and p.type not in NUMERIC:
                    out.append(f"{p.name}: type {p.type} is not numeric")
                if role == "door" and p.type not in NUMERIC - {"f32"} | {"bool"}:
                    out.append(f"{p.name}: type {p.type} is neither bool nor an integer code")
        return out
