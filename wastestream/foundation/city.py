"""One folder per city (cities/<city>/): its stream rules, indicator table and simulator scenario.

`rules.yaml` (schema: stream/rules.py) is what the stream enforces; `scenario.yaml` (schema:
firmware_sim/scenario.py) is what the simulator sends; `indicators.yaml` (schema:
wastestream/indicators/config.py) is the plan's table the report reads. A city with only an indicator
table (a plan transcribed, no sites yet) is a folder with that one file.

The loader lives in the foundation so the stream, the simulator and the read side all find a city the
same way (WS_CITY) without importing each other. The files repeat facilities, capacities, households,
geofences and trucks; `check_city` (run whenever the stream or the simulator loads a city) refuses a
folder whose scenario or indicator table disagrees with its rules, naming the file and the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wastestream.foundation.settings import load_settings

CITIES_DIR = Path(__file__).parent / "cities"
DEFAULT_TIMEZONE = "Asia/Shanghai"


class CityError(ValueError):
    """A city that cannot be used: unknown, or its files disagree; the message names file and entry."""


@dataclass(frozen=True)
class City:
    name: str
    folder: Path

    @property
    def rules(self) -> Path:
        return self.folder / "rules.yaml"

    @property
    def indicators(self) -> Path:
        return self.folder / "indicators.yaml"

    @property
    def scenario(self) -> Path:
        return self.folder / "scenario.yaml"

    def timezone(self) -> str:
        """The city's local time zone (rules.yaml `timezone:`): local days, dashboards, pushes."""
        if not self.rules.exists():
            return DEFAULT_TIMEZONE
        return str(_read(self.rules).get("timezone") or DEFAULT_TIMEZONE)


def available_cities(with_file: str = "indicators.yaml") -> list[str]:
    """Cities whose folder has `with_file` (every city has an indicator table; some have no sites)."""
    return sorted(p.parent.name for p in CITIES_DIR.glob(f"*/{with_file}"))


def city(name: str | None = None) -> City:
    """The named city, else WS_CITY's; unknown names are refused with the list of known ones."""
    name = name or load_settings().city
    folder = CITIES_DIR / name
    if not name.replace("_", "").replace("-", "").isalnum() or not folder.is_dir():
        raise CityError(f"no city {name!r} in {CITIES_DIR} (cities: {', '.join(available_cities())})")
    return City(name, folder)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CityError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else {}


def _by_id(items: Any, key: str = "id") -> dict[str, dict[str, Any]]:
    return {str(i[key]): i for i in items or [] if isinstance(i, dict) and key in i}


SHARED = (("facilities", "facility", ("kind", "capacity_t_per_day")),
          ("communities", "community", ("households",)),
          ("disposal_sites", "disposal site", ("polygon",)))
"""What a scenario repeats from the rules: (section, its name, the fields that must be equal)."""


def _plain(value: Any) -> Any:
    """Lists and tuples alike (a polygon's [lat, lon] pairs), so equal data compares equal."""
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def disagreements(rules: dict[str, Any], scenario: dict[str, Any], indicators: dict[str, Any]) -> list[str]:
    """What the scenario and the indicator table say differently from the rules (empty: they agree)."""
    problems: list[str] = []
    for section, noun, fields in SHARED:
        ruled = _by_id(rules.get(section))
        for eid, entry in _by_id(scenario.get(section)).items():
            rule = ruled.get(eid)
            if rule is None:
                problems.append(f"scenario {noun} {eid} is not in rules.yaml {section}")
                continue
            problems += [f"scenario {noun} {eid}: {key} {entry.get(key)!r}, rules.yaml {rule.get(key)!r}"
                         for key in fields if _plain(entry.get(key)) != _plain(rule.get(key))]
    facilities = _by_id(rules.get("facilities"))
    permits = set(_by_id(rules.get("trucks"), "plate"))
    for plate in _by_id(scenario.get("trucks"), "plate"):
        if plate not in permits:
            problems.append(f"scenario truck {plate} has no permit in rules.yaml trucks")
    for fid in (indicators.get("facility_names") or {}):
        if facilities and fid not in facilities:
            problems.append(f"indicators.yaml facility_names: {fid} is not in rules.yaml facilities")
    for file, data in (("scenario.yaml", scenario), ("indicators.yaml", indicators)):
        if data.get("city") not in (None, rules.get("city")):
            problems.append(f"{file} is for city {data.get('city')!r}, rules.yaml for {rules.get('city')!r}")
    return problems


def city_of(path: Path) -> City | None:
    """The city whose folder holds this file, or None (a file of one's own, e.g. a test's variant)."""
    folder = path.resolve().parent
    return City(folder.name, folder) if folder.parent == CITIES_DIR.resolve() else None


def check_city(c: City) -> City:
    """Refuse a city folder whose files disagree (a load-time check: the stream and simulator call it)."""
    if not c.rules.exists():
        return c
    problems = disagreements(_read(c.rules),
                             _read(c.scenario) if c.scenario.exists() else {},
                             _read(c.indicators) if c.indicators.exists() else {})
    if problems:
        raise CityError(f"{c.folder}: " + "; ".join(problems))
    return c
