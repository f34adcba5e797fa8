"""Transport analysis against the real Kafka and InfluxDB: a known track, with duplicates, gives
exactly its alerts (each once) and its sealed-transport km."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contract import encode
from contract.events import Envelope, TruckTelemetry
from contract.topics import ALL_KAFKA_TOPICS, KAFKA_TOPICS
from stream.topics_admin import ensure_topics
from wastestream.influxql import influxql
from wastestream.settings import REPO_ROOT, Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def settings(run_id: str) -> Iterator[Settings]:
    s = dataclasses.replace(load_settings(), influx_db=f"ws_test_{run_id}", faust_app_id=f"ws-test-{run_id}")
    yield s
    query = urllib.parse.urlencode({"q": f'DROP DATABASE "{s.influx_db}"'})
    urllib.request.urlopen(urllib.request.Request(f"{s.influx_url}/query?{query}", method="POST"), timeout=10)


async def produce(settings: Settings, events: Sequence[Envelope]) -> None:
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    await skip_backlog(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for e in events:
            await producer.send(KAFKA_TOPICS[e.event], encode(e), key=e.device_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def skip_backlog(settings: Settings) -> None:
    """Commit the source topics' current end offsets for the worker's group (= Faust app id).

    The shared topics hold every earlier run's data (at times 100k+ tickets of a load test);
    a fresh app would replay all of it (auto_offset_reset=earliest) before reaching ours.
    """
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.faust_app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in ALL_KAFKA_TOPICS for p in range(settings.kafka_partitions)]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in end.items()})
    finally:
        await consumer.stop()


def free_port() -> int:
    """Faust binds its web port even when other workers run here; give each worker its own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = dict(os.environ, WS_INFLUX_DB=settings.influx_db, WS_FAUST_APP_ID=settings.faust_app_id,
                   WS_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, WS_INFLUX_URL=settings.influx_url,
                   WS_FAUST_SESSION_TIMEOUT_S="8", WS_FAUST_WEB_PORT=str(free_port()), **env)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.app", "worker", "-l", "info"],
                                stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=REPO_ROOT)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 20 s (state is in the changelog either way; see the report)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


