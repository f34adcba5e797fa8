"""Read a YAML config file into a msgspec struct; every failure names the file (and the key path)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec
import yaml

T = TypeVar("T")


def load_yaml_as(path: Path, type_: type[T], error: type[ValueError], what: str) -> T:
    """`yaml.safe_load` then `msgspec.convert`; raise `error` with "<path>: ..." on any failure."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from None
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        raise error(f"{path}: {exc}") from None
