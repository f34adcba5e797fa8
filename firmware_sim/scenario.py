"""A city described in one YAML file: facilities, their weighbridges, the vehicle fleet, rates.

The same file drives the simulators (what to send), the edge agents' site configs
(ports, vehicle registry) and the expected results (the ledger). Rates scale with
`rate_scale` so one description serves a one-minute demo and a load test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from contract.events import Ident, WasteCategory
from wastestream.foundation.city import CITIES_DIR, CityError, check_city, city, city_of
from wastestream.foundation.yamlconfig import load_yaml_as

FrameFormat = Literal["toledo", "xk3190"]
FacilityKind = Literal[
    "incineration", "landfill", "food_waste", "kitchen_waste", "transfer", "construction_recycling",
    "disposal_site", "recycling_centre",
]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


class WeighbridgeSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Ident
    format: FrameFormat = "toledo"
    division_kg: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    baudrate: int = 9600


class FacilitySpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Ident
    name: str
    kind: FacilityKind
    capacity_t_per_day: PositiveFloat
    accepts: list[WasteCategory]
    weighbridges: list[WeighbridgeSpec] = []
    lat: float | None = None
    lon: float | None = None


class VehicleSpec(msgspec.Struct, forbid_unknown_fields=True):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    tare_kg: PositiveFloat
    rated_gross_kg: PositiveFloat
    category: WasteCategory
    origin: Ident


class StationIncidentSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A station incident (see firmware_sim.sorting_station): `at_s` seconds after the warm-up."""

    kind: Literal["wrong_bin", "full_bin", "out_of_range"]
    at_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    name: str | None = None
    """Named so a test can look for the alert it should raise."""


class StationSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A smart sorting station (four bins) reached over Modbus TCP or RTU."""

    id: Ident
    transport: Literal["tcp", "rtu"] = "tcp"
    unit_id: Annotated[int, msgspec.Meta(ge=1, le=247)] = 1
    incidents: list[StationIncidentSpec] = []
    profile: str = "wastestream-v1"
    """The station model's register map (edge/devices/profiles/vendors/sorting_station/)."""


class CommunitySpec(msgspec.Struct, forbid_unknown_fields=True):
    """A residential community (小区) with its registered households and sorting stations."""

    id: Ident
    name: str
    district: Ident
    households: Annotated[int, msgspec.Meta(ge=1)]
    stations: list[StationSpec] = []
    accuracy: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.9
    """Share of drops that go into the right bin (the camera's verdict)."""


