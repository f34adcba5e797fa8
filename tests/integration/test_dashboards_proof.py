"""Proof without a Grafana server: every panel query of every committed dashboard, against real data.

The `city_run` fixture has run the dash city through the real pipeline. For each panel of each
dashboards/ws-*.json this test takes its InfluxQL target(s), substitutes the template variables
as Grafana would (`$timeFilter` → the run's time range in ms, `$__interval` → 1m, `$facility`,
`$community`, `$truck` → "All": the values the variable's own SHOW TAG VALUES query returns, as
a regex alternation; the hidden constants `$incinerators`, `$landfills`, `$households` → the
test city's rules), runs them on the real InfluxDB, and checks the result against values
computed independently: the simulator's ledger (what the devices sent), the scenario and rules
(capacities, households), and the alert service's own SQLite store (which alerts exist).

Every panel must have a check here (`test_every_panel_has_a_check`): a new panel without one
fails the suite. Panels whose values the ledger cannot give (fill levels, speeds, sealed km,
pipeline latency, manifests, device status) are checked for columns, series and plausible
ranges only; see RANGE_ONLY.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards.common import CityConstants
from dashboards.generate import OUT_DIR
from firmware_sim.scenario import Scenario, load_scenario
from stream.alertkinds import on_dashboard
from stream.rules import Rules, load_rules
from tests.integration.conftest import DASH_CITY, SITE_RE, CityRun
from wastestream.foundation.influxql import influxql

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SHANGHAI = ZoneInfo("Asia/Shanghai")
PIPELINE_HEALTH = "ws-pipeline-health"
HOUSEHOLD = {"kitchen", "recyclable", "hazardous", "residual"}
Rows = list[dict[str, Any]]


def load_models() -> list[dict[str, Any]]:
    """The InfluxDB dashboards (pipeline health reads Prometheus: test_dashboard_pipeline_health.py)."""
    models = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(OUT_DIR.glob("ws-*.json"))]
    return [m for m in models if m["uid"] != PIPELINE_HEALTH]


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in model["panels"]:
        out.extend([panel, *panel.get("panels", [])])
    return [p for p in out if p["type"] != "row"]


PANELS = [(m["uid"], p["title"], p) for m in load_models() for p in panels(m)]


# --- the truth, computed without InfluxDB ------------------------------------------------------

@dataclass
class Truth:
    run: CityRun
    scenario: Scenario = field(default_factory=lambda: load_scenario(DASH_CITY))

    @cached_property
    def rules(self) -> Rules:
        return load_rules(self.run.run_dir / "rules.yaml")

    @cached_property
    def weighings(self) -> Rows:
        vehicles = {v.plate: v for v in self.scenario.vehicles}
        out = []
        for r in self.run.ledger:
            if r["kind"] == "weighing" and r.get("expect_ticket", True):
                v = vehicles[r["plate"]]
                out.append({**r, "category": v.category, "origin": v.origin})
        return out

    @cached_property
    def deposits(self) -> Rows:
        return [r for r in self.run.ledger if r["kind"] == "deposit"]

    def net_t(self, *keys: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = defaultdict(float)
        for w in self.weighings:
            out[tuple(w[k] for k in keys)] += w["net_kg"] / 1000
        return dict(out)

    def tickets(self, *keys: str) -> Counter[tuple[str, ...]]:
        return Counter(tuple(w[k] for k in keys) for w in self.weighings)

    def capacity(self, site: str) -> float:
        return next(f.capacity_t_per_day for f in self.rules.facilities if f.id == site)

    @cached_property
    def alerts(self) -> Rows:
        """The alert service's store (its own truth, not InfluxDB), this city's sites only."""
        return [r for r in self._store("SELECT * FROM alerts") if self._ours(r)]

    @cached_property
    def alert_events(self) -> Rows:
        """The store's lifecycle log (raise, ack, close: one InfluxDB point each), with each alert's kind."""
        return [r for r in self._store("SELECT e.to_state, a.* FROM events e JOIN alerts a USING (alert_id)")
                if self._ours(r)]

    def _store(self, sql: str) -> Rows:
        with sqlite3.connect(self.run.run_dir / "alerts.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql)]

    def _ours(self, alert: dict[str, Any]) -> bool:
        start, end = self.run.time_range
        return bool(re.match(SITE_RE.strip("/"), alert["site_id"])) and start <= alert["raised_ns"] <= end

    def ledger_alert_kinds(self) -> set[str]:
        """Alerts the scenario's incidents must raise, from the ledger alone."""
        kinds = {f"weighbridge_{f}" for w in self.weighings for f in w["flags"]}
        for r in self.run.ledger:
            if r["kind"] == "station_incident" and r["incident"] == "full_bin":
                kinds.add("bin_full")
            if r["kind"] == "truck" and r["event"] == "dump_outside":
                kinds.add("illegal_dumping")
            if r["kind"] == "truck" and r["event"] == "uncovered":
                kinds.add("uncovered_transport")
        return kinds


