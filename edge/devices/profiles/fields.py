"""One Modbus value in a vendor profile: where it is, how it is typed, and how to decode it.

A `Field` names a Modbus table (`function`), a 0-based protocol address (what goes on the wire;
a vendor manual's "40001" is holding address 0), a data type, word and byte order and a linear
`scale`/`offset` (value = raw * scale + offset, as Telegraf's `inputs.modbus` does). Byte and word
order together give the four layouts of a 32-bit value, with ABCD the bytes of the big-endian
value: big/big = ABCD (Modbus' own order), word little = CDAB (many PLCs and meters), byte little
= BADC, both little = DCBA. A string is read register by register: only its byte order applies.

An `Image` is one poll: per table, the first address read and the values; `raw`/`value` read a
field from it and raise `FieldError` with the reason (never anything else), `encode` is the
inverse the simulators use to write a profile's registers.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

Function = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["u16", "i16", "u32", "i32", "f32", "string", "bool"]
Order = Literal["big", "little"]

FUNCTION_CODE: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
BIT_TABLES = frozenset({"coil", "discrete"})
MAX_REGISTERS_PER_READ = 125
"""Modbus: one read request carries at most 125 registers ..."""
MAX_BITS_PER_READ = 2000
"""... or 2000 coils / discrete inputs."""
WORDS: dict[str, int] = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "bool": 1}
STRUCT_CODE: dict[str, str] = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f"}
Address = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class FieldError(ValueError):
    """A value that cannot be read from an image; `str()` is the reason."""


class Field(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A value at `address`. `function`, `word_order` and `byte_order` left out take the profile's
    defaults (`Defaults`); `length` is a string's size in registers (two characters each); `bit`
    reads a bool from one bit (0 = least significant) of a 16-bit register."""

    address: Address
    function: Function | None = None
    type: DataType = "u16"
    length: Annotated[int, msgspec.Meta(ge=1, le=MAX_REGISTERS_PER_READ)] | None = None
    bit: Annotated[int, msgspec.Meta(ge=0, le=15)] | None = None
    word_order: Order | None = None
    byte_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0


class Defaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a field that does not say takes: the table and the word and byte order."""

    function: Function = "holding"
    word_order: Order = "big"
    byte_order: Order = "big"


class ProfileHead(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every profile starts with: its name (the file's), the vendor and model, the defaults."""

    profile: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
    vendor: str
    model: str
    description: str = ""
    defaults: Defaults = Defaults()


@dataclass(frozen=True, slots=True)
class Placed:
    """A field resolved against the profile's defaults and moved to its absolute address (a ring
    slot's fields are relative to the slot)."""

    name: str
    function: Function
    address: int
    type: DataType
    width: int
    """Registers (or bits) it occupies."""
    bit: int | None
    word_order: Order
    byte_order: Order
    scale: float
    offset: float

    @property
    def last(self) -> int:
        return self.address + self.width - 1


def place(name: str, field: Field, defaults: Defaults, base: int = 0) -> Placed:
    """`field` with its defaults filled in, at `base` + its address."""
    function = field.function or defaults.function
    kind = field.type
    width = (field.length or 0) if kind == "string" else WORDS[kind]
    return Placed(name, function, base + field.address, kind, width, field.bit,
                  field.word_order or defaults.word_order, field.byte_order or defaults.byte_order,
                  field.scale, field.offset)


def field_problems(p: Placed) -> list[str]:
    """What is wrong with one placed field on its own (types that its table cannot hold, ...)."""
    where = f"{p.name} ({p.function} {p.address})"
    problems: list[str] = []
    if p.function in BIT_TABLES and p.type != "bool":
        problems.append(f"{where}: a {p.function} holds one bit, so its type must be bool, not {p.type}")
    if p.type == "bool" and p.function not in BIT_TABLES and p.bit is None:
        problems.append(f"{where}: a bool in a {p.function} register needs `bit` (0..15)")
    if p.bit is not None and (p.function in BIT_TABLES or p.type != "bool"):
        problems.append(f"{where}: `bit` is only for a bool in a holding or input register")
    if p.type == "string" and not p.width:
        problems.append(f"{where}: a string needs `length` (registers, two characters each)")
    if p.type != "string" and p.width != WORDS[p.type]:
        problems.append(f"{where}: `length` is only for strings")
    if p.last > 65535:
        problems.append(f"{where}: its {p.width} registers run past address 65535")
    if not (math.isfinite(p.scale) and math.isfinite(p.offset)) or p.scale == 0:
        problems.append(f"{where}: scale must be a non-zero finite number and offset finite")
    return problems


@dataclass(frozen=True, slots=True)
class Block:
    """What one read returned: `values` from address `start` of one table."""

    start: int
    values: Sequence[int] | Sequence[bool]


Image = Mapping[str, Block]
"""Table name (`Function`) -> what was read from it in one poll."""


