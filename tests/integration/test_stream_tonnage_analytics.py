"""Tonnage analytics against the real Kafka and InfluxDB: Beijing days, breakdowns, facility load, alerts.

Known tickets (with duplicates) straddling midnight Beijing time go to ws.weighings; a worker
(own app id, own InfluxDB database, own rules file) must produce exact InfluxQL answers and
EXACTLY the expected alerts on ws.alerts, each once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from contract import encode
from contract.codec import ContractError, decode
from contract.events import Alert, Direction, Envelope, WasteCategory, Weighing, WeighingFlag
from contract.topics import KAFKA_TOPICS
from stream.alerting.make import alert_id
from stream.topics_admin import ensure_topics
from tests.integration.workerkit import raised, raised_file
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TZ = "tz('Asia/Shanghai')"
DAYS = "time >= '2026-02-28T16:00:00Z' AND time < '2026-03-02T16:00:00Z'"  # 1 and 2 March, Beijing
MAR1, MAR2 = 1772294400_000_000_000, 1772380800_000_000_000  # 00:00 Beijing of each, in UTC ns


def write_rules(path: Path, run: str) -> Path:
    path.write_text(f"""
city: test-{run}
timezone: Asia/Shanghai
facilities:
  - {{id: inc-{run}, kind: incineration, capacity_t_per_day: 30}}
  - {{id: lf-{run}, kind: landfill, capacity_t_per_day: 100, zero_landfill_raw: true}}
communities:
  - {{id: cm-{run}, households: 10}}
sorting: {{bin_full_pct: 90, low_accuracy_pct: 80, min_deposits_for_accuracy: 4}}
""", encoding="utf-8")
    return path


async def produce(settings: Settings, events: list[Envelope]) -> None:
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for e in events:
            await producer.send(KAFKA_TOPICS[type(e).event], encode(e), key=e.device_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _skip_history(settings: Settings, topics: list[str]) -> None:
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.faust_app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.kafka_partitions)]
        consumer.assign(tps)
        await consumer.commit(dict(await consumer.end_offsets(tps)))
    finally:
        await consumer.stop()


def skip_history(settings: Settings, *events: str) -> None:
    """Commit the worker's group (= app id) at the current end of its source topics.

    The shared topics hold every earlier run's (and benchmark's) messages; a fresh app would
    replay them all first (minutes once a bench has filled ws.weighings). Starting at the end
    keeps the test bounded and its worker's alerts its own.
    """
    asyncio.run(_skip_history(settings, [KAFKA_TOPICS[e] for e in events]))


async def _alert_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(KAFKA_TOPICS["alert"], p) for p in range(settings.kafka_partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def alert_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """Where ws.alerts ends now: the test reads only what comes after."""
    return asyncio.run(_alert_offsets(settings))


async def _read_alerts(settings: Settings, start: dict[TopicPartition, int], run: str) -> list[Alert]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        alerts: list[Alert] = []
        while any([await consumer.position(tp) < end[tp] for tp in start]):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    try:  # ws.alerts is shared: another test's poison record is not this run's
                        a = decode(r.value or b"", Alert)
                    except (ContractError, RecursionError):
                        continue
                    assert isinstance(a, Alert)
                    if run in a.site_id:
                        alerts.append(a)
        return alerts
    finally:
        await consumer.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(settings: Settings, rules: Path, log: Path) -> subprocess.Popen[bytes]:
    """The Faust CLI starts its web server whatever the app says: give it a free port (parallel tests)."""
    env = dict(os.environ, WS_FAUST_WEB_PORT=str(free_port()), WS_INFLUX_DB=settings.influx_db,
               WS_FAUST_APP_ID=settings.faust_app_id,
               WS_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, WS_INFLUX_URL=settings.influx_url,
               WS_RULES=str(rules), WS_FAUST_SESSION_TIMEOUT_S="8",
               WS_RAISED_ALERTS_FILE=str(raised_file(log)))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.worker", "worker", "-l", "info"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 15 s: a clean stop is not what these tests check (and is safe to skip:
    everything asserted is already durable)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def q(settings: Settings, query: str, run: str) -> list[dict[str, Any]]:
    """Rows of this run only: the worker also replays other runs' messages still in the topics."""
    try:
        return [row for row in influxql(settings, query) if run in row.get("site", run)]
    except Exception:
        return []