def local_day_ns(iso: str) -> int:
    local = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 10**9


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-6)


def by(rows: Rows, *keys: str) -> dict[tuple[str, ...], dict[str, Any]]:
    out = {tuple(r[k] for k in keys): r for r in rows}
    assert len(out) == len(rows), f"duplicate {keys} in {rows}"
    return out


def only(rows: Rows) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


def columns(rows: Rows, *names: str) -> None:
    assert rows, "no rows where the run has data"
    for r in rows:
        missing = [n for n in names if n not in r]
        assert not missing, f"columns {missing} missing in {r}"


def pct(num: float, den: float) -> float:
    return 100 * num / den


# --- per panel checks: (dashboard uid, panel title) -> check(results by refId, truth) -----------

Check = Callable[[dict[str, Rows], Truth], None]
CHECKS: dict[tuple[str, str], Check] = {}
RANGE_ONLY: set[tuple[str, str]] = set()
"""Panels whose values the ledger cannot give: columns, series and ranges are checked."""


def check(uid: str, title: str, range_only: bool = False) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[(uid, title)] = fn
        if range_only:
            RANGE_ONLY.add((uid, title))
        return fn
    return register


def indicator_title(prefix: str) -> str:
    return next(t for u, t, _ in PANELS if u == "ws-city-overview" and t.startswith(prefix))


# City overview

