"""The dash city raises EXACTLY the alerts its scenario explains: none missing, none extra, each once.

Enforcement officers are paged on every alert, so a false alert is a defect just as a missed one
is. The `city_run` fixture has played tests/fixtures/dash_city.yaml through the real pipeline and
the alert service; this test derives, from the run's own truth (the simulator's ledger, the
scenario, the run's stream rules: never from the pipeline's output), every alert the rules must
raise, applies the alert service's de-duplication (one primary per kind and subject within the
cool-down, later ones counted as repeats), and compares with the service's SQLite store:
`(kind, subject) -> counts of its primary alerts` must be equal.

Where the truth cannot decide (a sorting-station fill the edge may or may not have polled
between two drops less than a poll apart; a device the edge had not yet judged offline when
the run was torn down), the derivation yields the set of outcomes the truth allows and says why;
nowhere is the check a superset.
"""

from __future__ import annotations

import inspect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
import yaml

from contract.events import Verdict
from edge.devices.sorting_station.station import SortingStationConfig
from firmware_sim import truck as truck_sim
from firmware_sim.sorting_station import BIN_CAPACITY_G, COLLECT_AT_PCT, StationSim, run_station_sim
from firmware_sim.twins.sorting_station import STATION_POLL_S
from firmware_sim.twins.truck import truck_clock_span_s
from stream.agents.device_health_state import edge_device_id
from tests.integration.conftest import DURATION_S, CityRun
from tests.integration.test_dashboards_proof import Truth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

Key = tuple[str, str]
"""(kind, subject): what the alert service de-duplicates on."""
Counts = tuple[int, ...]
"""Per primary alert of a key, in raising order: how many alerts it stands for (1 + repeats)."""


@dataclass(frozen=True)
class Raised:
    kind: str
    subject: str
    ns: int
    """When the stream stamps it (the alert's `ts`): what the cool-down compares."""


def ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1e9)


def cooldown_counts(raised: Iterable[Raised], cooldown_s: float) -> dict[Key, Counts]:
    """The store's de-duplication (stream/alerting/store.py `_ingest`): an alert within the cool-down
    of its key's latest primary is a repeat of it. (The fixture closes one alert only after the run,
    so no primary is closed while the scenario's alerts arrive.)"""
    out: dict[Key, list[tuple[int, int]]] = defaultdict(list)
    for r in sorted(raised, key=lambda r: r.ns):
        primaries = out[(r.kind, r.subject)]
        if primaries and abs(r.ns - primaries[-1][0]) < cooldown_s * 1e9:
            primaries[-1] = (primaries[-1][0], primaries[-1][1] + 1)
        else:
            primaries.append((r.ns, 1))
    return {k: tuple(n for _, n in v) for k, v in out.items()}


def decide(value: float, threshold: float, margin: float, what: str) -> bool:
    """value > threshold, where the pipeline measures value to within `margin`: the fixture must
    keep its incidents clear of the rule's threshold, or the truth cannot decide."""
    assert abs(value - threshold) > margin, f"{what}: {value:g} is within {margin:g} of {threshold:g}"
    return value > threshold


# --- weighbridges: integrity flags, capacity, zero landfill ---------------------------------------

def weighbridge_alerts(t: Truth) -> list[Raised]:
    """One `weighbridge_<flag>` per flag of each ticket (stream/agents/integrity.py), subject the
    plate: the ledger's flags are the ones the edge must set (double weighing: the kitchen truck is
    the food plant's only vehicle and the residual fleet is smaller than the window allows, so
    trucks come back to a bridge within `double_weigh_window_s`). Clock skew is not simulated."""
    return [Raised(f"weighbridge_{flag}", w["plate"], ns(w["finished"]))
            for w in t.weighings for flag in dict.fromkeys(w["flags"])]


def facility_alerts(t: Truth) -> list[Raised]:
    """`over_capacity` once per facility and local day above its design capacity; and
    `raw_waste_landfilled` per inbound ticket of raw household waste at a zero-landfill facility
    (stream/agents/tonnage_rules.py; the edge's tickets are all inbound)."""
    zone = ZoneInfo(t.rules.timezone)
    day_kg: dict[tuple[str, object], float] = defaultdict(float)
    first_over: dict[tuple[str, object], int] = {}
    out = []
    for w in sorted(t.weighings, key=lambda w: w["finished"]):
        key = (w["site_id"], datetime.fromisoformat(w["finished"]).astimezone(zone).date())
        day_kg[key] += w["net_kg"]
        facility = t.rules.facility(w["site_id"])
        assert facility is not None, w["site_id"]
        if day_kg[key] / 1000 > facility.capacity_t_per_day and key not in first_over:
            first_over[key] = ns(w["finished"])
            out.append(Raised("over_capacity", w["site_id"], ns(w["finished"])))
        if facility.zero_landfill_raw and w["category"] in t.rules.raw_household_categories:
            out.append(Raised("raw_waste_landfilled", w["plate"], ns(w["finished"])))
    return out