def spans(fields: Sequence[Placed]) -> dict[str, tuple[int, int]]:
    """Per table, the (first address, count) one read needs to cover `fields`."""
    out: dict[str, tuple[int, int]] = {}
    for function in FUNCTION_CODE:
        mine = [f for f in fields if f.function == function]
        if mine:
            first = min(f.address for f in mine)
            out[function] = (first, max(f.last for f in mine) - first + 1)
    return out


def span_problems(fields: Sequence[Placed]) -> list[str]:
    """Each table is read in one request (one consistent instant), so it must fit in one."""
    problems = []
    for function, (first, count) in spans(fields).items():
        limit = MAX_BITS_PER_READ if function in BIT_TABLES else MAX_REGISTERS_PER_READ
        if count > limit:
            problems.append(f"the {function} fields span addresses {first}..{first + count - 1} ({count}), "
                            f"more than one Modbus read carries ({limit})")
    return problems


def overlap_problems(fields: Sequence[Placed]) -> list[str]:
    """Two fields on one register (or one coil); bools on different bits of a register may share it."""
    whole: dict[tuple[str, int], str] = {}
    bits: dict[tuple[str, int], dict[int, str]] = {}
    problems: list[str] = []
    for f in fields:
        for addr in range(f.address, f.address + f.width):
            key = (f.function, addr)
            if f.bit is None:
                clash = whole.get(key) or next(iter(bits.get(key, {}).values()), None)
                whole.setdefault(key, f.name)
            else:
                clash = whole.get(key) or bits.get(key, {}).get(f.bit)
                bits.setdefault(key, {}).setdefault(f.bit, f.name)
            if clash is not None:
                problems.append(f"{f.name} and {clash} overlap at {f.function} {addr}")
                break
    return problems


def _words(image: Image, p: Placed) -> list[int]:
    block = image.get(p.function)
    if block is None:
        raise FieldError(f"{p.name}: no {p.function} read in this poll")
    i = p.address - block.start
    if i < 0 or i + p.width > len(block.values):
        raise FieldError(f"{p.name}: {p.function} {p.address}..{p.last} is outside the "
                         f"{len(block.values)} values read from {block.start}")
    return list(block.values[i : i + p.width])  # type: ignore[arg-type]


def _bytes(words: Sequence[int], p: Placed) -> bytes:
    if p.word_order == "little" and p.type != "string":  # word order is that of a 32-bit value's halves
        words = list(reversed(words))
    order: Order = p.byte_order
    return b"".join(int(w).to_bytes(2, order) for w in words)


def raw(image: Image, p: Placed) -> int | float | str | bool:
    """The field's raw value: an int or float before scale, a string, or a bool."""
    values = _words(image, p)
    if p.function in BIT_TABLES:
        return bool(values[0])
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF]
    if bad:
        raise FieldError(f"{p.name}: register value {bad[0]!r} is not a 16-bit unsigned int")
    if p.type == "bool":
        assert p.bit is not None
        return bool(values[0] >> p.bit & 1)
    data = _bytes(values, p)
    if p.type == "string":
        return data.decode("latin-1")  # the caller checks the characters; latin-1 keeps every byte
    (value,) = struct.unpack(">" + STRUCT_CODE[p.type], data)
    if p.type == "f32" and not math.isfinite(value):
        raise FieldError(f"{p.name}: {p.function} {p.address}..{p.last} hold {value} (not a finite number)")
    return value  # type: ignore[no-any-return]


def value(image: Image, p: Placed) -> float:
    """A numeric field scaled: raw * scale + offset, to the precision of its type (a 32-bit float
    holds 7 significant digits; 1001 * 0.1 is 100.1, not 100.10000000000001)."""
    number = raw(image, p)
    if isinstance(number, str | bool):
        raise FieldError(f"{p.name}: a {p.type} is not a number")
    return float(f"{number * p.scale + p.offset:.{7 if p.type == 'f32' else 12}g}")


def encode(p: Placed, data: float | str | bool) -> list[int] | list[bool]:
    """The registers (or the one bit) that make the field read `data` (the inverse of `value`)."""
    if p.function in BIT_TABLES:
        return [bool(data)]
    if p.type == "bool":
        raise ValueError("a register bit is written with encode_bit")
    if p.type == "string":
        text = str(data).encode("ascii").ljust(2 * p.width, b"\0")
        if len(text) > 2 * p.width:
            raise ValueError(f"{p.name}: {len(text)} characters do not fit in {p.width} registers")
        payload = text
    else:
        number = (float(data) - p.offset) / p.scale
        packed = number if p.type == "f32" else round(number)
        payload = struct.pack(">" + STRUCT_CODE[p.type], packed)
    order: Order = p.byte_order
    words = [int.from_bytes(payload[i : i + 2], order) for i in range(0, len(payload), 2)]
    return list(reversed(words)) if p.word_order == "little" and p.type != "string" else words


def encode_bit(register: int, p: Placed, on: bool) -> int:
    """`register` with the field's bit set to `on`."""
    assert p.bit is not None
    return register | 1 << p.bit if on else register & ~(1 << p.bit)
