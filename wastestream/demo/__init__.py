"""`wastestream demo`: the whole pipeline on a simulated city, then tonnage read back from InfluxDB.

device sim (pty serial) → edge agents → Mosquitto → bridge → Kafka → Faust worker → InfluxDB.
Services are started if they are not running and stopped again afterwards if we started them.

First yesterday (the city's local day) is replayed at the city's real scale through the same path,
as the edges replay their outboxes after an outage (firmware_sim/replay/), then the city runs live
for `--duration` s. At the end the edge agents are stopped before the simulated devices (a planned
stop: no device_offline), and the demo prints yesterday's and today's tonnage tables, the alerts
raised against those the scenario's incidents should raise, and the report of yesterday + today
(yesterday is a whole day: judged; today so far: shown, not judged). Long steps print a progress
line every few seconds (wastestream/demo/progress.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from contract.topics import KAFKA_TOPICS
from firmware_sim.city import traffic_s
from firmware_sim.replay.backlog import read_summary
from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.twins.jt808 import with_terminals
from stream.rules import DEFAULT_RULES, load_rules
from wastestream.badinput import deadletters_since, publish_bad_messages
from wastestream.demo import alerts as demo_alerts
from wastestream.demo import officer as demo_officer
from wastestream.demo import replayed as day
from wastestream.demo.progress import wait_with_progress
from wastestream.demo.replayed import Replayed, held, left_in_outboxes
from wastestream.foundation import cliutil
from wastestream.foundation.city import city
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings, load_settings
from wastestream.indicators.alerts import load_alerts
from wastestream.pipeline import Pipeline, PipelineError, commit_group_at_end, services, services_running
from wastestream.report.build import build_report

log = logging.getLogger("wastestream.demo")


@dataclass
class FacilityTotals:
    tickets: int = 0
    net_kg: float = 0.0


def ledger_totals(ledger: Path) -> dict[str, FacilityTotals]:
    """What the simulator sent: one JSON line per completed truck visit."""
    totals: dict[str, FacilityTotals] = defaultdict(FacilityTotals)
    if ledger.exists():
        for line in ledger.read_text(encoding="utf-8").splitlines():
            visit = json.loads(line)
            if visit.get("kind") == "weighing" and visit.get("expect_ticket", True):
                t = totals[visit["site_id"]]
                t.tickets += 1
                t.net_kg += visit["net_kg"]
    return dict(totals)


def influx_totals(settings: Settings, since_ns: int) -> dict[str, FacilityTotals]:
    """Tonnage per facility as InfluxDB has it: one point per ticket, so count and sum are exact.

    Callers keep only their own facilities: other runs may share the database."""
    rows = influxql(
        settings,
        f"SELECT count(net_kg) AS tickets, sum(net_kg) AS net_kg FROM weighing "
        f"WHERE time >= {since_ns} GROUP BY site",
    )
    return {row["site"]: FacilityTotals(int(row["tickets"]), float(row["net_kg"])) for row in rows}


def wait_for_drain(settings: Settings, expected: dict[str, FacilityTotals], since_ns: int,
                   timeout: float, *, progress: bool = False) -> dict[str, FacilityTotals]:
    """Poll InfluxDB until it holds what was sent (or the timeout): the pipeline is asynchronous."""
    got: dict[str, FacilityTotals] = {}
    want = sum(t.tickets for t in expected.values())

    def check() -> tuple[bool, str]:
        nonlocal got
        got = influx_totals(settings, since_ns)
        have = sum(min(got.get(site, FacilityTotals()).tickets, t.tickets) for site, t in expected.items())
        return have >= want, f"InfluxDB holds {have} of {want} live tickets"

    wait_with_progress("draining", check, timeout, expected_s=5.0, every=5.0 if progress else 1e9)
    return got


def render_table(expected: dict[str, FacilityTotals], got: dict[str, FacilityTotals],
                 names: dict[str, str]) -> tuple[str, bool]:
    header = (f"{'facility':<22} {'tickets sent':>12} {'net t sent':>11} "
              f"{'tickets in DB':>13} {'net t in DB':>11}  ok")
    lines = [header, "-" * len(header)]
    all_ok = True
    for site in sorted(set(expected) | set(got)):
        e, g = expected.get(site, FacilityTotals()), got.get(site, FacilityTotals())
        ok = e.tickets == g.tickets and abs(e.net_kg - g.net_kg) < 0.5
        all_ok &= ok
        lines.append(f"{site:<22} {e.tickets:>12} {e.net_kg / 1000:>11.2f} {g.tickets:>13} "
                     f"{g.net_kg / 1000:>11.2f}  {'yes' if ok else 'NO'}")
        if site in names:
            lines.append(f"  {names[site]}")
    te = FacilityTotals(sum(t.tickets for t in expected.values()), sum(t.net_kg for t in expected.values()))
    tg = FacilityTotals(sum(t.tickets for t in got.values()), sum(t.net_kg for t in got.values()))
    lines.append("-" * len(header))
    lines.append(f"{'total':<22} {te.tickets:>12} {te.net_kg / 1000:>11.2f} {tg.tickets:>13} "
                 f"{tg.net_kg / 1000:>11.2f}  {'yes' if all_ok else 'NO'}")
    return "\n".join(lines), all_ok


@dataclass
class SliceResult:
    expected: dict[str, FacilityTotals]
    got: dict[str, FacilityTotals]
    since_ms: int = 0
    replayed: Replayed | None = None
    """The day replayed first (`replay_day`), with how long its delivery took."""
    replay_s: float | None = None


DEMO_ALERTS_CONFIG = """\
# The demo's alert service: pushes to enforcement terminals over MQTT on the local broker.
kafka_topic: ws.alerts
kafka_group: {group}
officer: {{public_url: "http://127.0.0.1:{port}"}}
db_path: {db}
api: {{host: 127.0.0.1, port: {port}, token: {{env: WS_ALERTS_TOKEN}}}}
channels:
  - {{type: mqtt, name: terminals, host: {mqtt_host}, port: {mqtt_port},
     topic: "ws/v1/enforcement/alerts/{{severity}}", qos: 1}}
