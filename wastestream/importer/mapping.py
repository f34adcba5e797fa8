"""The column mapping of one scale-house export (YAML, validated with msgspec)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.\-]+$")]


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the field."""


class Columns(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Header of the export's column for each field ("" = not in the export: use the default)."""

    plate: str
    time: str
    gross: str
    tare: str
    net: str = ""
    category: str = ""
    origin: str = ""
    site: str = ""
    device: str = ""
    ticket: str = ""


class Defaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    site: Ident | None = None
    device: Ident | None = None
    origin: Ident = "unknown"
    category: str | None = None


class Mapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    columns: Columns
    units: Literal["kg", "t"] = "kg"
    timezone: str = "Asia/Shanghai"
    time_formats: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M",
                                     "%Y/%m/%d %H:%M")
    """strptime formats tried in order (ISO 8601 is always accepted); naive times are `timezone`."""
    defaults: Defaults = Defaults()
    categories: dict[str, str] = {}
    """The export's category text -> contract category (kitchen, residual, construction, ...)."""
    sites: dict[str, Ident] = {}
    """The export's site/facility text -> site id (e.g. 静脉产业园焚烧厂: lz-jm-incinerator)."""
    origins: dict[str, Ident] = {}
    devices: dict[str, Ident] = {}


def load_mapping(path: Path | str) -> Mapping:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping = msgspec.convert(raw, Mapping)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise MappingError(f"{path}: {exc}") from None
    if not (mapping.columns.site or mapping.defaults.site):
        raise MappingError(f"{path}: columns.site or defaults.site is needed")
    if not (mapping.columns.device or mapping.defaults.device):
        raise MappingError(f"{path}: columns.device or defaults.device is needed")
    return mapping
