"""Manual inputs (GDP-based, survey, population): values an official supplies, kept apart from site data.

A module of its own, below both the formulas that read it and the table loader that checks the table
against the formulas (config.py), so neither imports the other back.
"""

from typing import Annotated

import msgspec

Year = Annotated[int, msgspec.Meta(ge=2000, le=2100)]


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ManualInput(Base, frozen=True, kw_only=True):
    value: float
    year: Year | None = None
    source: str = ""
    """Who supplied it (statistics bureau, survey, ...)."""


class ManualInputs(Base, frozen=True, kw_only=True):
    """`indicators:` manual values by indicator id; `params:` e.g. population for per-capita."""

    indicators: dict[str, ManualInput] = {}
    params: dict[str, float] = {}
