"""`wastestream demo`: the whole pipeline on a simulated city, then tonnage read back from InfluxDB.

device sim (pty serial) → edge agents → Mosquitto → bridge → Kafka → Faust worker → InfluxDB.
Services are started if they are not running and stopped again afterwards if we started them.
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
from firmware_sim.scenario import load_scenario
from firmware_sim.twins.jt808 import with_terminals
from stream.rules import DEFAULT_RULES
from wastestream.badinput import deadletters_since, publish_bad_messages
from wastestream.foundation import cliutil
from wastestream.foundation.city import city
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings, load_settings
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
                   timeout: float) -> dict[str, FacilityTotals]:
    """Poll InfluxDB until it holds what was sent (or the timeout): the pipeline is asynchronous."""
    deadline = time.monotonic() + timeout
    while True:
        got = influx_totals(settings, since_ns)
        if all(got.get(site, FacilityTotals()).tickets >= t.tickets for site, t in expected.items()):
            return got
        if time.monotonic() > deadline:
            return got
        time.sleep(1.0)


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


DEMO_ALERTS_CONFIG = """\
# The demo's alert service: pushes to enforcement terminals over MQTT on the local broker.
kafka_topic: ws.alerts
kafka_group: {group}
link_base_url: http://127.0.0.1:{port}/alerts/
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
             alerts_port: int | None = None) -> SliceResult:
    """Start stream workers, bridges, the simulator and one edge agent per site; drain; compare.

    With `skip_backlog` the workers' consumer group starts at the end of the device topics, so
    the run processes its own traffic, not what earlier runs left in Kafka.
    """
    pipeline.wait(pipeline.start("topics", "topics"), timeout=120)
    if skip_backlog:
        sources = [topic for event, topic in KAFKA_TOPICS.items() if event != "alert"]
        asyncio.run(commit_group_at_end(pipeline.settings.kafka_bootstrap,
                                        pipeline.settings.faust_app_id, sources))
    for i in range(workers):
        pipeline.start(f"worker-{i}", "worker", "-l", "info")
    for i in range(bridges):
        pipeline.start_bridge(i)
    if alerts_port:
        start_alert_service(pipeline, alerts_port)
    since_ns = time.time_ns()
    sim = pipeline.start_sim(scenario_path, duration)
    for site_config in sorted((pipeline.run_dir / "edge").glob("*.yaml")):
        pipeline.start(f"edge-{site_config.stem}", "edge", "run", "--config", str(site_config))
    publish_bad_messages(pipeline.settings)
    pipeline.wait(sim, timeout=duration + 120)
    expected = ledger_totals(pipeline.run_dir / "sim" / "ledger.jsonl")
    log.info("simulator done (%d truck visits); draining", sum(t.tickets for t in expected.values()))
    got = wait_for_drain(pipeline.settings, expected, since_ns, drain_timeout)
    sites = {f.id for f in load_scenario(scenario_path).weighbridge_sites()}
    got = {site: totals for site, totals in got.items() if site in sites}
    return SliceResult(expected, got, since_ns // 1_000_000)


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
             rules_path: Path = DEFAULT_RULES) -> int:
    settings = load_settings()
    run_dir = settings.run_dir / "demo" / time.strftime("%Y%m%d-%H%M%S")
    scenario = load_scenario(scenario_path)
    names = {f.id: f.name for f in scenario.facilities}
    started_services = not services_running()
    print("services: starting Mosquitto, Kafka, InfluxDB ..." if started_services else "services: running")
    services("up")
    pipeline = Pipeline(settings, run_dir, env={"WS_RULES": str(rules_path)})
    start = datetime.now(UTC)
    alerts_port = free_port()
    bridges = sum(len(f.weighbridges) for f in scenario.facilities)
    print(f"demo: {len(scenario.weighbridge_sites())} facilities, {bridges} weighbridges, "
          f"{duration:.0f} s of traffic; logs in {run_dir / 'logs'}")
    try:
        result = run_city(pipeline, scenario_path, duration, drain_timeout, alerts_port=alerts_port)
        table, ok = render_table(result.expected, result.got, names)
        print("\nTonnage per facility: sent by the simulator vs read back from InfluxDB (InfluxQL)\n")
        print(table)
        print_bad_input(settings, run_dir, result.since_ms)
        time.sleep(3)  # the last alerts reach the alert service's store
        report = build_report(settings, start, datetime.now(UTC), run_dir / "report.html",
                              alerts_db=run_dir / "alerts.db", rules_path=rules_path,
                              alerts_base_url=f"http://127.0.0.1:{alerts_port}",
                              sites={f.id for f in scenario.facilities})
        print(f"\nReport (indicators against the plan targets, tonnage, sorting, alerts): {report}")
        print(f"logs: {run_dir / 'logs'}")
        return 0 if ok else 1
    finally:
        pipeline.stop_all()
        if started_services and not keep_services:
            services("down")


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        chosen = city(args.city)
        scenario = with_terminals(args.scenario or chosen.scenario, args.trucks)
        return run_demo(args.duration, scenario, args.keep_services,
                        args.drain_timeout, rules_path=chosen.rules)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped")
        return 130
    except PipelineError as exc:
        print(f"demo: {exc}")
        return 1