def wait_until(check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `check` (returns a falsy value or raises AssertionError until done)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if check() is not False:
                return
        except AssertionError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{last}\nlog:\n{log.read_text()[-3000:]}")


def expect_alerts(settings: Settings, start: dict[TopicPartition, int], run: str, expected: set[str],
                  log: Path) -> Callable[[], None]:
    """ws.alerts holds exactly the expected ids for this run, and THIS worker raised each exactly once.

    ws.alerts is shared: any other worker (another test's app id) that replays the source topics
    re-raises the same deterministic ids, so once-ness is counted in what this worker raised.
    """
    def check() -> None:
        ids = {a.alert_id for a in asyncio.run(_read_alerts(settings, start, run))}
        assert ids == expected, f"alerts {sorted(ids)} != {sorted(expected)}"
        counts = raised(log)
        assert {a: counts[a] for a in expected} == dict.fromkeys(expected, 1), f"raised: {counts}"
    return check


def w(run: str, dev: str, seq: int, site: str, hh_mm: str, t: float, cat: WasteCategory, origin: str,
      plate: str, flags: tuple[WeighingFlag, ...] = ()) -> Weighing:
    h, m = map(int, hh_mm.split(":"))
    return Weighing(msg_id=f"{dev}-{run}:1:{seq}", device_id=f"{dev}-{run}", site_id=f"{site}-{run}",
                    ts=datetime(2026, 3, 1, h, m, tzinfo=UTC), ticket_id=f"{dev}-T{seq}", plate=plate,
                    direction=Direction.INBOUND, gross_kg=t * 1000 + 10_000, tare_kg=10_000, net_kg=t * 1000,
                    category=cat, origin=origin, flags=flags)


def test_tonnage_by_beijing_day_facility_load_and_alerts(settings: Settings, run_id: str,
                                                          tmp_path: Path) -> None:
    r, R, K, C = run_id, WasteCategory.RESIDUAL, WasteCategory.KITCHEN, WasteCategory.CONSTRUCTION
    tickets = [  # times UTC; Beijing = +8 h, so 16:00Z is midnight
        w(r, "wb1", 1, "inc", "15:30", 12, R, "o1", "桂B-A"),
        w(r, "wb1", 2, "inc", "15:50", 10, K, "o2", "桂B-B", (WeighingFlag.DOUBLE_WEIGHING,)),
        w(r, "wb1", 3, "inc", "16:10", 20, R, "o1", "桂B-A"),
        w(r, "wb2", 1, "inc", "15:40", 15, R, "o1", "桂B-C"),
        w(r, "wb2", 2, "inc", "16:30", 5, K, "o2", "桂B-C", (WeighingFlag.OVER_RATING,)),
        w(r, "wb3", 1, "lf", "15:45", 8, R, "o3", "桂B-D"),
        w(r, "wb3", 2, "lf", "16:20", 9, C, "o3", "桂B-D"),
        w(r, "wb3", 3, "lf", "16:40", 3, K, "o3", "桂B-E"),
    ]
    skip_history(settings, "weighing", "deposit", "bin_level", "truck_telemetry")
    start = alert_offsets(settings)
    asyncio.run(produce(settings, [*tickets, *tickets[:3], *tickets[5:]]))  # wb1 and wb3 twice
    rules, log = write_rules(tmp_path / "rules.yaml", r), tmp_path / "worker.log"
    expected_alerts = {
        alert_id("over_capacity", f"inc-{r}|2026-03-01"),  # 12 + 10 + 15 = 37 t > 30 t; 2 March: 25 t
        alert_id("raw_waste_landfilled", f"lf-{r}/wb3-{r}:1:1"),  # dedup keys name the site too
        alert_id("raw_waste_landfilled", f"lf-{r}/wb3-{r}:1:3"),  # kitchen is raw household waste too
        alert_id("weighbridge_double_weighing", f"inc-{r}/wb1-{r}:1:2|double_weighing"),
        alert_id("weighbridge_over_rating", f"inc-{r}/wb2-{r}:1:2|over_rating"),
    }
    proc = start_worker(settings, rules, log)
    try:
        def per_day() -> None:
            rows = q(settings, f"SELECT sum(net_kg) FROM weighing WHERE {DAYS} GROUP BY time(1d), site {TZ}",
                     r)
            got = {(x["site"], x["time"]): x["sum"] for x in rows if x["sum"] is not None}
            assert got == {(f"inc-{r}", MAR1): 37_000, (f"inc-{r}", MAR2): 25_000,
                           (f"lf-{r}", MAR1): 8_000, (f"lf-{r}", MAR2): 12_000}, got
            load = q(settings, "SELECT net_t, load_pct, tickets FROM facility_load GROUP BY site", r)
            got_load = {(x["site"], x["time"]): (x["net_t"], round(x["load_pct"], 3), x["tickets"])
                        for x in load}
            assert got_load == {(f"inc-{r}", MAR1): (37.0, 123.333, 3), (f"inc-{r}", MAR2): (25.0, 83.333, 2),
                                (f"lf-{r}", MAR1): (8.0, 8.0, 1), (f"lf-{r}", MAR2): (12.0, 12.0, 2)
                                }, got_load
        wait_until(per_day, 60, proc, log)
        wait_until(expect_alerts(settings, start, r, expected_alerts, log), 30, proc, log)
        time.sleep(2.0)  # nothing more arrives: no double counting, no repeated alert
        per_day()
        expect_alerts(settings, start, r, expected_alerts, log)()

        daily = q(settings, f"SELECT sum(net_kg) FROM tonnage_daily WHERE {DAYS} GROUP BY time(1d), site, "
                            f"category {TZ}", r)
        assert {(x["site"], x["category"], x["time"]): x["sum"] for x in daily if x["sum"] is not None} == {
            (f"inc-{r}", "residual", MAR1): 27_000, (f"inc-{r}", "kitchen", MAR1): 10_000,
            (f"inc-{r}", "residual", MAR2): 20_000, (f"inc-{r}", "kitchen", MAR2): 5_000,
            (f"lf-{r}", "residual", MAR1): 8_000, (f"lf-{r}", "construction", MAR2): 9_000,
            (f"lf-{r}", "kitchen", MAR2): 3_000}
        hourly = q(settings, f"SELECT sum(net_kg) FROM weighing WHERE site = 'inc-{r}' AND {DAYS} "
                             f"GROUP BY time(1h), origin {TZ}", r)
        got_h = {(x["origin"], x["time"]): x["sum"] for x in hourly if x["sum"] is not None}
        hour = 3_600_000_000_000
        assert got_h == {("o1", MAR2 - hour): 27_000, ("o2", MAR2 - hour): 10_000,  # 23:00 on 1 March
                         ("o1", MAR2): 20_000, ("o2", MAR2): 5_000}, got_h  # 00:00 on 2 March
        truck = q(settings, f"SELECT sum(net_kg), count(net_kg) FROM weighing WHERE plate = '桂B-A' "
                            f"AND site = 'inc-{r}' AND {DAYS} GROUP BY time(1d) {TZ}", r)
        assert [(x["time"], x["sum"], x["count"]) for x in truck if x["sum"]] == [
            (MAR1, 12_000, 1), (MAR2, 20_000, 1)]
    finally:
        stop(proc)
    assert "duplicate" in log.read_text()
