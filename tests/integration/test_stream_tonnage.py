"""The Faust worker against the real Kafka and InfluxDB: exact tonnage despite duplicates and a kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contract import Weighing, encode
from contract.events import Direction, WasteCategory
from stream.topics_admin import ensure_topics
from tests.integration.test_stream_tonnage_analytics import skip_history
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def tickets(run: str, devices: int, per_device: int, seq0: int = 0) -> list[Weighing]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        Weighing(
            msg_id=f"wb{d}-{run}:1:{seq0 + i}", device_id=f"wb{d}-{run}", site_id=f"site{d % 2}-{run}",
            ts=now + timedelta(seconds=seq0 + i), ticket_id=f"T{seq0 + i}", plate="沪A12345",
            direction=Direction.INBOUND, gross_kg=20000.0 + 10 * i, tare_kg=10000.0, net_kg=10000.0 + 10 * i,
            category=WasteCategory.KITCHEN if i % 3 else WasteCategory.CONSTRUCTION, origin="district-3",
        )
        for d in range(devices)
        for i in range(per_device)
    ]


async def produce(settings: Settings, events: list[Weighing]) -> None:
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for w in events:
            await producer.send("ws.weighings", encode(w), key=w.device_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """Faust's CLI starts its web server whatever the app says: a free port, so workers run side by side."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, WS_FAUST_WEB_PORT=str(port), WS_INFLUX_DB=settings.influx_db,
               WS_FAUST_APP_ID=settings.faust_app_id,
               WS_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, WS_INFLUX_URL=settings.influx_url,
               WS_FAUST_SESSION_TIMEOUT_S="8")  # a kill -9'd member is evicted quickly
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.worker", "worker", "-l", "info"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)


def expected_per_site(events: list[Weighing]) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}
    for w in {w.msg_id: w for w in events}.values():
        kg, n = out.get(w.site_id, (0.0, 0))
        out[w.site_id] = (kg + w.net_kg, n + 1)
    return out


def influx_per_site(settings: Settings, run: str) -> tuple[dict[str, tuple[float, int]], dict[str, float]]:
    try:
        tickets = influxql(settings, "SELECT sum(net_kg) AS kg, count(net_kg) AS n FROM weighing "
                           "GROUP BY site")
        daily = influxql(settings, "SELECT sum(net_kg) AS kg FROM tonnage_daily GROUP BY site")
    except Exception:
        return {}, {}
    return ({r["site"]: (r["kg"], r["n"]) for r in tickets if run in r["site"]},
            {r["site"]: r["kg"] for r in daily if run in r["site"]})


def wait_for_totals(settings: Settings, run: str, expected: dict[str, tuple[float, int]], timeout: float,
                    proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    got: tuple[dict[str, tuple[float, int]], dict[str, float]] = ({}, {})
    want_daily = {site: kg for site, (kg, _) in expected.items()}
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        got = influx_per_site(settings, run)
        if got == (expected, want_daily):
            time.sleep(2.0)  # and nothing more arrives (no double counting)
            assert influx_per_site(settings, run) == (expected, want_daily)
            return
        time.sleep(0.5)
    raise AssertionError(f"InfluxDB has {got}, want {expected}; log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, log: Path | None = None) -> int:
    """Signal the worker and wait 30 s. A worker that does not stop is asked (SIGUSR1: mode's worker
    writes every thread's and coroutine's stack to its log) where it hangs, then killed."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3)
        proc.kill()
        proc.wait()
        where = log.read_text()[-40000:] if log is not None else "(no log)"
        raise AssertionError(f"worker did not stop within 30 s of signal {sig}; stacks:\n{where}") from None


def test_worker_sums_exactly_despite_duplicates(settings: Settings, run_id: str, tmp_path: Path) -> None:
    skip_history(settings, "weighing", "deposit", "bin_level", "truck_telemetry")
    events = tickets(run_id, devices=4, per_device=50)
    with_dups = events + events[::7] + events[:10]
    asyncio.run(produce(settings, with_dups))
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    try:
        wait_for_totals(settings, run_id, expected_per_site(events), 90, proc, log)
    finally:
        assert stop(proc, log=log) == 0, log.read_text()[-3000:]
    assert "duplicate" in log.read_text()


def test_totals_exact_after_kill_9_and_restart(settings: Settings, run_id: str, tmp_path: Path) -> None:
    skip_history(settings, "weighing", "deposit", "bin_level", "truck_telemetry")
    first = tickets(run_id, devices=2, per_device=40)
    asyncio.run(produce(settings, first))
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    try:
        wait_for_totals(settings, run_id, expected_per_site(first), 90, proc, log)
    finally:
        stop(proc, signal.SIGKILL)  # no commit, no flush: the changelog may be ahead of the offsets
    second = tickets(run_id, devices=2, per_device=30, seq0=40)
    asyncio.run(produce(settings, first[-15:] + second + second[:5]))  # redeliveries around the crash
    proc = start_worker(settings, log)
    try:
        wait_for_totals(settings, run_id, expected_per_site(first + second), 90, proc, log)
    finally:
        assert stop(proc, log=log) == 0, log.read_text()[-3000:]
