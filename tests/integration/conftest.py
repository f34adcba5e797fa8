"""`city_run`: one small city through the REAL pipeline, shared by the dashboard and report tests.

Runs tests/fixtures/dash_city.yaml (weighbridges, sorting stations and muck trucks, with
incidents) once per session: simulator → edge agents → Mosquitto → bridge → Kafka → Faust
worker → InfluxDB, plus the alert service (`wastestream alerts serve`) so the `alert`
measurement is written too; one of the city's alerts is then closed and another acknowledged
through the alert API, so all three lifecycle states are in the data. Everything it writes
goes to its own InfluxDB database and Faust app id; the workers and the alert service start
at the end of the shared Kafka topics (earlier runs' records are not replayed).

Signature (stable): the fixture yields a `CityRun` named tuple
`(settings, run_dir, ledger, time_range)`:
- `settings`: Settings whose `influx_db` holds this run's points (query with `influxql`);
- `run_dir`: the run's directory (`sim/ledger.jsonl`, `logs/`, `rules.yaml`, `alerts.db`, `city_run.json`);
- `ledger`: the simulator's truth, the JSON records of `sim/ledger.jsonl` (firmware_sim/city.py);
- `time_range`: `(start_ns, end_ns)`, epoch ns, covering every point of the run: it starts at
  the Asia/Shanghai midnight of the earliest point's day (daily points are stamped there; truck
  GPS clocks run ahead of the wall clock and end at "now", so points reach back before the run).

The InfluxDB database holds only this city's points: the worker writes into a staging database
and the points of this city's sites are copied over (SELECT INTO, tags kept), because other
tests' and benchmarks' records on the shared Kafka topics reach this run's worker too.

Development: with WS_KEEP_TEST_DB=1 the databases are kept; WS_CITY_RUN_REUSE=<run_dir> then
reuses that run instead of making a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
import yaml

from contract.topics import KAFKA_TOPICS
from firmware_sim.scenario import Scenario, load_scenario
from stream.rules import DEFAULT_RULES
from wastestream.demo import run_city
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import Settings, load_settings
from wastestream.pipeline import Pipeline, commit_group_at_end

DASH_CITY = Path(__file__).parent.parent / "fixtures" / "dash_city.yaml"
DURATION_S = 35.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
ALERTS_TOKEN = "dash-token"
SITE_RE = "/^(fleet-)?d-/"  # the dash city's facilities, communities and truck fleets


class CityRun(NamedTuple):
    settings: Settings
    run_dir: Path
    ledger: list[dict[str, Any]]
    time_range: tuple[int, int]


def local_midnight_ns(ts_ns: int) -> int:
    """Start of the Asia/Shanghai day of `ts_ns`: daily points (tonnage_daily, ...) are stamped there."""
    local = datetime.fromtimestamp(ts_ns / 1e9, SHANGHAI)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 10**9


def write_rules(scenario: Scenario, path: Path) -> Path:
    """The Liuzhou rules with this scenario's facilities, communities and trucks (same thresholds)."""
    rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    rules["facilities"] = [{"id": f.id, "kind": f.kind, "capacity_t_per_day": f.capacity_t_per_day}
                           for f in scenario.facilities]
    rules["communities"] = [{"id": c.id, "households": c.households} for c in scenario.communities]
    rules["disposal_sites"] = [{"id": d.id, "polygon": [[p.lat, p.lon] for p in d.polygon]}
                               for d in scenario.disposal_sites]
    rules["trucks"] = [{"plate": t.plate, "hours": [0, 24]} for t in scenario.trucks]
    path.write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _query(settings: Settings, query: str) -> list[dict[str, Any]]:
    """`influxql` tolerating a slow InfluxDB (other tests load it): empty, and callers poll again."""
    try:
        return influxql(settings, query, timeout=30)
    except InfluxQueryError:
        return []