"""


def start_alert_service(pipeline: Pipeline, port: int) -> None:
    """`wastestream alerts serve` with a demo config: its own Kafka group, starting at the end."""
    group = f"{pipeline.settings.faust_app_id}-alerts"
    config = pipeline.run_dir / "alerts.yaml"
    config.write_text(DEMO_ALERTS_CONFIG.format(
        group=group, port=port, db=pipeline.run_dir / "alerts.db",
        mqtt_host=pipeline.settings.mqtt_host, mqtt_port=pipeline.settings.mqtt_port), encoding="utf-8")
    asyncio.run(commit_group_at_end(pipeline.settings.kafka_bootstrap, group, [KAFKA_TOPICS["alert"]]))
    pipeline.env.setdefault("WS_ALERTS_TOKEN", secrets.token_hex(16))
    pipeline.start("alerts", "alerts", "serve", "--config", str(config), "--port", str(port))


def run_city(pipeline: Pipeline, scenario_path: Path, duration: float, drain_timeout: float,
             *, workers: int = 1, bridges: int = 1, skip_backlog: bool = True,
             alerts_port: int | None = None, replay_day: str | None = None, hold: bool = False,
             progress: bool = False) -> SliceResult:
    """Start stream workers, bridges, the simulator and one edge agent per site; drain; compare.

    With `skip_backlog` the workers' consumer group starts at the end of the device topics, so
    the run processes its own traffic, not what earlier runs left in Kafka. `replay_day` (ISO
    date or 'yesterday'): the sim first puts that day into the edge outboxes (firmware_sim/replay/),
    delivered as after an outage; this waits until InfluxDB holds it. `hold`: the devices stay up
    after the traffic and the edge agents are stopped first (a planned stop, no device_offline),
    then the sim. `progress`: a line every few seconds on the long steps.
    """
    settings = pipeline.settings
    pipeline.wait(pipeline.start("topics", "topics"), timeout=120)
    if skip_backlog:
        sources = [topic for event, topic in KAFKA_TOPICS.items() if event != "alert"]
        asyncio.run(commit_group_at_end(settings.kafka_bootstrap, settings.faust_app_id, sources))
    for i in range(workers):
        pipeline.start(f"worker-{i}", "worker", "--log-level", "info")
    for i in range(bridges):
        pipeline.start_bridge(i)
    if alerts_port:
        start_alert_service(pipeline, alerts_port)
    since_ns = time.time_ns()
    extra = (["--replay-day", replay_day] if replay_day else []) + (["--hold"] if hold else [])
    sim = pipeline.start_sim(scenario_path, duration, extra=extra)
    run_dir = pipeline.run_dir
    summary = read_summary(run_dir)
    replayed = Replayed.of(summary) if summary else None
    edges = [pipeline.start(f"edge-{site_config.stem}", "edge", "run", "--config", str(site_config))
             for site_config in sorted((run_dir / "edge").glob("*.yaml"))]
    publish_bad_messages(settings)
    traffic_until = time.monotonic() + traffic_s(load_scenario(scenario_path), duration)
    replay_s = None
    if replayed is not None:  # not past the live traffic's end by much: held trucks drive on for a minute
        _, replay_s = wait_with_progress(
            f"replay of {replayed.day}", lambda: _replay_state(settings, run_dir, replayed),
            timeout=max(30.0, traffic_until - time.monotonic() + 20) if hold else drain_timeout + 120,
            expected_s=max(10.0, replayed.messages / 400), every=5.0 if progress else 1e9,
            alive=pipeline.check_alive)
    ledger = run_dir / "sim" / "ledger.jsonl"
    if hold:
        done = run_dir / "sim" / "traffic-done"
        left = traffic_until - time.monotonic()
        wait_with_progress("live traffic", lambda: (done.exists(), _live_state(ledger)), timeout=left + 120,
                           expected_s=max(0.0, left), every=5.0 if progress else 1e9,
                           alive=pipeline.check_alive)
    else:
        pipeline.wait(sim, timeout=duration + 120)
    expected = ledger_totals(ledger)
    log.info("simulator done (%d truck visits); draining", sum(t.tickets for t in expected.values()))
    got = wait_for_drain(settings, expected, since_ns, drain_timeout, progress=progress)
    if hold:
        pipeline.stop_together(edges)  # a planned stop: each edge says `stopped`; then the devices go
        pipeline.stop(sim)
    sites = {f.id for f in load_scenario(scenario_path).weighbridge_sites()}
    got = {site: totals for site, totals in got.items() if site in sites}
    return SliceResult(expected, got, since_ns // 1_000_000, replayed, replay_s)


def _replay_state(settings: Settings, run_dir: Path, replayed: Replayed) -> tuple[bool, str]:
    left = left_in_outboxes(run_dir, replayed)
    have = held(settings, replayed)
    stored = sum(min(have.get(e, 0), n) for e, n in replayed.events.items())
    done = left == 0 and all(have.get(e, 0) >= n for e, n in replayed.events.items())
    return done, (f"{replayed.messages - left:,} of {replayed.messages:,} messages out of the edge outboxes, "
                  f"{stored:,} in InfluxDB")


def _live_state(ledger: Path) -> str:
    visits = 0
    if ledger.exists():
        lines = ledger.read_text(encoding="utf-8").splitlines()
        visits = sum(1 for line in lines if '"kind": "weighing"' in line)
    return f"{visits} truck visits weighed so far"


def print_bad_input(settings: Settings, run_dir: Path, since_ms: int) -> None:
    """Bad input is not silently dropped: frame errors logged at the edge, bad messages dead-lettered."""
    frame_errors = sum(log_file.read_text(errors="replace").count("frame error")
                       for log_file in (run_dir / "logs").glob("edge-*.log"))
    print(f"\nBad input: {frame_errors} torn or bad-checksum serial frames rejected and logged by the edge "
          f"agents (grep 'frame error' in the edge logs)")
    records = deadletters_since(settings, since_ms)
    distinct = {(r.get("topic"), r.get("reason"), r.get("payload")): r for r in records}
    print(f"Dead-letter topic ws.deadletter since the start: {len(records)} record(s), "
          f"{len(distinct)} distinct (MQTT QoS 1 is at-least-once: a redelivery is recorded again)")
    for topic, reason, _ in list(distinct)[:10]:
        print(f"  - {topic}: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(duration: float, scenario_path: Path, keep_services: bool, drain_timeout: float,
             rules_path: Path = DEFAULT_RULES, replay: bool = True) -> int:
    settings = load_settings()
    run_dir = settings.run_dir / "demo" / time.strftime("%Y%m%d-%H%M%S")
    scenario = load_scenario(scenario_path)
    tz = load_rules(rules_path).timezone
    names = {f.id: f.name for f in scenario.facilities}
    started_services = not services_running()
    print("services: starting Mosquitto, Kafka, InfluxDB (the first time Kafka is downloaded: a few "
          "minutes) ..." if started_services else "services: running", flush=True)
    services("up")
    pipeline = Pipeline(settings, run_dir, env={"WS_RULES": str(rules_path)})
    start = datetime.now(UTC)
    alerts_port = free_port()
    run_dir.mkdir(parents=True, exist_ok=True)
    officers = demo_officer.make_accounts(run_dir / "alerts.db", load_rules(rules_path))
    bridges = sum(len(f.weighbridges) for f in scenario.facilities)
    print(f"demo: {len(scenario.weighbridge_sites())} facilities, {bridges} weighbridges; "
          + ("first yesterday replayed at the city's scale, then " if replay else "")
          + f"{duration:.0f} s of live traffic; logs in {run_dir / 'logs'}", flush=True)
    print(f"watch the pushes to the enforcement terminals meanwhile: mosquitto_sub -h {settings.mqtt_host} "
          f"-p {settings.mqtt_port} -t 'ws/v1/enforcement/alerts/#' -v", flush=True)
    try:
        result = run_city(pipeline, scenario_path, duration, drain_timeout, alerts_port=alerts_port,
                          replay_day="yesterday" if replay else None, hold=True, progress=True)
        ok = True
        if result.replayed is not None:
            r = result.replayed
            table, ok = day.render(r, day.tonnage(settings, r), scenario)
            print(f"\nYesterday ({r.day}, {tz}), replayed through the edge outboxes in "
                  f"{result.replay_s:.1f} s ({r.messages:,} messages): tonnage per facility, written vs "
                  "in InfluxDB\n")
            print(table)
        table, live_ok = render_table(result.expected, result.got, names)
        ok &= live_ok
        print("\nToday, live: tonnage per facility, sent by the simulator vs read back from InfluxDB "
              "(InfluxQL)\n")
        print(table)
        print_bad_input(settings, run_dir, result.since_ms)
        period_start = result.replayed.start if result.replayed is not None else start
        print_alerts(scenario, run_dir, period_start, tz)
        print("\n".join(demo_officer.render(run_dir / "alerts.db", f"http://127.0.0.1:{alerts_port}",
                                            run_dir / "alerts.yaml", officers, load_rules(rules_path))))
        report = build_report(settings, period_start, datetime.now(UTC), run_dir / "report.html",
                              alerts_db=run_dir / "alerts.db", rules_path=rules_path,
                              alerts_base_url=f"http://127.0.0.1:{alerts_port}",
                              sites={f.id for f in scenario.facilities})
        print("\nReport (yesterday: a whole local day, judged against the plan targets; today so far: shown, "
              f"not judged): {report}")
        print(f"logs: {run_dir / 'logs'}")
        return 0 if ok else 1
    finally:
        pipeline.stop_all()
        if started_services and not keep_services:
            services("down")


def print_alerts(scenario: Scenario, run_dir: Path, since: datetime, tz: str) -> None:
    """The alerts raised next to those the scenario's incidents should raise; waits (a few seconds)
    until the alert service's store has the expected ones."""
    expected = demo_alerts.expected_alerts(scenario, run_dir / "sim" / "ledger.jsonl")
    ours = set(demo_alerts.place_names(scenario))
    raised: list[demo_alerts.AlertRecord] = []

    def check() -> tuple[bool, str]:
        nonlocal raised
        found = load_alerts(since, datetime.now(UTC), run_dir=run_dir, alerts_db=run_dir / "alerts.db")
        raised = [a for a in (found.alerts if found else []) if a.site_id in ours]  # ws.alerts is shared
        got = {(a.kind, a.subject.split("/")[0]) for a in raised}
        met = sum((e.kind, e.subject) in got for e in expected)
        return met == len(expected), f"{met} of {len(expected)} expected alerts in the alert store"

    print()
    wait_with_progress("alerts", check, timeout=30.0, expected_s=3.0)
    zone = "Beijing time (北京时间)" if tz == "Asia/Shanghai" else tz
    print("\n".join(demo_alerts.render(expected, raised, scenario, tz, zone)))


def main(argv: list[str] | None = None) -> int:
    parser = cliutil.parser("wastestream demo", __doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of simulated traffic")
    parser.add_argument("--city", default=None, help="city folder (default $WS_CITY): its scenario and rules")
    parser.add_argument("--scenario", type=Path, default=None, help="a scenario instead of the city's")
    parser.add_argument("--keep-services", action="store_true", help="leave the services running")
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument("--trucks", choices=("nmea", "jt808"), default=None,
                        help="every truck's terminal: nmea (GPS + I/O module) or jt808 (JT/T 808 over "
                             "TCP, firmware_sim/twins/jt808.py); default: as the scenario says")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip replaying yesterday (the report then has no whole day to judge)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        chosen = city(args.city)
        scenario = with_terminals(args.scenario or chosen.scenario, args.trucks)
        return run_demo(args.duration, scenario, args.keep_services,
                        args.drain_timeout, rules_path=chosen.rules, replay=not args.no_replay)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped")
        return 130
    except PipelineError as exc:
        print(f"demo: {exc}")
        return 1
