"""Smart sorting station (智能垃圾分类投放站): the reference Modbus map, and the pure decoder of any
vendor profile (`edge/devices/profiles/`: which registers make a drop, a bin level, a door, a verdict).

`StationMap(profile)` decodes one poll (`Image`: each table the profile reads, in one request
per table) into a `StationSnapshot`; `decode_block(registers)` is the reference map's 124
holding registers (profile `wastestream-v1`, below). Every bad value becomes a reason, nothing raises.

The reference map: a vendor may implement it on the station PLC; the edge reads it with ONE function-03
request of `BLOCK_LEN` registers from address 0 (`BLOCK_LEN` <= 125, the Modbus limit), so
the counter and the drop ring it refers to always come from the same instant: no drop can be
half-written between two reads. Stations should serve the same image as input registers
(function 04); the edge uses holding registers. Addresses are 0-based protocol addresses.

Header::

    addr  name          type  scale  meaning
    0     MAP_VERSION   u16   -      layout version, 1
    1     EPOCH         u16   -      changes at every power-up (boot counter or random); a change
                                     tells the edge that DROP_COUNTER restarted from 0
    2     DROP_COUNTER  u16   -      drops since power-up, mod 65536 (wraps 65535 -> 0); it is
                                     also the sequence number of the latest drop
    3     RING_SIZE     u16   -      number of drop slots, 8

Bins, b = 0 kitchen 厨余, 1 recyclable 可回收, 2 hazardous 有害, 3 residual 其他 (the BIN code)::

    4+4b      FILL_PERMILLE  u16  x10  fill level in 0.1 % (0..1000 = 0..100.0 %)
    5+4b      DOOR           u16  -    0 closed, 1 open, 2 fault
    6+4b,7+4b TOTAL_G        u32  g    weight dropped into this bin since power-up (load cell),
                                       wraps at 2**32; word order big-endian: the register at
                                       the lower address holds the HIGH 16 bits
                                       (value = reg[6+4b] << 16 | reg[7+4b])

Drop ring, slot k = seq mod 8 at base 20 + 13k (the last 8 drops; a slot is overwritten by the
drop 8 later)::

    +0        SEQ        u16  -   DROP_COUNTER value of this drop (lets the edge spot stale slots)
    +1        BIN        u16  -   bin code 0..3 as above
    +2        WEIGHT_G   u16  g   weight of this drop, 0..65535 g
    +3        VERDICT    u16  -   camera/inspector verdict: 0 unchecked, 1 correct, 2 incorrect
    +4        SOURCE     u16  -   verdict source: 0 none, 1 camera, 2 inspector
    +5..+12   CARD       8xu16    household card / QR id, 16 ASCII chars (0x20..0x7E), two per
                                  register, high byte first, right-padded with NUL; all NUL =
                                  an anonymous drop (no card presented)

Why a ring rather than a single "last drop" block: the edge polls every second or so, and a
busy station (or a slow RS-485 line, or a reconnect) can see several drops between polls. With
the counter and the last 8 drops in one read, the edge catches up on up to 8 drops per poll;
if the counter advanced by more than 8 it reports the gap (drops that are gone for good).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import msgspec

from contract.events import Verdict, VerdictSource, WasteCategory
from edge.devices.profiles import DEFAULT, ProfileError, load_profile
from edge.devices.profiles.dump import DumpError, apply_dump, parse_dump
from edge.devices.profiles.fields import (
    BIT_TABLES,
    Block,
    FieldError,
    Image,
    Placed,
    encode,
    place,
    raw,
    spans,
    value,
)
from edge.devices.profiles.station import DEFAULT_DOOR_CODES, SortingStationProfile, VerdictCode

MAP_VERSION = 1
RING_SIZE = 8
"""A power of two, so that `seq mod RING_SIZE` stays consistent across the 16-bit wrap."""
COUNTER_MOD = 1 << 16

ADDR_MAP_VERSION = 0
ADDR_EPOCH = 1
ADDR_DROP_COUNTER = 2
ADDR_RING_SIZE = 3
BIN_BASE = 4
BIN_STRIDE = 4
RING_BASE = BIN_BASE + 4 * BIN_STRIDE  # 20
SLOT_LEN = 13
CARD_REGS = 8
CARD_CHARS = 2 * CARD_REGS
BLOCK_LEN = RING_BASE + RING_SIZE * SLOT_LEN  # 124
assert BLOCK_LEN <= 125, "one read request carries at most 125 registers"

BINS: tuple[WasteCategory, ...] = (
    WasteCategory.KITCHEN,
    WasteCategory.RECYCLABLE,
    WasteCategory.HAZARDOUS,
    WasteCategory.RESIDUAL,
)
"""Bin code -> category; the index is the BIN code and the per-bin block number."""
BIN_CODE: dict[WasteCategory, int] = {c: i for i, c in enumerate(BINS)}

VERDICTS: tuple[Verdict, ...] = (Verdict.UNCHECKED, Verdict.CORRECT, Verdict.INCORRECT)
VERDICT_CODE: dict[Verdict, int] = {v: i for i, v in enumerate(VERDICTS)}
SOURCES: tuple[VerdictSource, ...] = (VerdictSource.NONE, VerdictSource.CAMERA, VerdictSource.INSPECTOR)
SOURCE_CODE: dict[VerdictSource, int] = {s: i for i, s in enumerate(SOURCES)}
MAX_FILL_PERMILLE = 1000
MAX_DROP_G = 500_000
"""The contract's bound on one deposit (500 kg): a heavier reading is a fault."""