class GeoPoint(msgspec.Struct, array_like=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class DisposalSiteSpec(msgspec.Struct, forbid_unknown_fields=True):
    """An approved disposal site (消纳场): a geofence polygon, lat/lon vertices."""

    id: Ident
    name: str
    polygon: list[GeoPoint]


class TruckIncidentSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A truck incident (see firmware_sim.truck.Incident); times are simulated seconds after the lead."""

    kind: Literal["dump_outside", "uncovered", "bad_checksum", "torn_sentence", "gps_loss"]
    at_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    duration_s: PositiveFloat = 20.0
    at_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    drop_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    name: str | None = None


class TruckSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A muck truck (渣土车) terminal: GPS on serial, lid/bed/load on an I/O module."""

    id: Ident
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    route: list[GeoPoint]
    """From the origin (a construction site) to a disposal site; driven there and back."""
    origin: Ident
    disposal_site: Ident
    tare_kg: PositiveFloat = 15000
    load_kg: PositiveFloat = 14000
    speed_kmh: PositiveFloat = 40
    time_scale: PositiveFloat = 1.0
    """Simulated seconds per real second, so a trip fits in a demo minute (GPS time runs as fast)."""
    io_profile: str = "wastestream-v1"
    """The I/O module model's register map (edge/devices/profiles/vendors/truck_io/)."""
    incidents: list[TruckIncidentSpec] = []
    terminal: Literal["nmea", "jt808"] = "nmea"
    """nmea: GPS on serial + a Modbus I/O module (twins/truck.py); jt808: a JT/T 808 terminal
    dialling the fleet's gateway over TCP (twins/jt808.py)."""


class Rates(msgspec.Struct, forbid_unknown_fields=True):
    """Visits per weighbridge per minute at rate_scale 1 and the pacing of one visit."""

    visits_per_weighbridge_per_min: PositiveFloat = 4.0
    frame_hz: PositiveFloat = 10.0
    stable_s: PositiveFloat = 2.5
    min_load_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.4
    frame_fault_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    double_weigh_window_s: PositiveFloat = 600.0
    """The edge flags a plate weighed twice within this window; a demo that compresses a day
    into minutes shrinks it, so that only the injected double weighings are flagged."""
    """Chance per visit of a torn frame and, separately, of a bad checksum on the serial line."""
    deposits_per_station_per_min: PositiveFloat = 6.0
    truck_report_interval_s: PositiveFloat = 10.0


class Scenario(msgspec.Struct, forbid_unknown_fields=True):
    city: str
    seed: int = 1
    rate_scale: PositiveFloat = 1.0
    origins: list[Ident] = []
    facilities: list[FacilitySpec] = []
    vehicles: list[VehicleSpec] = []
    communities: list[CommunitySpec] = []
    disposal_sites: list[DisposalSiteSpec] = []
    trucks: list[TruckSpec] = []
    rates: Rates = msgspec.field(default_factory=Rates)

    def vehicles_for(self, facility: FacilitySpec) -> list[VehicleSpec]:
        return [v for v in self.vehicles if v.category in facility.accepts]

    def weighbridge_sites(self) -> list[FacilitySpec]:
        return [f for f in self.facilities if f.weighbridges]

    def station_sites(self) -> list[CommunitySpec]:
        return [c for c in self.communities if c.stations]

    def fleets(self) -> dict[str, list[TruckSpec]]:
        """Trucks grouped by origin: one edge site per construction site's fleet."""
        fleets: dict[str, list[TruckSpec]] = {}
        for truck in self.trucks:
            fleets.setdefault(truck.origin, []).append(truck)
        return fleets


DEFAULT_SCENARIO = CITIES_DIR / "liuzhou" / "scenario.yaml"
"""The example city's scenario (wastestream/foundation/cities/liuzhou/)."""


def load_scenario(path: Path | str | None = None) -> Scenario:
    """`path`, else $WS_CITY's scenario; a city's scenario only if it agrees with the city's rules."""
    try:
        path = Path(path or city().scenario)
        folder = city_of(path)
        if folder is not None:
            check_city(folder)
    except CityError as exc:
        raise ScenarioError(str(exc)) from None
    scenario = load_yaml_as(path, Scenario, ScenarioError, "scenario")
    _check(scenario, path)
    return scenario


def _check(scenario: Scenario, path: Path) -> None:
    ids = [f.id for f in scenario.facilities] + [w.id for f in scenario.facilities for w in f.weighbridges]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ScenarioError(f"{path}: duplicate ids {dupes}")
    plates = [v.plate for v in scenario.vehicles]
    if len(plates) != len(set(plates)):
        raise ScenarioError(f"{path}: duplicate vehicle plates")
    for v in scenario.vehicles:
        if v.tare_kg >= v.rated_gross_kg:
            raise ScenarioError(f"{path}: vehicle {v.plate}: tare_kg must be below rated_gross_kg")
    devices = [st.id for c in scenario.communities for st in c.stations] + [t.id for t in scenario.trucks]
    dupes = sorted({i for i in devices + ids if (devices + ids).count(i) > 1})
    if dupes:
        raise ScenarioError(f"{path}: duplicate station or truck ids {dupes}")
    sites = {t.disposal_site for t in scenario.trucks} - {d.id for d in scenario.disposal_sites}
    if sites:
        raise ScenarioError(f"{path}: trucks go to unknown disposal sites {sorted(sites)}")
    for f in scenario.weighbridge_sites():
        if not scenario.vehicles_for(f):
            raise ScenarioError(f"{path}: facility {f.id} has weighbridges but no vehicle for {f.accepts}")
