"""The city's rules for the stream: capacities, geofences, thresholds. One YAML file a city edits.

Loaded once per worker from the city folder `$WS_CITY` names (wastestream/foundation/cities/<city>/
rules.yaml, checked there against the city's scenario and indicator table), or from `$WS_RULES`.
A bad file fails the worker at start with the file name and the key path of the problem,
never later in the middle of a stream.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import msgspec
from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from contract.events import Ident, WasteCategory
from wastestream.foundation.city import CITIES_DIR, CityError, check_city, city, city_of
from wastestream.foundation.settings import load_settings
from wastestream.foundation.yamlconfig import load_yaml_as

NonNeg = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Pct = Annotated[float, msgspec.Meta(ge=0, le=100)]
Hour = Annotated[int, msgspec.Meta(ge=0, le=24)]

DEFAULT_RULES = CITIES_DIR / "liuzhou" / "rules.yaml"
"""The example city's rules: tests and tools write variants of it."""


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Facility(Base, frozen=True):
    id: Ident
    kind: Literal["incineration", "landfill", "food_waste", "kitchen_waste", "transfer",
                  "construction_recycling", "disposal_site", "recycling_centre"]
    capacity_t_per_day: Positive
    zero_landfill_raw: bool = False
    """全焚烧、零填埋: untreated household waste must not be landfilled here."""


class Community(Base, frozen=True):
    id: Ident
    households: Annotated[int, msgspec.Meta(ge=1)]
    """Registered households: the denominator of the participation rate (参与率)."""


class Geofence(Base, frozen=True):
    """An approved disposal site (消纳场) or a permitted corridor; vertices are [lat, lon]."""

    id: Ident
    polygon: list[tuple[float, float]]

    def contains(self, lat: float, lon: float) -> bool:
        return bool(_prepared(tuple(self.polygon)).covers(Point(lon, lat)))


class TruckPermit(Base, frozen=True):
    """A muck truck's transport permit: hours (local time) and an optional corridor."""

    plate: str
    hours: tuple[Hour, Hour] = (0, 24)
    corridor: Ident | None = None


class SortingRules(Base, frozen=True):
    bin_full_pct: Pct = 90.0
    low_accuracy_pct: Pct = 80.0
    min_deposits_for_accuracy: Annotated[int, msgspec.Meta(ge=1)] = 20


class TransportRules(Base, frozen=True):
    moving_kmh: NonNeg = 5.0
    uncovered_min_s: NonNeg = 60.0
    load_drop_kg: NonNeg = 3000.0
    corridor_tolerance_m: NonNeg = 200.0
    loaded_kg: NonNeg = 1000.0
    """Above this the truck counts as loaded: sealed-rate km and the start of a manifest trip."""


class ManifestRules(Base, frozen=True):
    tolerance_pct: Pct = 5.0
    timeout_s: Positive = 4 * 3600.0


class DeviceHealthRules(Base, frozen=True):
    offline_after_s: Positive = 300.0
    stuck_after_readings: Annotated[int, msgspec.Meta(ge=2)] = 30
    outbox_growing_depth: Annotated[int, msgspec.Meta(ge=1)] = 1000


class District(Base, frozen=True):
    """A district or county (区/县): the unit officers answer for. An alert belongs to the district
    of its site; a site in no district (a city-level facility) is seen by supervisors only."""

    id: Ident
    name: str
    sites: list[Ident] = []


class AlertRules(Base, frozen=True):
    cooldown_s: NonNeg = 1800.0
    """The same kind for the same subject is not pushed again within this time."""


class Rules(Base, frozen=True):
    city: str
    timezone: str = "Asia/Shanghai"
    facilities: list[Facility] = []
    communities: list[Community] = []
    disposal_sites: list[Geofence] = []
    corridors: list[Geofence] = []
    trucks: list[TruckPermit] = []
    districts: list[District] = []
    raw_household_categories: list[WasteCategory] = msgspec.field(
        default_factory=lambda: [WasteCategory.RESIDUAL, WasteCategory.KITCHEN])
    sorting: SortingRules = SortingRules()
    transport: TransportRules = TransportRules()
    manifest: ManifestRules = ManifestRules()
    device_health: DeviceHealthRules = DeviceHealthRules()
    alerts: AlertRules = AlertRules()

    def facility(self, site_id: str) -> Facility | None:
        return _index(self).facilities.get(site_id)

    def community(self, community_id: str) -> Community | None:
        return _index(self).communities.get(community_id)

    def district_of(self, site_id: str) -> str:
        """The id of the district `site_id` is in; '' if none."""
        return _index(self).districts.get(site_id, "")

    def inside_disposal_site(self, lat: float, lon: float) -> str | None:
        """The id of the approved disposal site containing the point, or None."""
        return next((g.id for g in self.disposal_sites if g.contains(lat, lon)), None)


class _Index(NamedTuple):
    rules: Rules
    facilities: dict[str, Facility]
    communities: dict[str, Community]
    districts: dict[str, str]


_indexes: dict[int, _Index] = {}


def _index(rules: Rules) -> _Index:
    """Look-ups by id, built once per Rules (frozen): the agents ask per message (a list scan was
    a tenth of the facility agent's CPU). The first of a repeated id wins, as the scan did."""
    index = _indexes.get(id(rules))
    if index is None or index.rules is not rules:
        districts: dict[str, str] = {}
        for d in rules.districts:
            for site in d.sites:
                districts.setdefault(site, d.id)
        index = _indexes[id(rules)] = _Index(
            rules, {f.id: f for f in reversed(rules.facilities)},
            {c.id: c for c in reversed(rules.communities)}, districts)
    return index


@lru_cache(maxsize=1024)
def _prepared(polygon: tuple[tuple[float, float], ...]) -> PreparedGeometry:
    """Prepared geometry, built once per fence: containment tests run per telemetry message."""
    return prep(Polygon([(lon, lat) for lat, lon in polygon]))


def load_rules(path: Path | str | None = None) -> Rules:
    """`path`, else $WS_RULES, else the rules of $WS_CITY; a city's rules only if its folder agrees."""
    try:
        path = Path(path or load_settings().rules_file or city().rules)
        folder = city_of(path)
        if folder is not None:
            check_city(folder)
    except CityError as exc:
        raise RulesError(str(exc)) from None
    rules = load_yaml_as(path, Rules, RulesError, "rules")
    for fence in [*rules.disposal_sites, *rules.corridors]:
        if len(fence.polygon) < 3:
            raise RulesError(f"{path}: geofence {fence.id} needs at least 3 vertices")
        if not Polygon([(lon, lat) for lat, lon in fence.polygon]).is_valid:
            raise RulesError(f"{path}: geofence {fence.id} is not a valid polygon (self-intersecting?)")
    ids = [f.id for f in rules.facilities]
    if len(ids) != len(set(ids)):
        raise RulesError(f"{path}: duplicate facility ids")
    return rules
