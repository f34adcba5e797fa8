"""A register dump as text: what `probe --modbus --raw` prints and what a vendor pastes from a Modbus
poll tool, decoded offline through a profile (and the form of the profiles' bad-input corpora).

    profile hb-sc200
    input 100: 200 5 0x0003 0
    discrete 0: 0 1 0 0

The first line names the profile; each other line writes its values (decimal or 0x hex; for coils
and discrete inputs 0 or 1) from that address of that table, over the profile's idle image (every
register 0 but the constant checks). `#` starts a comment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edge.devices.profiles.fields import BIT_TABLES, FUNCTION_CODE, Block, Image


class DumpError(ValueError):
    """A dump that cannot be read; `str()` names the line."""


def parse_dump(text: str) -> tuple[str, list[tuple[str, int, list[int]]]]:
    """(profile name, [(table, address, values)]) of a dump; raise DumpError naming the line."""
    name: str | None = None
    writes: list[tuple[str, int, list[int]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if name is None:
            head, _, rest = line.partition(" ")
            if head != "profile" or not rest.strip():
                raise DumpError(f"dump line {number}: the first line is `profile NAME`")
            name = rest.strip()
            continue
        where, colon, values = line.partition(":")
        parts = where.split()
        if not colon or len(parts) != 2 or parts[0] not in FUNCTION_CODE:
            raise DumpError(f"dump line {number}: not `<{'|'.join(FUNCTION_CODE)}> ADDRESS: VALUES`")
        try:
            address = int(parts[1], 0)
            numbers = [int(v, 0) for v in values.split()]
        except ValueError:
            raise DumpError(f"dump line {number}: an address or value is not a number") from None
        writes.append((parts[0], address, numbers))
    if name is None:
        raise DumpError("an empty dump (the first line is `profile NAME`)")
    return name, writes


def apply_dump(blank: Mapping[str, Sequence[int] | Sequence[bool]], spans: Mapping[str, tuple[int, int]],
               writes: Sequence[tuple[str, int, list[int]]]) -> Image:
    """The idle image with the dump's writes; a write outside what the profile reads is a DumpError."""
    tables = {fn: list(values) for fn, values in blank.items()}
    for table, address, values in writes:
        if table not in spans:
            raise DumpError(f"the profile reads no {table} table")
        start, count = spans[table]
        if address < start or address + len(values) > start + count:
            raise DumpError(f"{table} {address}..{address + len(values) - 1} is outside what the profile "
                            f"reads ({start}..{start + count - 1})")
        tables[table][address - start : address - start + len(values)] = (
            [bool(v) if v in (0, 1) else v for v in values] if table in BIT_TABLES else values)
    return {fn: Block(spans[fn][0], v) for fn, v in tables.items()}


def format_dump(profile: str, image: Image, width: int = 8) -> str:
    """An image as a dump (`parse_dump` reads it back)."""
    lines = [f"profile {profile}"]
    for table, block in image.items():
        values = [int(v) for v in block.values]
        for i in range(0, len(values), width):
            shown = " ".join(str(v) if table in BIT_TABLES else f"0x{v:04X}" for v in values[i : i + width])
            lines.append(f"{table} {block.start + i}: {shown}")
    return "\n".join(lines) + "\n"
