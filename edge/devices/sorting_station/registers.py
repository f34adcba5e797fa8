"""Smart sorting station (智能垃圾分类投放站) Modbus register map, and its pure decoder.

A vendor implements this map on the station PLC; the edge reads it with ONE function-03
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


class Door(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    FAULT = 2


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
    raw = card.encode("ascii").ljust(CARD_CHARS, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, CARD_CHARS, 2)]


def decode_card(regs: Sequence[int], addr: int | None = None) -> tuple[str | None, str | None]:
    """(card id, None) or (None, reason). An all-NUL card is the empty string (anonymous).

    The reason says where and what kind of fault (register address, byte offset, length),
    never the card's bytes, not even in hex: it travels to the log, device_status.last_error,
    InfluxDB and alerts, and no raw household identifier may leave the edge.
    """
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    where = "card id" if addr is None else f"card id in registers {addr}..{addr + len(regs) - 1}"
    text = raw.rstrip(b"\0")
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
    """A decoded register block. `usable` False means ignore it all (wrong length or layout)."""

    usable: bool
    epoch: int = 0
    counter: int = 0
    bins: tuple[BinState, ...] = ()
    slots: tuple[DropSlot, ...] = ()
    """Indexed by slot number (seq mod RING_SIZE)."""
    problems: tuple[str, ...] = ()

    def slot_for(self, seq: int) -> DropSlot:
        return self.slots[seq % RING_SIZE]


def decode_block(registers: Sequence[int]) -> StationSnapshot:
    """Decode a BLOCK_LEN-register read; every bad value becomes a reason, nothing raises."""
    if len(registers) != BLOCK_LEN:
        return StationSnapshot(False, problems=(f"read {len(registers)} registers, expected {BLOCK_LEN}",))
    if any(not isinstance(r, int) or not 0 <= r <= 0xFFFF for r in registers):
        return StationSnapshot(False, problems=("a register value is not a 16-bit unsigned int",))
    regs = list(registers)
    if regs[ADDR_MAP_VERSION] != MAP_VERSION:
        return StationSnapshot(
            False, problems=(f"map version {regs[ADDR_MAP_VERSION]} is not {MAP_VERSION}",)
        )
    if regs[ADDR_RING_SIZE] != RING_SIZE:
        return StationSnapshot(False, problems=(f"ring size {regs[ADDR_RING_SIZE]} is not {RING_SIZE}",))
    problems: list[str] = []
    bins = tuple(_decode_bin(regs, code, problems) for code in range(len(BINS)))
    bases = [RING_BASE + SLOT_LEN * k for k in range(RING_SIZE)]
    slots = tuple(_decode_slot(regs[base : base + SLOT_LEN], base) for base in bases)
    return StationSnapshot(True, regs[ADDR_EPOCH], regs[ADDR_DROP_COUNTER], bins, slots, tuple(problems))


def _decode_bin(regs: list[int], code: int, problems: list[str]) -> BinState:
    base = bin_addr(code)
    category = BINS[code]
    permille, door_code = regs[base], regs[base + 1]
    fill: float | None = permille / 10
    if permille > MAX_FILL_PERMILLE:
        problems.append(
            f"bin {category.value}: fill register {permille} ({permille / 10:.1f} %) "
            f"out of range 0..{MAX_FILL_PERMILLE}"
        )
        fill = None
    door: Door | None = None
    try:
        door = Door(door_code)
    except ValueError:
        problems.append(f"bin {category.value}: unknown door state {door_code}")
    return BinState(category, fill, door, join_u32(regs[base + 2], regs[base + 3]))


def _decode_slot(r: Sequence[int], base: int) -> DropSlot:
    seq, bin_code, weight_g, verdict_code, source_code = r[0], r[1], r[2], r[3], r[4]
    reasons: list[str] = []
    category = BINS[bin_code] if bin_code < len(BINS) else None
    if category is None:
        reasons.append(f"unknown bin code {bin_code}")
    verdict = VERDICTS[verdict_code] if verdict_code < len(VERDICTS) else None
    if verdict is None:
        reasons.append(f"unknown verdict code {verdict_code}")
    source = SOURCES[source_code] if source_code < len(SOURCES) else None
    if source is None:
        reasons.append(f"unknown verdict source code {source_code}")
    card, card_problem = decode_card(r[5 : 5 + CARD_REGS], base + 5)
    if card_problem:
        reasons.append(card_problem)
    problem = f"drop {seq}: " + "; ".join(reasons) if reasons else None
    return DropSlot(seq, category, weight_g, card, verdict, source, problem)