# --- sorting stations: accuracy and full bins -------------------------------------------------------

def station_records(t: Truth, station: str) -> list[dict[str, object]]:
    """The station's drops and incidents, in the order the station made them (the ledger's)."""
    kinds = ("deposit", "station_incident")
    return [r for r in t.run.ledger if r["kind"] in kinds and r["device_id"] == station]


def low_accuracy_alerts(t: Truth) -> list[Raised]:
    """`low_sorting_accuracy` (stream/agents/sorting_state.py): once per station and local day, at
    the first deposit after which the day has enough checked deposits and is below the threshold.
    Not an incident: a community's camera accuracy (dash: 0.8 at d-river) against an 80 % bar, so
    the station's random verdicts decide, and the ledger has every verdict in seq order."""
    rules, zone = t.rules.sorting, ZoneInfo(t.rules.timezone)
    out = []
    for station in {d["device_id"] for d in t.deposits}:
        days: dict[object, list[int]] = defaultdict(lambda: [0, 0, 0])  # checked, correct, alerted
        for d in sorted((d for d in t.deposits if d["device_id"] == station), key=lambda d: d["seq"]):
            c = days[datetime.fromisoformat(d["ts"]).astimezone(zone).date()]
            if d["verdict"] != Verdict.UNCHECKED.value:
                c[0] += 1
                c[1] += d["verdict"] == Verdict.CORRECT.value
            enough = c[0] >= rules.min_deposits_for_accuracy
            if not c[2] and enough and 100 * c[1] / c[0] < rules.low_accuracy_pct:
                c[2] = 1
                out.append(Raised("low_sorting_accuracy", station, ns(d["ts"])))
    return out


POLL_SLACK_S = 0.5
"""A healthy poll cycle takes `poll_s` plus the read: milliseconds on loopback Modbus TCP, about
0.27 s for the 124-register block on a 9600 Bd RTU line."""


def bin_full_counts(t: Truth) -> dict[Key, set[Counts]]:
    """`bin_full` once per fill cycle of a bin at or above `bin_full_pct` (re-armed below it), subject
    `station/bin`: the `full_bin` incident fills one bin (the ledger names it), and drops fill bins
    from the station's seeded initial level (StationSim: what the simulator starts from), a crew
    emptying a bin at COLLECT_AT_PCT `collect_delay_s` later (a collection after the station's
    last drop only re-arms: it changes no count, and may be cancelled by the run's end).

    The stream sees only what the edge reports: a level that moved by `fill_step_pct` since its
    last report, read by a poll at least every `poll_s` + POLL_SLACK_S once polling started. Which
    levels a poll caught is not in the ledger, so every choice those bounds allow is followed and
    the set of possible alert counts kept (one count, unless drops came less than a poll apart
    near the threshold)."""
    edge = {f.name: f.default for f in msgspec.structs.fields(SortingStationConfig)}
    collect_s = inspect.signature(run_station_sim).parameters["collect_delay_s"].default
    assert edge["heartbeat_s"] > DURATION_S, "the run is shorter than the edge's level heartbeat"
    out: dict[Key, set[Counts]] = {}
    for community in t.scenario.communities:
        for spec in community.stations:
            sim = StationSim(spec, community, seed=t.scenario.seed)  # as firmware_sim/city.py seeds it
            grams = {c.value: g for c, g in sim.in_bin_g.items()}
            timeline = [(float("-inf"), dict(grams))]  # (since, grams per bin)
            collect_at: dict[str, float] = {}
            for r in station_records(t, spec.id):
                now = datetime.fromisoformat(r["ts"]).timestamp()
                for b, at in sorted(collect_at.items(), key=lambda kv: kv[1]):
                    if at <= now:
                        grams[b] = 0
                        del collect_at[b]
                        timeline.append((at, dict(grams)))
                if r["kind"] == "deposit":
                    grams[r["bin"]] += round(r["kg"] * 1000)
                else:
                    assert r["incident"] == "full_bin", f"{r['incident']}: not derived here"
                    grams[r["bin"]] = BIN_CAPACITY_G
                timeline.append((now, dict(grams)))
                for b, g in grams.items():
                    if 100 * g / BIN_CAPACITY_G >= COLLECT_AT_PCT:
                        collect_at.setdefault(b, now + collect_s)
            ends = [since for since, _ in timeline[1:]] + [float("inf")]
            for b in grams:
                levels = [(end, round(min(100.0, 100 * g[b] / BIN_CAPACITY_G) * 10) / 10)
                          for (_, g), end in zip(timeline, ends, strict=True)]
                possible = _possible_alerts(levels, edge["fill_step_pct"], STATION_POLL_S + POLL_SLACK_S,
                                            t.rules.sorting.bin_full_pct)
                out[("bin_full", f"{spec.id}/{b}")] = {(n,) if n else () for n in possible}
    return out