@check("ws-city-overview", "Tonnage today (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    assert only(res["A"])["net_t"] == approx(sum(t.net_t("site_id").values()))


@check("ws-city-overview", "Tonnage by category (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    assert {k[0]: r["net_t"] for k, r in by(res["A"], "category").items()} == \
        {k[0]: approx(v) for k, v in t.net_t("category").items()}


@check("ws-city-overview", "Open alerts (raised, not closed)")
def _(res: dict[str, Rows], t: Truth) -> None:
    assert only(res["A"])["open"] == sum(1 for a in t.alerts if a["state"] != "closed")
    assert any(a["state"] == "closed" for a in t.alerts), "the fixture closes one alert"
    assert only(res["A"])["open"] >= len(t.ledger_alert_kinds())


@check("ws-city-overview", "Alerts by kind and state")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = {k: r["alerts"] for k, r in by(res["A"], "kind", "state").items()}
    assert {k for k, s in got if s == "open"} >= t.ledger_alert_kinds()
    # one point per alert and state: a cool-down repeat rewrites its alert's `open` point
    points = {(e["alert_id"], e["kind"], e["to_state"]) for e in t.alert_events}
    assert got == dict(Counter((kind, state) for _, kind, state in points))
    assert {s for _, s in got} == {"open", "acknowledged", "closed"}, "the fixture acks one, closes one"


@check("ws-city-overview", indicator_title("Recycling share (%)"))
def _(res: dict[str, Rows], t: Truth) -> None:
    cat = {k[0]: v for k, v in t.net_t("category").items()}
    recovered = cat.get("recyclable", 0) + cat.get("kitchen", 0)
    household = sum(v for k, v in cat.items() if k in HOUSEHOLD)
    assert 0 < recovered < household
    assert only(res["A"])["recycling_pct"] == approx(pct(recovered, household))


def _checked(deposits: Rows) -> tuple[int, int, float, float]:
    checked = [d for d in deposits if d["verdict"] in ("correct", "incorrect")]
    correct = [d for d in checked if d["verdict"] == "correct"]
    return len(correct), len(checked), sum(d["kg"] for d in correct), sum(d["kg"] for d in checked)


@check("ws-city-overview", indicator_title("Sorting accuracy (%)"))
def _(res: dict[str, Rows], t: Truth) -> None:
    correct, checked, _, _ = _checked(t.deposits)
    assert only(res["A"])["accuracy_pct"] == approx(pct(correct, checked))


def _households(deposits: Rows) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for d in deposits:
        if d.get("household"):
            out[d["site_id"]].add(d["household"])
    return out


@check("ws-city-overview", indicator_title("Participation (%)"))
def _(res: dict[str, Rows], t: Truth) -> None:
    households = len({d["household"] for d in t.deposits if d.get("household")})  # city-wide distinct
    registered = sum(c.households for c in t.rules.communities)
    got = only(res["A"])["participation_pct"]

    def exact() -> None:
        assert got == approx(pct(households, registered))
    exact()


@check("ws-city-overview", indicator_title("Sealed transport (%)"), range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    value = only(res["A"])["sealed_pct"]
    assert 0 <= value <= 100
    if "uncovered_transport" in t.ledger_alert_kinds():
        assert value < 100, "a truck drove loaded with its lid open"


@check("ws-city-overview", indicator_title("Incinerator capacity use (%)"))
def _(res: dict[str, Rows], t: Truth) -> None:
    incinerators = {f.id for f in t.rules.facilities if f.kind == "incineration"}
    days = {(w["site_id"], local_day_ns(w["finished"])) for w in t.weighings if w["site_id"] in incinerators}
    net = sum(v for k, v in t.net_t("site_id").items() if k[0] in incinerators)
    capacity = sum(t.capacity(site) for site, _ in days)
    assert only(res["A"])["use_pct"] == approx(pct(net, capacity))


@check("ws-city-overview", indicator_title("Raw household waste landfilled (t)"))
def _(res: dict[str, Rows], t: Truth) -> None:
    landfills = {f.id for f in t.rules.facilities if f.kind == "landfill"}
    expected = sum(w["net_kg"] for w in t.weighings
                   if w["site_id"] in landfills and w["category"] in HOUSEHOLD)
    if expected:
        assert only(res["A"])["landfilled_t"] == approx(expected / 1000)
    else:
        assert res["A"] == [], "no landfill in the run: no rows (the stat shows its no-value 0)"


@check("ws-city-overview", indicator_title("Alert closure rate"))
def _(res: dict[str, Rows], t: Truth) -> None:
    raised = len(t.alerts)
    closed = sum(1 for a in t.alerts if a["state"] == "closed")
    assert closed >= 1, "the fixture closes one alert"
    assert only(res["A"])["closure_pct"] == approx(pct(closed, raised))


@check("ws-city-overview", "Tonnage per hour by category (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got: dict[str, float] = defaultdict(float)
    for r in res["A"]:
        assert r["time"] % (3600 * 10**9) == 0, "hour buckets"
        got[r["category"]] += r["sum"]
    assert dict(got) == {k[0]: approx(v) for k, v in t.net_t("category").items()}


# Facilities

@check("ws-facilities", "Tickets (磅单)")
def _(res: dict[str, Rows], t: Truth) -> None:
    assert {k[0]: r["tickets"] for k, r in by(res["A"], "site").items()} == \
        {k[0]: v for k, v in t.tickets("site_id").items()}


def _daily_net(t: Truth, *keys: str) -> dict[tuple[Any, ...], float]:
    out: dict[tuple[Any, ...], float] = defaultdict(float)
    for w in t.weighings:
        out[(*(w[k] for k in keys), local_day_ns(w["finished"]))] += w["net_kg"] / 1000
    return dict(out)


@check("ws-facilities", "Load today (% of design capacity)")
def _(res: dict[str, Rows], t: Truth) -> None:
    daily = _daily_net(t, "site_id")
    last = {site: (day, net) for (site, day), net in sorted(daily.items(), key=lambda kv: kv[0][1])}
    assert {k[0]: r["load_pct"] for k, r in by(res["A"], "site").items()} == \
        {site: approx(pct(net, t.capacity(site))) for site, (_, net) in last.items()}


@check("ws-facilities", "Tonnage per hour by facility (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got: dict[str, float] = defaultdict(float)
    for r in res["A"]:
        assert r["time"] % (3600 * 10**9) == 0
        got[r["site"]] += r["sum"]
    assert dict(got) == {k[0]: approx(v) for k, v in t.net_t("site_id").items()}


@check("ws-facilities", "Tonnage per day vs design capacity")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "site", "time")
    daily = _daily_net(t, "site_id")
    assert set(got) == set(daily)
    tickets = Counter((w["site_id"], local_day_ns(w["finished"])) for w in t.weighings)
    for key, net in daily.items():
        row = got[key]
        assert row["net_t"] == approx(net) and row["capacity_t"] == t.capacity(key[0])
        assert row["load_pct"] == approx(pct(net, t.capacity(key[0]))) and row["tickets"] == tickets[key]


@check("ws-facilities", "Tonnage per day by origin (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "site", "origin", "time")
    daily = _daily_net(t, "site_id", "origin")
    assert {k: r["net_t"] for k, r in got.items()} == {k: approx(v) for k, v in daily.items()}


@check("ws-facilities", "Tonnage per day by category (t)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "site", "category", "time")
    daily = _daily_net(t, "site_id", "category")
    assert {k: r["net_t"] for k, r in got.items()} == {k: approx(v) for k, v in daily.items()}
    tickets = Counter((w["site_id"], w["category"], local_day_ns(w["finished"])) for w in t.weighings)
    assert {k: r["tickets"] for k, r in got.items()} == dict(tickets)


def registered_alerts(uid: str, res: dict[str, Rows], t: Truth) -> dict[tuple[Any, ...], Any]:
    """An `alerts_by_kind` panel (dashboards/alerts.py): one row per site and kind registered for
    `uid`, its alert count as in the store; returns the rows by (site, kind)."""
    kinds = set(on_dashboard(uid))
    got = by(res["A"], "site", "kind")
    store = Counter((a["site_id"], a["kind"]) for a in t.alerts if a["kind"] in kinds)
    assert {k: r["alerts"] for k, r in got.items()} == dict(store)
    return got


@check("ws-facilities", "Facility alerts: integrity, capacity, raw waste")
def _(res: dict[str, Rows], t: Truth) -> None:
    flagged = Counter((w["site_id"], f"weighbridge_{f}") for w in t.weighings for f in w["flags"])
    assert flagged, "the dash city makes double weighings: its scenario must flag some tickets"
    got = registered_alerts("ws-facilities", res, t)
    assert {k: r["occurrences"] for k, r in got.items() if k[1].startswith("weighbridge_")} == dict(flagged)


@check("ws-sorting", "Sorting alerts by kind")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = registered_alerts("ws-sorting", res, t)
    assert "bin_full" in {k[1] for k in got}, "the dash city fills a bin"


@check("ws-devices", "Device alerts by kind")
def _(res: dict[str, Rows], t: Truth) -> None:
    registered_alerts("ws-devices", res, t)


# Sorting stations

@check("ws-sorting", "Accuracy by community (%)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "community")
    communities = {d["site_id"] for d in t.deposits}
    assert set(k[0] for k in got) == communities
    for c in communities:
        mine = [d for d in t.deposits if d["site_id"] == c]
        correct, checked, correct_kg, checked_kg = _checked(mine)
        row = got[(c,)]
        assert row["accuracy_pct"] == approx(pct(correct, checked))
        assert row["weight_accuracy_pct"] == pytest.approx(pct(correct_kg, checked_kg), rel=1e-6)
        assert (row["checked"], row["deposits"]) == (checked, len(mine))


@check("ws-sorting", "Participation: households that deposited")
def _(res: dict[str, Rows], t: Truth) -> None:
    expected = {c: len(h) for c, h in _households(t.deposits).items()}
    got = {k[0]: r["households"] for k, r in by(res["A"], "community").items()}

    def exact() -> None:
        assert got == expected
    exact()


@check("ws-sorting", "Deposits per hour by community")
def _(res: dict[str, Rows], t: Truth) -> None:
    got: Counter[str] = Counter()
    for r in res["A"]:
        assert r["time"] % (3600 * 10**9) == 0
        got[r["community"]] += r["count"]
    expected = Counter(d["site_id"] for d in t.deposits)

    def exact() -> None:
        assert got == expected
    exact()


@check("ws-sorting", "Deposits by bin and verdict")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "community", "bin", "verdict")
    count = Counter((d["site_id"], d["bin"], d["verdict"]) for d in t.deposits)
    kg: dict[tuple[str, str, str], float] = defaultdict(float)
    for d in t.deposits:
        kg[(d["site_id"], d["bin"], d["verdict"])] += d["kg"]

    def exact() -> None:
        assert {k: r["deposits"] for k, r in got.items()} == dict(count)
        assert {k: r["kg"] for k, r in got.items()} == {k: pytest.approx(v, abs=1e-6) for k, v in kg.items()}
    exact()


def _stations(t: Truth) -> set[str]:
    return {s.id for c in t.scenario.communities for s in c.stations}


def _full_bins(t: Truth) -> set[str]:
    return {r["device_id"] for r in t.run.ledger
            if r["kind"] == "station_incident" and r["incident"] == "full_bin"}


@check("ws-sorting", "Fill level (%)", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "device", "bin", "max")
    assert {r["device"] for r in res["A"]} == _stations(t)
    assert all(0 <= r["max"] <= 100 for r in res["A"])
    for station in _full_bins(t):
        assert max(r["max"] for r in res["A"] if r["device"] == station) >= t.rules.sorting.bin_full_pct


@check("ws-sorting", "Fill level now (%)", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "device", "bin", "last")
    assert {r["device"] for r in res["A"]} == _stations(t)
    assert all(0 <= r["last"] <= 100 for r in res["A"])


@check("ws-sorting", "Full bins")
def _(res: dict[str, Rows], t: Truth) -> None:
    full = _full_bins(t)
    assert full, "the dash city has a full_bin incident"
    assert {r["station"].split("/")[0] for r in res["A"]} >= full, "subject: station/bin"
    assert Counter(r["station"] for r in res["A"]) == \
        Counter(a["subject"] for a in t.alerts if a["kind"] == "bin_full")


# Muck trucks

def _truck_events(t: Truth, event: str) -> Rows:
    return [r for r in t.run.ledger if r["kind"] == "truck" and r["event"] == event]


@check("ws-trucks", "Trucks and alert locations")
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "device", "lat", "lon", "plate")
    trucks = {tr.id: tr for tr in t.scenario.trucks}
    assert {r["device"] for r in res["A"]} == set(trucks)
    for r in res["A"]:
        route = trucks[r["device"]].route
        assert r["plate"] == trucks[r["device"]].plate
        assert min(p.lat for p in route) - 0.01 <= r["lat"] <= max(p.lat for p in route) + 0.01
        assert min(p.lon for p in route) - 0.01 <= r["lon"] <= max(p.lon for p in route) + 0.01
    columns(res["B"], "lat", "lon", "kind", "subject")
    located = {(a["kind"], round(a["lat"], 3), round(a["lon"], 3)) for a in t.alerts if a["lat"] is not None}
    assert {(r["kind"], round(r["lat"], 3), round(r["lon"], 3)) for r in res["B"]} == located
    for dump in _truck_events(t, "dump_outside"):
        assert any(r["kind"] == "illegal_dumping" and abs(r["lat"] - dump["lat"]) < 0.01
                   and abs(r["lon"] - dump["lon"]) < 0.01 for r in res["B"]), dump


@check("ws-trucks", "Manifests (电子联单) by status", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    got = {k[0]: r["manifests"] for k, r in by(res["A"], "status").items()}
    assert got and set(got) <= {"matched", "mismatch", "missing"}, got
    if _truck_events(t, "dump_outside"):
        assert got.get("mismatch", 0) >= 1, "a truck dumped part of its load outside: arrived lighter"


@check("ws-trucks", "Transport alerts by kind")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = {k[0]: r["alerts"] for k, r in by(res["A"], "kind").items()}
    expected = {"illegal_dumping", "uncovered_transport"} & t.ledger_alert_kinds()
    assert set(got) >= expected
    kinds = set(on_dashboard("ws-trucks"))
    assert got == dict(Counter(a["kind"] for a in t.alerts if a["kind"] in kinds))


@check("ws-trucks", "Sealed transport per truck and day", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "device", "sealed_km", "loaded_km")
    assert {r["device"] for r in res["A"]} <= {tr.id for tr in t.scenario.trucks}
    for r in res["A"]:
        assert 0 <= r["sealed_km"] <= r["loaded_km"] + 1e-9
        assert local_day_ns(datetime.fromtimestamp(r["time"] / 1e9, SHANGHAI).isoformat()) == r["time"]
    uncovered = {e["device_id"] for e in _truck_events(t, "uncovered")}
    for r in res["A"]:
        if r["device"] in uncovered:
            assert r["sealed_pct"] < 100


@check("ws-trucks", "Speed (km/h)", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "device", "mean")
    assert {r["device"] for r in res["A"]} == {tr.id for tr in t.scenario.trucks}
    assert all(0 <= r["mean"] <= 150 for r in res["A"])


@check("ws-trucks", "Transport alert log")
def _(res: dict[str, Rows], t: Truth) -> None:
    kinds = set(on_dashboard("ws-trucks"))
    columns(res["A"], "kind", "subject", "severity", "count")
    assert Counter((r["kind"], r["subject"]) for r in res["A"]) == \
        Counter((a["kind"], a["subject"]) for a in t.alerts if a["kind"] in kinds)
    plates = {tr.plate for tr in t.scenario.trucks}
    trucks = {r["subject"] for r in res["A"] if r["kind"] in ("illegal_dumping", "uncovered_transport")}
    assert trucks <= plates


# Devices

def _needs_device_status(res: dict[str, Rows], t: Truth) -> None:
    if not influxql(t.run.settings, 'SHOW MEASUREMENTS WITH MEASUREMENT = "device_status"'):
        pytest.skip("device_status is not written by the pipeline yet (stream/agents/device_health.py)")


def _devices(t: Truth) -> set[str]:
    bridges = {b.id for f in t.scenario.facilities for b in f.weighbridges}
    return bridges | _stations(t) | {tr.id for tr in t.scenario.trucks}


@check("ws-devices", "Device status (last report)", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    _needs_device_status(res, t)
    columns(res["A"], "site", "device", "online", "outbox_depth", "last_error")
    assert {r["device"] for r in res["A"]} >= _devices(t), "every device reports its status"
    assert all(isinstance(r["online"], bool) and r["outbox_depth"] >= 0 for r in res["A"])


@check("ws-devices", "Outbox depth per edge site", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    _needs_device_status(res, t)
    columns(res["A"], "site", "max")
    sites = {f.id for f in t.scenario.weighbridge_sites()} | {c.id for c in t.scenario.station_sites()} \
        | {f"fleet-{origin}" for origin in t.scenario.fleets()}
    assert {r["site"] for r in res["A"]} == sites
    assert all(r["max"] >= 0 for r in res["A"])


@check("ws-devices", "Data freshness: weighbridges (last ticket)")
def _(res: dict[str, Rows], t: Truth) -> None:
    got = by(res["A"], "device")
    last: dict[str, int] = {}
    for w in t.weighings:
        ns = int(datetime.fromisoformat(w["finished"]).timestamp() * 1e9)
        last[w["device_id"]] = max(last.get(w["device_id"], 0), ns)
    assert set(k[0] for k in got) == set(last)
    for device, ns in last.items():
        assert abs(got[(device,)]["time"] - ns) < 10 * 10**9, "the last ticket is the ledger's last visit"


@check("ws-devices", "Data freshness: sorting stations (last fill reading)")
def _(res: dict[str, Rows], t: Truth) -> None:
    assert {r["device"] for r in res["A"]} == _stations(t)
    last: dict[str, int] = {}
    for d in t.deposits:
        ns = int(datetime.fromisoformat(d["ts"]).timestamp() * 1e9)
        last[d["device_id"]] = max(last.get(d["device_id"], 0), ns)
    for r in res["A"]:  # a fill reading follows the drops: the last one is not much before the last drop
        assert r["time"] >= last[r["device"]] - 60 * 10**9


@check("ws-devices", "Data freshness: trucks (last report)")
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "site", "device", "speed")
    assert {(r["site"], r["device"]) for r in res["A"]} == \
        {(f"fleet-{tr.origin}", tr.id) for tr in t.scenario.trucks}


@check("ws-devices", "Pipeline latency: device → InfluxDB (ms)", range_only=True)
def _(res: dict[str, Rows], t: Truth) -> None:
    columns(res["A"], "host", "p99")
    columns(res["B"], "host", "p50")
    assert all(r["p99"] >= 0 for r in res["A"]) and all(r["p50"] >= 0 for r in res["B"])


# --- substitution and the tests -----------------------------------------------------------------

def variable_values(run: CityRun) -> dict[str, str]:
    """Each variable as Grafana's "All" would send it: its own query's values as (a|b|c), escaped."""
    values: dict[str, str] = {}
    for model in load_models():
        for var in model["templating"]["list"]:
            if var["type"] == "query":
                found = sorted(r["value"] for r in influxql(run.settings, var["query"]))
                values[var["name"]] = "(" + "|".join(re.escape(v) for v in found) + ")"  # () if none:
                # test_variables_list_the_run fails then, and the panels using it find nothing
    city = CityConstants.from_rules(load_rules(run.run_dir / "rules.yaml"))
    values.update(incinerators=city.incinerators, landfills=city.landfills, households=str(city.households))
    return values


def substitute(query: str, run: CityRun, values: dict[str, str]) -> str:
    start, end = run.time_range
    query = query.replace("$timeFilter", f"time >= {start // 10**6}ms and time <= {end // 10**6}ms")
    query = query.replace("$__interval", "1m")
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${name}", values[name])
    left = re.findall(r"\$[A-Za-z_]\w*", query)
    assert not left, f"unsubstituted {left} in {query}"
    return query


@pytest.fixture(scope="module")
def truth(city_run: CityRun) -> Truth:
    return Truth(city_run)


@pytest.fixture(scope="module")
def values(city_run: CityRun) -> dict[str, str]:
    return variable_values(city_run)


def test_every_panel_has_a_check() -> None:
    assert {(u, t) for u, t, _ in PANELS} == set(CHECKS), "each panel needs a check in this file"


def test_variables_list_the_run(city_run: CityRun, truth: Truth, values: dict[str, str]) -> None:
    def listed(name: str) -> set[str]:
        return set(re.sub(r"\\(.)", r"\1", values[name])[1:-1].split("|"))

    assert listed("facility") == {f.id for f in truth.scenario.weighbridge_sites()}
    assert listed("community") == {c.id for c in truth.scenario.station_sites()}
    assert listed("truck") == {tr.id for tr in truth.scenario.trucks}


@pytest.mark.parametrize("uid, title, panel", PANELS, ids=[f"{u}/{t}" for u, t, _ in PANELS])
def test_panel(uid: str, title: str, panel: dict[str, Any], city_run: CityRun, truth: Truth,
               values: dict[str, str]) -> None:
    results: dict[str, Rows] = {}
    for target in panel["targets"]:
        query = substitute(target["query"], city_run, values)
        results[target["refId"]] = influxql(city_run.settings, query, timeout=60)
    CHECKS[(uid, title)](results, truth)