def _wait_for(settings: Settings, ledger: list[dict[str, Any]], timeout: float) -> None:
    """Until InfluxDB has every ticket and deposit the simulator made and some alerts (or timeout)."""
    tickets = sum(1 for r in ledger if r["kind"] == "weighing" and r.get("expect_ticket", True))
    deposits = sum(1 for r in ledger if r["kind"] == "deposit")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {m: sum(int(r["n"]) for r in _query(settings, f'SELECT count("{f}") AS n FROM "{m}" '
                                                            f"WHERE site =~ {SITE_RE} GROUP BY site"))
               for m, f in (("weighing", "net_kg"), ("deposit", "kg"), ("alert", "alert_id"))}
        # facility_load is one hop further (the facility agent, from the tonnage agent's totals):
        # one point per facility and day, rewritten as it fills, so its tickets add up to the count
        loads = sum(int(r["n"] or 0) for r in _query(settings, f'SELECT sum("tickets") AS n FROM '
                                                             f'"facility_load" WHERE site =~ {SITE_RE}'))
        if got["weighing"] >= tickets and got["deposit"] >= deposits and got["alert"] > 0 \
                and loads >= got["weighing"]:
            break
        time.sleep(1.0)
    time.sleep(5.0)  # daily running totals are rewritten after the last event


