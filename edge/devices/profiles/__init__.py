"""Vendor device profiles: a Modbus register map as data, one YAML file per vendor model.

A device's site config names its profile (`profile:` on a sorting station, `io_profile:` on a
truck): a shipped one by name (`vendors/<kind>/<name>.yaml`) or a vendor's own file by path. A
profile is decoded strictly (msgspec: unknown keys, unknown types, missing roles and addresses out
of 0..65535 are errors naming the key path) and then checked as a whole (`problems()`: overlapping
registers, a table that needs more than one read, roles of the wrong type); `ProfileError` says
which file and every reason. `profile_schema(kind)` is the JSON Schema a vendor writes against.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import msgspec
import yaml

from edge.devices.profiles.fields import field_problems, overlap_problems, span_problems
from edge.devices.profiles.station import SortingStationProfile
from edge.devices.profiles.truck_io import TruckIoProfile

Profile = SortingStationProfile | TruckIoProfile
KINDS: dict[str, type[SortingStationProfile] | type[TruckIoProfile]] = {
    "sorting_station": SortingStationProfile,
    "truck_io": TruckIoProfile,
}
VENDORS = Path(__file__).resolve().parent / "vendors"
DEFAULT = "wastestream-v1"
"""The project's own map (what stations and I/O modules were read with before profiles)."""


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and each reason."""


def profile_names(kind: str) -> list[str]:
    """The shipped profiles of `kind`."""
    return sorted(p.stem for p in (VENDORS / kind).glob("*.yaml"))


def profile_path(kind: str, name: str) -> Path:
    """A shipped profile by name, else `name` as a file path."""
    if kind not in KINDS:
        raise ProfileError(f"no profiles for kind {kind!r} (kinds: {', '.join(KINDS)})")
    shipped = VENDORS / kind / f"{name}.yaml"
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        if not shipped.is_file():
            raise ProfileError(f"no {kind} profile {name!r} (shipped: {', '.join(profile_names(kind))}; "
                               "or give a path to a .yaml file)")
        return shipped
    return Path(name)


def parse_profile(kind: str, text: str, where: str = "<profile>") -> Profile:
    """Decode and check one profile's YAML text; raise ProfileError with every reason."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: a profile is a mapping, got {type(doc).__name__}")
    if doc.get("kind") != kind:
        raise ProfileError(f"{where}: kind {doc.get('kind')!r} is not {kind!r}")
    try:
        profile = msgspec.convert(doc, KINDS[kind])
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    placed = profile.placed()
    problems = profile.problems() + overlap_problems(placed) + span_problems(placed)
    for p in placed:
        problems += field_problems(p)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ProfileError(f"{where}: " + "; ".join(unique))
    return profile


@functools.lru_cache(maxsize=64)
def load_profile(kind: str, name: str = DEFAULT) -> Profile:
    """A profile by name or path, decoded and checked once per process."""
    path = profile_path(kind, name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{kind} profile {name}: cannot read {path}: {exc}") from None
    profile = parse_profile(kind, text, str(path))
    if "/" not in name and not name.endswith((".yaml", ".yml")) and profile.profile != name:
        raise ProfileError(f"{path}: its name {profile.profile!r} is not its file's {name!r}")
    return profile


def profile_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a `kind` profile, for vendors writing one."""
    if kind not in KINDS:
        raise ProfileError(f"no profiles for kind {kind!r} (kinds: {', '.join(KINDS)})")
    (root,), components = msgspec.json.schema_components([KINDS[kind]])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"wastestream {kind} device profile",
        "description": (
            "A vendor model's Modbus map as data (YAML or JSON). Addresses are 0-based protocol "
            "addresses; word_order/byte_order big/big = ABCD, little/big = CDAB. Beyond this schema the "
            "edge refuses overlapping registers, a table wider than one read and roles of the wrong type."
        ),
        **root,
        "$defs": components,
    }


def profile_schema_json(kind: str) -> str:
    return json.dumps(profile_schema(kind), indent=2, ensure_ascii=False, sort_keys=True)