def _possible_alerts(levels: list[tuple[float, float]], step: float, period: float,
                     threshold: float) -> set[int]:
    """Alert counts over the levels (until, %) the polls may have read: the first (the initial
    level: the edge's baseline, firmware_sim/twins/base.py LEAD_S) and the last are read; after a read
    the next poll comes within `period` of the level's end at the latest (the loosest bound).
    Each read goes through the edge's report rule and sorting_state.BinState: alert at
    >= threshold when armed, re-armed below it."""
    possible = {(None, True, 0, float("-inf"))}  # (last reported, armed, alerts, next poll by)
    for until, value in levels:
        after = set()
        for last, armed, n, due in possible:
            if due >= until and until != float("inf"):
                after.add((last, armed, n, due))  # no poll while this level lasted
            if last is not None and abs(value - last) < step:
                after.add((last, armed, n, until + period))  # read, not reported
            elif value >= threshold and armed:
                after.add((value, False, n + 1, until + period))
            else:
                after.add((value, armed or value < threshold, n, until + period))
        possible = after
    return {n for _, _, n, _ in possible}


# --- muck trucks: dumping, lid, manifests, permits ------------------------------------------------

def truck_alerts(t: Truth) -> list[Raised]:
    """From the ledger's truck entries (stream/agents/transport_state.py, manifest_state.py):
    - `illegal_dumping`: each dump (bed raised) at a place outside every disposal geofence;
    - `uncovered_transport`: a lid-open window overlapping driving for more than `uncovered_min_s`
      (the truck drives from its first STOP_S until it stops to dump, see firmware_sim/truck.py);
    - `manifest_mismatch`: each legal unload inside a geofence whose load (what was left on the
      truck) is more than `tolerance_pct` below the load it left with (the sim loads `load_kg`):
      the dump_outside truck arrives lighter.
    Route/hours: the run's permits allow every hour and no corridor is set, so none can be
    raised; manifests cannot time out as missing: the trucks' clocks span less than `timeout_s`.
    Stuck GPS: the simulated trucks always move when they drive (speed >= 5 km/h)."""
    tr = t.rules.transport
    for permit in t.rules.trucks:
        assert tuple(permit.hours) == (0, 24) and permit.corridor is None, f"{permit}: not derived here"
    out = []
    for spec in t.scenario.trucks:
        fleet = yaml.safe_load((t.run.run_dir / "edge" / f"fleet-{spec.origin}.yaml").read_text("utf-8"))
        terminal = next(d for d in fleet["devices"] if d["id"] == spec.id)
        interval_s = terminal["report_interval_s"] * spec.time_scale  # simulated s between reports
        assert truck_clock_span_s(spec, DURATION_S) < t.rules.manifest.timeout_s
        entries = [r for r in t.run.ledger if r["kind"] == "truck" and r["device_id"] == spec.id]
        dumps = [e for e in entries if e["event"] in ("dump", "dump_outside")]
        for d in dumps:
            if t.rules.inside_disposal_site(d["lat"], d["lon"]) is None:
                out.append(Raised("illegal_dumping", spec.plate, ns(d["start_ts"])))
            else:
                short = 100 * (spec.load_kg - d["load_before_kg"]) / spec.load_kg
                if decide(short, t.rules.manifest.tolerance_pct, 1.0, f"{spec.id} manifest"):
                    out.append(Raised("manifest_mismatch", spec.plate, ns(d["start_ts"])))
        # driving legs (simulated s): from the start's stop to each dump's stop, up to the first
        # unload at the site (the way back and the reloading are not in the ledger)
        legs, since, site_dump = [], float(truck_sim.STOP_S), False
        for d in sorted(dumps, key=lambda d: d["start_s"]):
            legs.append((since, d["start_s"] - truck_sim.STOP_S))
            since, site_dump = d["end_s"] + truck_sim.STOP_S, d["event"] == "dump"
            if site_dump:
                break
        if not site_dump:
            legs.append((since, float("inf")))
        for e in (e for e in entries if e["event"] == "uncovered"):
            assert e["end_s"] <= legs[-1][1], f"{e}: after the first unload, driving is not derived here"
            longest = max(min(b, e["end_s"]) - max(a, e["start_s"]) for a, b in legs)
            if decide(longest, tr.uncovered_min_s, interval_s, f"{spec.id} uncovered"):
                out.append(Raised("uncovered_transport", spec.plate, ns(e["start_ts"])))
    return out