class Door(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    FAULT = 2


DOOR_OF_NAME = {"closed": Door.CLOSED, "open": Door.OPEN, "fault": Door.FAULT}


def bin_addr(code: int) -> int:
    """First register of bin `code`'s block."""
    return BIN_BASE + BIN_STRIDE * code


def slot_addr(seq: int) -> int:
    """First register of the ring slot that holds drop `seq`."""
    return RING_BASE + SLOT_LEN * (seq % RING_SIZE)


def split_u32(value: int) -> tuple[int, int]:
    """(high word, low word) of an unsigned 32-bit value, the map's big-endian word order."""
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


def join_u32(high: int, low: int) -> int:
    return (high << 16) | low


def encode_card(card: str) -> list[int]:
    """Card id as CARD_REGS registers; raise ValueError if it is not <= 16 printable ASCII chars.

    The error never quotes the card: a card id is a raw household identifier.
    """
    if len(card) > CARD_CHARS or any(not 0x20 <= ord(c) <= 0x7E for c in card):
        raise ValueError(f"a card id of {len(card)} chars is not at most {CARD_CHARS} printable ASCII chars")
    raw_bytes = card.encode("ascii").ljust(CARD_CHARS, b"\0")
    return [(raw_bytes[i] << 8) | raw_bytes[i + 1] for i in range(0, CARD_CHARS, 2)]


def decode_card(regs: Sequence[int], addr: int | None = None) -> tuple[str | None, str | None]:
    """(card id, None) or (None, reason) of the reference map's card registers (high byte first)."""
    where = "card id" if addr is None else f"card id in registers {addr}..{addr + len(regs) - 1}"
    return card_text(b"".join(r.to_bytes(2, "big") for r in regs), where)


def card_text(data: bytes, where: str) -> tuple[str | None, str | None]:
    """(card id, None) or (None, reason). An all-NUL card is the empty string (anonymous).

    The reason says where and what kind of fault (register address, byte offset, length),
    never the card's bytes, not even in hex: it travels to the log, device_status.last_error,
    InfluxDB and alerts, and no raw household identifier may leave the edge.
    """
    text = data.rstrip(b"\0")
    if b"\0" in text:
        return None, f"{where} has a NUL inside (at byte {text.index(0)} of {len(text)} before the padding)"
    bad = [i for i, b in enumerate(text) if not 0x20 <= b <= 0x7E]
    if bad:
        return None, f"{where} has a non-ASCII/control byte (at byte {bad[0]} of {len(text)})"
    return text.decode("ascii").strip(), None


class BinState(msgspec.Struct, frozen=True):
    """One bin; `fill_pct`/`door` are None when the register held an impossible value."""

    bin: WasteCategory
    fill_pct: float | None
    door: Door | None
    total_g: int


class DropSlot(msgspec.Struct, frozen=True):
    """One ring slot. `problem` is set (and the other fields may be None) when it is unusable.

    `card` is the raw household id: it is only ever pseudonymised, so the repr hides it.
    """

    seq: int
    bin: WasteCategory | None
    weight_g: int
    card: str | None
    verdict: Verdict | None
    source: VerdictSource | None
    problem: str | None = None

    def __repr__(self) -> str:
        card = "None" if self.card is None else f"<{len(self.card)} chars>"
        return (f"DropSlot(seq={self.seq}, bin={self.bin}, weight_g={self.weight_g}, card={card}, "
                f"verdict={self.verdict}, source={self.source}, problem={self.problem!r})")


class StationSnapshot(msgspec.Struct, frozen=True):
    """A decoded poll. `usable` False means ignore it all (wrong length or layout)."""

    usable: bool
    epoch: int = 0
    counter: int = 0
    bins: tuple[BinState, ...] = ()
    slots: tuple[DropSlot, ...] = ()
    """Indexed by slot number (seq mod ring_size)."""
    problems: tuple[str, ...] = ()
    ring_size: int = RING_SIZE
    counter_mod: int = COUNTER_MOD
    """The drop counter wraps at this (2**16 or 2**32)."""

    def slot_for(self, seq: int) -> DropSlot:
        return self.slots[seq % self.ring_size]


NOUN = {"holding": "registers", "input": "input registers", "coil": "coils", "discrete": "discrete inputs"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class StationMap:
    """One profile, resolved once: the reads a poll makes (`spans`) and the decoder of its answer."""

    def __init__(self, profile: SortingStationProfile) -> None:
        self.profile = profile
        d = profile.defaults
        self.checks = [(c, place(f"checks[{c.name}]", c, d)) for c in profile.checks]
        self.epoch = place("epoch", profile.epoch, d)
        self.counter = place("drop_counter", profile.drop_counter, d)
        self.bins = [dict(profile.bin_fields(i)) for i in range(len(profile.bins))]
        self.slots = [dict(profile.slot_fields(k)) for k in range(profile.ring.slots)]
        self.spans = spans(profile.placed())
        self.counter_mod = 1 << (16 * self.counter.width)
        ring = profile.ring
        self.verdict_codes: dict[int, VerdictCode] = {}
        if ring.verdict is not None:
            for code, v in ring.verdict.codes.items():
                plain = VerdictCode(v, VerdictSource.NONE) if isinstance(v, Verdict) else v
                self.verdict_codes[code] = plain

    def blank(self) -> dict[str, list[int] | list[bool]]:
        """An all-zero image of every table read, with the checks' constants in place (the
        simulator's power-on state; a tool's "idle" baseline)."""
        out: dict[str, list[int] | list[bool]] = {
            fn: ([False] * count if fn in BIT_TABLES else [0] * count)
            for fn, (_, count) in self.spans.items()}
        for check, p in self.checks:
            regs = encode(p, check.equals)
            i = p.address - self.spans[p.function][0]
            out[p.function][i : i + p.width] = regs  # type: ignore[assignment]
        return out

    def image(self, values: dict[str, list[int] | list[bool]]) -> Image:
        return {fn: Block(self.spans[fn][0], v) for fn, v in values.items()}

    def decode(self, image: Image) -> StationSnapshot:
        """Decode one poll; every bad value becomes a reason, nothing raises."""
        for function, (start, count) in self.spans.items():
            block = image.get(function)
            n = 0 if block is None else len(block.values)
            if block is None or n != count or block.start != start:
                return StationSnapshot(False, problems=(f"read {n} {NOUN[function]}, expected {count}",))
            if function in BIT_TABLES:
                if any(v not in (0, 1) for v in block.values):
                    return StationSnapshot(False, problems=(f"a {function} value is not 0 or 1",))
            elif any(isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 0xFFFF
                     for r in block.values):
                return StationSnapshot(False, problems=("a register value is not a 16-bit unsigned int",))
        try:
            for check, p in self.checks:
                got = value(image, p)
                if got != check.equals:
                    reason = f"{check.name} {_num(got)} is not {_num(check.equals)}"
                    return StationSnapshot(False, problems=(reason,))
            epoch, counter = int(raw(image, self.epoch)), int(raw(image, self.counter))
        except FieldError as exc:
            return StationSnapshot(False, problems=(str(exc),))
        problems: list[str] = []
        bins = tuple(self._bin(image, i, problems) for i in range(len(self.bins)))
        slots = tuple(self._slot(image, k) for k in range(len(self.slots)))
        return StationSnapshot(True, epoch, counter, bins, slots, tuple(problems),
                               ring_size=len(self.slots), counter_mod=self.counter_mod)

    def _bin(self, image: Image, index: int, problems: list[str]) -> BinState:
        fields, category = self.bins[index], self.profile.bins[index].category
        fill: float | None = None
        try:
            fill = value(image, fields["fill"])
        except FieldError as exc:
            problems.append(f"bin {category.value}: {exc}")
        if fill is not None and not 0 <= fill <= 100:
            shown = _num(raw(image, fields["fill"]))  # type: ignore[arg-type]
            problems.append(
                f"bin {category.value}: fill register {shown} ({fill:.1f} %) out of range 0..100 %")
            fill = None
        door: Door | None = None
        if "door" in fields:
            door = self._door(image, index, fields["door"], problems)
        total_g = 0
        if "total" in fields:
            try:
                total_g = round(value(image, fields["total"]) * 1000)
            except FieldError as exc:
                problems.append(f"bin {category.value}: {exc}")
        return BinState(category, fill, door, total_g)

    def _door(self, image: Image, index: int, p: Placed, problems: list[str]) -> Door | None:
        spec, category = self.profile.bins[index].door, self.profile.bins[index].category
        assert spec is not None
        got = raw(image, p)
        if isinstance(got, bool):
            return Door.OPEN if got == spec.open_when else Door.CLOSED
        name = (spec.codes or DEFAULT_DOOR_CODES).get(int(got))
        if name is None:
            problems.append(f"bin {category.value}: unknown door state {_num(got)}")  # type: ignore[arg-type]
            return None
        return DOOR_OF_NAME[name]

    def _slot(self, image: Image, k: int) -> DropSlot:
        fields, ring = self.slots[k], self.profile.ring
        seq = int(raw(image, fields["seq"]))
        reasons: list[str] = []
        bin_code = int(raw(image, fields["bin"]))
        category = ring.bin.codes.get(bin_code)
        if category is None:
            reasons.append(f"unknown bin code {bin_code}")
        weight_g = 0
        try:
            weight_g = round(value(image, fields["weight"]) * 1000)
            if not 0 <= weight_g <= MAX_DROP_G:
                reasons.append(f"weight {weight_g / 1000:g} kg out of range 0..{MAX_DROP_G // 1000} kg")
        except FieldError as exc:
            reasons.append(str(exc))
        verdict: Verdict | None = Verdict.UNCHECKED
        source: VerdictSource | None = VerdictSource.NONE
        if "verdict" in fields:
            code = int(raw(image, fields["verdict"]))
            known = self.verdict_codes.get(code)
            if known is None:
                reasons.append(f"unknown verdict code {code}")
                verdict = source = None
            else:
                verdict, source = known.verdict, known.source
        if ring.source is not None:
            code = int(raw(image, fields["source"]))
            source = ring.source.codes.get(code)
            if source is None:
                reasons.append(f"unknown verdict source code {code}")
        card: str | None = ""
        if "card" in fields:
            p = fields["card"]
            where = f"card id in registers {p.address}..{p.last}"
            card, card_problem = card_text(str(raw(image, p)).encode("latin-1"), where)
            if card_problem:
                reasons.append(card_problem)
        problem = f"drop {seq}: " + "; ".join(reasons) if reasons else None
        return DropSlot(seq, category, weight_g, card, verdict, source, problem)


REFERENCE = StationMap(load_profile("sorting_station", DEFAULT))  # type: ignore[arg-type]
"""The reference map (`wastestream-v1`): what `decode_block` reads."""


def station_map(profile: str = DEFAULT) -> StationMap:
    """The decoder of a profile by name or path (raises ProfileError)."""
    loaded = load_profile("sorting_station", profile)
    assert isinstance(loaded, SortingStationProfile)
    return REFERENCE if profile == DEFAULT else StationMap(loaded)


def decode_block(registers: Sequence[int]) -> StationSnapshot:
    """Decode a BLOCK_LEN-register read of the reference map; every bad value becomes a reason."""
    return REFERENCE.decode({"holding": Block(0, registers)})


class DumpReading(msgspec.Struct, frozen=True):
    """A register dump decoded: `reason` joins every problem of the poll and of the drops its counter
    points at (the last ring-size ones), None when the poll is clean."""

    reason: str | None
    snapshot: StationSnapshot | None = None


def decode_dump(data: bytes) -> DumpReading:
    """A text register dump (`edge.devices.profiles.dump`) through its station profile."""
    try:
        name, writes = parse_dump(data.decode("utf-8"))
        smap = station_map(name)
        snap = smap.decode(apply_dump(smap.blank(), smap.spans, writes))
    except (UnicodeDecodeError, DumpError, ProfileError) as exc:
        return DumpReading(str(exc))
    reasons = list(snap.problems)
    if snap.usable:
        for back in range(min(snap.ring_size, snap.counter)):  # drops 1..counter since power-up
            slot = snap.slot_for(snap.counter - back)
            if slot.seq == snap.counter - back and slot.problem:
                reasons.append(slot.problem)
    return DumpReading("; ".join(reasons) or None, snap)
