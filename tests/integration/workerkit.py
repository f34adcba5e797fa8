"""Helpers for integration tests that run a Faust worker subprocess against the real services.

Each test gets its own Faust app id and InfluxDB database (fixtures `run_id`, `settings` in
conftest.py); a worker starts at the end of the shared topics (`skip_backlog`) so it sees only
the test's own records.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contract import encode
from contract.events import Envelope
from contract.topics import ALL_KAFKA_TOPICS, KAFKA_TOPICS
from stream.topics_admin import ensure_topics
from wastestream.foundation.settings import REPO_ROOT, Settings
from wastestream.pipeline import commit_group_at_end


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
    """The worker's group (= Faust app id) starts at the end of every topic: only this test's data."""
    await commit_group_at_end(settings.kafka_bootstrap, settings.faust_app_id, list(ALL_KAFKA_TOPICS))


def free_port() -> int:
    """Faust binds its web port even when other workers run here; give each worker its own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raised_file(log: Path) -> Path:
    """Where the worker logging to `log` records the alerts it raised (WS_RAISED_ALERTS_FILE)."""
    return log.with_name(log.name + ".raised.jsonl")


def raised(log: Path) -> Counter[str]:
    """How often the worker logging to `log` raised each alert id (its WS_RAISED_ALERTS_FILE)."""
    path = raised_file(log)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return Counter(json.loads(line)["alert_id"] for line in lines)


def start_worker(settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = dict(os.environ, WS_INFLUX_DB=settings.influx_db, WS_FAUST_APP_ID=settings.faust_app_id,
                   WS_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, WS_INFLUX_URL=settings.influx_url,
                   WS_FAUST_SESSION_TIMEOUT_S="8", WS_FAUST_WEB_PORT=str(free_port()),
                   WS_RAISED_ALERTS_FILE=str(raised_file(log)), **env)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.worker", "worker", "-l", "info"],
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
                out += [a for a in map(_alert_or_none, records) if a is not None and keep(a)]
        return out
    finally:
        await consumer.stop()


def _alert_or_none(record: Any) -> dict[str, Any] | None:
    """A ws.alerts record as JSON, or None: the topic is shared, and poison tests publish records
    there (1,000 nested arrays) that json.loads cannot read."""
    try:
        value = json.loads(record.value)
    except (ValueError, RecursionError, TypeError):
        return None
    return value if isinstance(value, dict) else None


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
    so "once" is counted in what our worker recorded as raised, and ws.alerts is checked for the id set.
    """
    ids = {a["alert_id"]: a for a in alerts}
    assert sorted(a["kind"] for a in ids.values()) == sorted(kinds), ids
    counts = raised(log)
    for alert_id in ids:
        assert counts[alert_id] == 1, alert_id
    return {a["kind"]: a for a in ids.values()}