# --- the run's end -----------------------------------------------------------------------------------

def teardown_offline(t: Truth) -> dict[Key, set[Counts]]:
    """`device_offline` at the end of the run: the simulator exits (its devices vanish) while the
    edge agents run on until the fixture stops them, and then each edge says `offline`. No
    incident of the dash city takes a device offline, so every `device_offline` must be one of
    these. A weighbridge's serial port fails at once, so its edge reports it offline at once
    (required); a station is judged offline only after a few silent polls, and an edge's own
    offline is delivered only if the bridge and worker are still up when the fixture stops it:
    both depend on how long the teardown takes (allowed, at most once). A truck terminal whose GPS
    and I/O module are gone keeps reporting its last reading (edge/devices/truck/terminal.py), so
    its edge does not judge it offline today (allowed, not required)."""
    out: dict[Key, set[Counts]] = {}
    for f in t.scenario.weighbridge_sites():
        out.update({("device_offline", b.id): {(1,)} for b in f.weighbridges})
    sites = [f.id for f in t.scenario.weighbridge_sites()] + [c.id for c in t.scenario.station_sites()]
    sites += [f"fleet-{origin}" for origin in t.scenario.fleets()]
    maybe = [s.id for c in t.scenario.station_sites() for s in c.stations]
    maybe += [tr.id for tr in t.scenario.trucks] + [edge_device_id(s) for s in sites]
    out.update({("device_offline", d): {(), (1,)} for d in maybe})
    return out


def expected_alerts(t: Truth) -> dict[Key, set[Counts]]:
    raised = [*weighbridge_alerts(t), *facility_alerts(t), *low_accuracy_alerts(t), *truck_alerts(t)]
    expected = {k: {v} for k, v in cooldown_counts(raised, t.rules.alerts.cooldown_s).items()}
    for key, allowed in [*bin_full_counts(t).items(), *teardown_offline(t).items()]:
        assert key not in expected, key
        expected[key] = allowed
    return expected


@pytest.fixture(scope="module")
def truth(city_run: CityRun) -> Truth:
    return Truth(city_run)


def test_store_holds_exactly_the_explained_alerts(truth: Truth) -> None:
    expected = expected_alerts(truth)
    got: dict[Key, Counts] = {}
    for a in sorted(truth.alerts, key=lambda a: a["raised_ns"]):
        key = (a["kind"], a["subject"])
        got[key] = (*got.get(key, ()), a["count"])
    wrong = {k: (got.get(k, ()), sorted(expected.get(k, {()}))) for k in expected.keys() | got.keys()
             if got.get(k, ()) not in expected.get(k, {()})}
    assert not wrong, "\n".join(f"{k}: store {g}, expected one of {e}" for k, (g, e) in sorted(wrong.items()))
    # cross-check with the dashboards proof's coarser derivation: each incident kind raised, once
    named = Counter((a["kind"], a["subject"]) for a in truth.alerts)
    for kind in truth.ledger_alert_kinds():
        assert any(k == kind and n == 1 for (k, _), n in named.items()), kind


def test_teardown_offline_comes_after_the_devices_stopped(truth: Truth) -> None:
    """A `device_offline` is explained by the run's end only if it was raised after the device's
    last ticket or drop in the ledger (an edge or a truck: after the last of them all)."""
    last: dict[str, int] = defaultdict(int)
    for r in truth.run.ledger:
        if r["kind"] != "truck":  # trucks' entries are in simulated time
            last[r["device_id"]] = max(last[r["device_id"]], ns(r.get("finished") or r["ts"]))
    end = max(last.values())
    for a in truth.alerts:
        if a["kind"] == "device_offline":
            assert a["raised_ns"] >= last.get(a["subject"], end), a