def _officer_actions(run_dir: Path, settings: Settings, timeout: float = 30.0) -> None:
    """Close one of this city's alerts and acknowledge another through the alert API (as an
    officer would), so the lifecycle states (closed, acknowledged) are in InfluxDB too."""
    port = re.search(r"alerts API on http://[\d.]+:(\d+)", (run_dir / "logs" / "alerts.log").read_text())
    assert port, "the alert service did not log its API address"
    with sqlite3.connect(run_dir / "alerts.db") as db:
        ids = [r[0] for r in db.execute("SELECT alert_id, site_id FROM alerts WHERE state = 'open' "
                                        "ORDER BY alert_id") if re.match(SITE_RE.strip("/"), r[1])]
    for alert_id, action in zip(ids, ("close", "ack"), strict=False):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port.group(1)}/alerts/{urllib.parse.quote(alert_id)}/{action}",
            data=json.dumps({"officer": "dash-test", "note": "city_run fixture"}).encode(), method="POST",
            headers={"Authorization": f"Bearer {ALERTS_TOKEN}", "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ids:
        if _query(settings, "SELECT count(alert_id) AS n FROM alert WHERE state = 'closed'"):
            break
        time.sleep(1.0)


def _copy_city(source: Settings, target: Settings) -> None:
    """Copy this city's points (its sites only; all of pipeline_latency, written by its own worker)
    into the target database, tags kept as tags: concurrent producers on the shared Kafka topics
    (other tests, benchmarks) also reach the run's worker, and city-wide panels must add up."""
    post(target, f'CREATE DATABASE "{target.influx_db}"')
    for row in _query(source, "SHOW MEASUREMENTS"):
        m = row["name"]
        keys = {r["tagKey"] for r in _query(source, f'SHOW TAG KEYS FROM "{m}"')}
        key = next((k for k in ("site", "origin") if k in keys), None)  # manifest: origin
        where = f'WHERE "{key}" =~ {SITE_RE}' if key else ""
        post(source, f'SELECT * INTO "{target.influx_db}"."autogen"."{m}" FROM "{m}" {where} GROUP BY *')


def post(settings: Settings, query: str) -> None:
    """A statement InfluxDB 1.x takes only by POST (CREATE, DROP, SELECT INTO)."""
    params = urllib.parse.urlencode({"db": settings.influx_db, "q": query})
    request = urllib.request.Request(f"{settings.influx_url}/query?{params}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    errors = [r["error"] for r in body.get("results", []) if "error" in r]
    if errors:
        raise InfluxQueryError(f"{query!r}: {errors[0]}")


@pytest.fixture(scope="session")
def city_run(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CityRun]:
    """The dash city through the real pipeline, once per session (about two minutes)."""
    reuse = os.environ.get("WS_CITY_RUN_REUSE")  # a kept run's dir (with WS_KEEP_TEST_DB): no new run
    if reuse:
        saved = json.loads((Path(reuse) / "city_run.json").read_text(encoding="utf-8"))
        lines = (Path(reuse) / "sim" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
        ledger = [json.loads(line) for line in lines]
        yield CityRun(dataclasses.replace(live_services, influx_db=saved["influx_db"]), Path(reuse), ledger,
                      tuple(saved["time_range"]))
        return
    unique = uuid.uuid4().hex[:8]
    staging = dataclasses.replace(live_services, influx_db=f"ws_dash_stage_{unique}",
                                  faust_app_id=f"ws-dash-{unique}")
    settings = dataclasses.replace(staging, influx_db=f"ws_dash_{unique}")
    run_dir = tmp_path_factory.mktemp("city_run")
    scenario = load_scenario(DASH_CITY)
    rules = write_rules(scenario, run_dir / "rules.yaml")
    group = f"ws-alerts-dash-{unique}"
    (run_dir / "alerts.yaml").write_text(yaml.safe_dump({
        "kafka_group": group, "api": {"port": 0, "token": {"value": ALERTS_TOKEN}},
        "link_base_url": "http://127.0.0.1/alerts/",
    }), encoding="utf-8")
    pipeline = Pipeline(staging, run_dir, env={"WS_RULES": str(rules)})
    started_ns = time.time_ns()
    try:
        pipeline.wait(pipeline.start("topics", "topics"), timeout=120)
        # the alert service reads ws.alerts from now on (run_city does the same for the workers)
        asyncio.run(commit_group_at_end(staging.kafka_bootstrap, group, [KAFKA_TOPICS["alert"]]))
        pipeline.start("alerts", "alerts", "serve", "--config", str(run_dir / "alerts.yaml"),
                       "--db", str(run_dir / "alerts.db"), "--port", "0")
        with contextlib.suppress(InfluxQueryError):  # its drain poll may time out on a loaded InfluxDB
            run_city(pipeline, DASH_CITY, duration=DURATION_S, drain_timeout=90)
        ledger = [json.loads(line) for line in
                  (run_dir / "sim" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
        _wait_for(staging, ledger, timeout=90)
        _officer_actions(run_dir, staging)
        time.sleep(2.0)  # the acknowledgement's point too
    finally:
        pipeline.stop_all()
    _copy_city(staging, settings)
    fastest = max((t.time_scale for t in scenario.trucks), default=1.0)
    lead = int(fastest * (DURATION_S + 60) * 1e9)  # GPS time ahead of the wall clock, ending at now
    end_ns = time.time_ns() + 60 * 10**9
    run = CityRun(settings, run_dir, ledger, (local_midnight_ns(started_ns - lead - 60 * 10**9), end_ns))
    (run_dir / "city_run.json").write_text(json.dumps({"influx_db": settings.influx_db,
                                                       "time_range": run.time_range}), encoding="utf-8")
    yield run
    if not os.environ.get("WS_KEEP_TEST_DB"):
        for db in (staging, settings):
            with contextlib.suppress(OSError, InfluxQueryError):  # best effort: a leftover is harmless
                post(db, f'DROP DATABASE "{db.influx_db}"')


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def settings(run_id: str) -> Iterator[Settings]:
    """Settings with this test's own Faust app id and InfluxDB database (dropped afterwards)."""
    s = dataclasses.replace(load_settings(), influx_db=f"ws_test_{run_id}", faust_app_id=f"ws-test-{run_id}")
    yield s
    query = urllib.parse.urlencode({"q": f'DROP DATABASE "{s.influx_db}"'})
    urllib.request.urlopen(urllib.request.Request(f"{s.influx_url}/query?{query}", method="POST"), timeout=10)