async def read_alerts(settings: Settings, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every alert on ws.alerts so far that `keep` selects (from the beginning, no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(KAFKA_TOPICS["alert"], p) for p in range(settings.kafka_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[dict[str, Any]] = []
        while [p for p in parts if await consumer.position(p) < end[p]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                out += [a for a in (json.loads(r.value) for r in records) if keep(a)]
        return out
    finally:
        await consumer.stop()


def wait_until(check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes], log: Path,
               what: str) -> Any:
    """Poll `check` until it returns something truthy; fail with the worker's log tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            last = check()
        except Exception as exc:  # InfluxDB database not created yet, ...
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(1.0)
    raise AssertionError(f"{what}: last {last!r}; log:\n{log.read_text()[-3000:]}")


def assert_alerts_once(alerts: list[dict[str, Any]], kinds: set[str], log: Path) -> dict[str, dict[str, Any]]:
    """Exactly one alert id per expected kind on ws.alerts, each raised once by OUR worker.

    ws.alerts is shared: any other worker that replays ws.truck-telemetry from the start (a
    concurrent test, a dev worker) re-sends the same alerts with the same deterministic ids,
    so "once" is counted in our worker's log, and ws.alerts is checked for the id set.
    """
    ids = {a["alert_id"]: a for a in alerts}
    assert sorted(a["kind"] for a in ids.values()) == sorted(kinds), ids
    text = log.read_text()
    for alert_id in ids:
        assert text.count(f"raised alert {alert_id} ") == 1, alert_id
    return {a["kind"]: a for a in ids.values()}


# ------------------------------------------------------------------------------- the track

SITE_LAT, SITE_LON = 24.392, 109.399  # inside xn-liubei (stream/rules/liuzhou.yaml)
STEP_DEG = 0.0018  # ~200 m north per 10 s report


def track(run: str, base: datetime) -> list[TruckTelemetry]:
    """Drive north to the disposal site: an uncovered stretch, a dump on the way, the legal dump."""
    dev, plate = f"ta-{run}", f"TA{run}"
    out: list[TruckTelemetry] = []
    state = dict(lat=SITE_LAT - 30 * STEP_DEG, speed_kmh=72.0, lid_closed=True, bed_raised=False,
                 load_kg=15000.0)

    def report(dt: float, **kw: Any) -> None:
        state.update(kw)
        out.append(TruckTelemetry(
            msg_id=f"{dev}:1:{len(out) + 1}", device_id=dev, site_id=f"fleet-{run}",
            ts=base + timedelta(seconds=dt), plate=plate, lat=state["lat"], lon=SITE_LON,
            speed_kmh=state["speed_kmh"], lid_closed=state["lid_closed"], bed_raised=state["bed_raised"],
            load_kg=state["load_kg"], ignition=True))

    t = 0.0
    for i in range(12):  # 0..110 s; lid open from report 3 to report 12 (90 s): uncovered
        report(t, lid_closed=not (3 <= i <= 11))
        state["lat"] += STEP_DEG
        t += 10
    report(t, lid_closed=True)  # 120 s
    state["lat"] += STEP_DEG
    t += 10
    report(t, speed_kmh=0.0)  # stops outside: dump 6 t
    report(t + 5, bed_raised=True)
    report(t + 10, load_kg=12000.0)
    report(t + 15, load_kg=9000.0)
    report(t + 20, bed_raised=False)
    report(t + 30, speed_kmh=72.0)
    t += 30
    while state["lat"] < SITE_LAT - 1e-9:
        state["lat"] = min(SITE_LAT, state["lat"] + STEP_DEG)
        t += 10
        report(t)
    report(t + 10, speed_kmh=0.0)  # inside the site: the legal dump, and the manifest arrival
    report(t + 15, bed_raised=True)
    report(t + 20, load_kg=4000.0)
    report(t + 25, load_kg=20.0)
    report(t + 30, bed_raised=False)
    report(t + 40)
    return out


def expected_km(reports: Sequence[TruckTelemetry]) -> tuple[float, float]:
    """Loaded and sealed km, computed independently: all moves are due north (1° = R·π/180 m)."""
    loaded = sealed = 0.0
    for a, b in itertools.pairwise(reports):
        d = abs(b.lat - a.lat) * 6_371_008.8 * math.pi / 180 / 1000
        if a.load_kg > 1000:
            loaded += d
            sealed += d if a.lid_closed else 0.0
    return loaded, sealed


def test_track_gives_exactly_its_alerts_and_sealed_km(settings: Settings, run_id: str, tmp_path: Path
                                                      ) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    if base.astimezone(ZoneInfo("Asia/Shanghai")).hour == 23:
        base -= timedelta(hours=1)  # keep the track inside one Beijing day
    reports = track(run_id, base)
    with_dups = reports[:20] + reports[::5] + reports[20:] + reports[12:18]
    asyncio.run(produce(settings, with_dups))
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    dev = f"ta-{run_id}"
    want_kinds = {"illegal_dumping", "uncovered_transport", "manifest_mismatch"}
    try:
        def alerts_in() -> list[dict[str, Any]] | None:
            got = asyncio.run(read_alerts(settings, lambda a: a["device_id"] == dev))
            mine = [a for a in got if f"raised alert {a['alert_id']} " in log.read_text()]
            return got if {a["kind"] for a in mine} >= want_kinds else None

        wait_until(alerts_in, 80, proc, log, "alerts")

        loaded, sealed = expected_km(reports)

        def daily() -> dict[str, Any] | None:
            rows = influxql(settings, f"SELECT * FROM transport_daily WHERE device = '{dev}'")
            positions = influxql(settings, f"SELECT count(lat) FROM truck_position WHERE device = '{dev}'")
            done = rows and positions and positions[0]["count"] == len(reports) \
                and abs(rows[0]["loaded_km"] - loaded) < 1e-6
            return {"daily": rows, "positions": positions} if done else None

        got = wait_until(daily, 30, proc, log, "transport_daily")
        time.sleep(3)  # nothing more arrives
        alerts = asyncio.run(read_alerts(settings, lambda a: a["device_id"] == dev))
    finally:
        stop(proc)
    by_kind = assert_alerts_once(alerts, want_kinds, log)
    dump = by_kind["illegal_dumping"]
    assert dump["severity"] == "critical" and f"{dev}:1:15" in dump["evidence"]  # the bed-raise report
    assert (dump["lat"], dump["lon"]) == (reports[14].lat, reports[14].lon)
    assert by_kind["uncovered_transport"]["evidence"][0] == f"{dev}:1:4"
    mismatch = by_kind["manifest_mismatch"]["summary"]
    assert "with 15000 kg" in mismatch and "with 9000 kg (40.0 % less" in mismatch
    [row] = got["daily"]
    assert row["loaded_km"] == pytest.approx(loaded, abs=1e-6)
    assert row["sealed_km"] == pytest.approx(sealed, abs=1e-6)
    assert row["sealed_pct"] == pytest.approx(100 * sealed / loaded)
    assert sealed < loaded
    local_midnight = base.astimezone(ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0)
    assert row["time"] == int(local_midnight.timestamp()) * 10**9
