"""A vendor profile: where a terminal's load, cover (密闭) and bed lift (举升) bits are.

JT/T 808 fixes the load state (status bits 8-9: 00 empty, 01 half, 11 full) and leaves cover and
bed lift to the vendors: one puts them in reserved bits of the extended signal word (item 0x25),
another in reserved status bits, a third in the IO word (0x2A) or a private item. A profile is
a YAML file (schema `Profile`, checked: bits within their word, no bit used twice, the standard's
own status bits left alone) named by file path or by the name of one in `profiles/`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edge.devices.jt808.messages import ITEM_EXT_SIGNAL, ITEM_IO, Location
from wastestream.foundation.yamlconfig import load_yaml_as

PROFILES = Path(__file__).resolve().parent / "profiles"
Word = Literal["status", "alarm", "ext_signal", "io"]
LoadState = Literal["empty", "half", "full"]
WORD_BITS: dict[str, int] = {"status": 32, "alarm": 32, "ext_signal": 32, "io": 16}
STANDARD_STATUS_BITS = frozenset({0, 1, 2, 3, 5})  # ACC, positioned, south, west, encrypted
_ITEM_OF = {"ext_signal": ITEM_EXT_SIGNAL, "io": ITEM_IO}


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and what is wrong."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Bit(_Strict, frozen=True, kw_only=True):
    """One on/off signal: `bit` of `word`; `active: clear` when a cleared bit means on."""

    word: Word
    bit: Annotated[int, msgspec.Meta(ge=0, le=31)]
    active: Literal["set", "clear"] = "set"


class LoadBits(_Strict, frozen=True, kw_only=True):
    """The load state: a 2-bit field of the status word, its values, and the fraction of the
    truck's payload each state stands for."""

    low_bit: Annotated[int, msgspec.Meta(ge=0, le=30)] = 8
    values: dict[int, LoadState] = msgspec.field(default_factory=lambda: {0: "empty", 1: "half", 3: "full"})
    half_fraction: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.5


class LoadItem(_Strict, frozen=True, kw_only=True):
    """A private additional item carrying the weighed load (an unsigned big-endian integer)."""

    id: Annotated[int, msgspec.Meta(ge=0x01, le=0xFF)]
    kg_per_unit: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class Profile(_Strict, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    description: str = ""
    load: LoadBits = msgspec.field(default_factory=LoadBits)
    cover_closed: Bit
    bed_raised: Bit
    load_item: LoadItem | None = None

    def __post_init__(self) -> None:
        used: dict[tuple[str, int], str] = {}
        for name in ("cover_closed", "bed_raised"):
            sig: Bit = getattr(self, name)
            if sig.bit >= WORD_BITS[sig.word]:
                raise ValueError(f"{name}: bit {sig.bit} is outside the {WORD_BITS[sig.word]}-bit"
                                 f" {sig.word} word")
            if sig.word == "status" and sig.bit in STANDARD_STATUS_BITS:
                raise ValueError(f"{name}: status bit {sig.bit} is the standard's own"
                                 " (ACC, fix, S/W, encryption)")
            if (sig.word, sig.bit) in used:
                raise ValueError(f"{name}: {sig.word} bit {sig.bit} is already {used[(sig.word, sig.bit)]}")
            used[(sig.word, sig.bit)] = name
        low = self.load.low_bit
        for b in (low, low + 1):
            if ("status", b) in used:
                raise ValueError(f"load: status bit {b} is also {used[('status', b)]}")
            if b in STANDARD_STATUS_BITS:
                raise ValueError(f"load: status bit {b} is the standard's own")
        bad = sorted(k for k in self.load.values if not 0 <= k <= 3)
        if bad:
            raise ValueError(f"load.values: {bad} is not a 2-bit value (0-3)")


@dataclass(frozen=True, slots=True)
class Reading:
    """What a location says about the truck body, through a profile; None: not in this report."""

    load: LoadState | None
    cover_closed: bool | None
    bed_raised: bool | None
    load_kg: float | None


def _word(loc: Location, word: str) -> int | None:
    if word == "status":
        return loc.status
    if word == "alarm":
        return loc.alarm
    return loc.dword(_ITEM_OF[word])


def _bit(loc: Location, sig: Bit) -> bool | None:
    value = _word(loc, sig.word)
    if value is None:
        return None
    on = bool(value >> sig.bit & 1)
    return on if sig.active == "set" else not on


def read(profile: Profile, loc: Location) -> Reading:
    """The load state, cover, bed and (if the vendor sends it) weighed load of one report."""
    field_value = loc.status >> profile.load.low_bit & 0b11
    load_kg = None
    if profile.load_item is not None and profile.load_item.id in loc.items:
        load_kg = loc.dword(profile.load_item.id) * profile.load_item.kg_per_unit  # type: ignore[operator]
    return Reading(profile.load.values.get(field_value), _bit(loc, profile.cover_closed),
                   _bit(loc, profile.bed_raised), load_kg)


@functools.lru_cache(maxsize=64)
def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (`profiles/<name>.yaml`) or a file path; ProfileError names why."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILES / f"{name_or_path}.yaml"
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
            raise ProfileError(f"no vendor profile {name_or_path!r} (shipped: {shipped};"
                               " or give a .yaml path)")
    try:
        return load_yaml_as(path, Profile, ProfileError, "the vendor profile")
    except ValueError as exc:  # __post_init__'s checks surface as ValidationError (a ValueError)
        raise ProfileError(str(exc)) from None
