"""The alert service's /metrics, /healthz and /readyz, as `wastestream alerts serve` on the real Kafka
(issue 13). Its webhook answers 500 (a stand-in receiver on loopback: the city's platform cannot run
here), so every push attempt fails: the failure counter must equal the failed attempts the service
recorded in its own store, and records in = what Kafka holds between the group's start and its
committed offsets."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from contract import encode
from contract.events import Severity
from stream.alerting.make import make_alert
from stream.topics_admin import ensure_topics
from tests.integration.metricskit import (
    answered,
    free_port,
    get,
    group_offsets,
    ready,
    scrape,
    stop_process,
    value,
    wait_for,
)
from wastestream.foundation.settings import REPO_ROOT, Settings
from wastestream.pipeline import commit_group_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOPIC = "ws.alerts"
CHANNEL = "obs-hook"


class Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def serve(tmp_path: Path, group: str, hook: str, metrics_port: int, **env: str
          ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    config = {"link_base_url": "https://zf.example.cn/alerts/", "kafka_group": group, "influx": False,
              "cooldown_s": 1800, "retry": {"attempts": 2, "initial_s": 0.2, "max_s": 0.5},
              "api": {"port": 0, "token": {"value": "obs-token"}},
              "channels": [{"type": "webhook", "name": CHANNEL, "url": hook, "secret": {"value": "s"},
                            "kinds": ["illegal_dumping"]}]}
    path, db, log = tmp_path / "alerts.yaml", tmp_path / "alerts.db", tmp_path / "alerts.log"
    path.write_text(json.dumps(config), encoding="utf-8")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wastestream.cli", "alerts", "serve", "--config",
                                 str(path), "--db", str(db), "--metrics-port", str(metrics_port)],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, **env),
                                cwd=REPO_ROOT)
    return proc, log, db


def committed_offsets(settings: Settings, group: str) -> dict[TopicPartition, int]:
    return asyncio.run(group_offsets(settings, group, TOPIC))[1]


async def produce(settings: Settings, unique: str) -> None:
    t0 = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(minutes=int(unique[:4], 16))
    alerts = [make_alert("illegal_dumping", Severity.CRITICAL, site_id="obs", device_id=f"truck-{unique}-{i}",
                         subject=f"桂B{unique[:4]}{i}", summary="车厢在消纳场外举升", evidence=[f"m{i}"],
                         ts=t0 + timedelta(seconds=i), dedup_key=f"{unique}:{i}") for i in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for a in alerts:
            await producer.send_and_wait(TOPIC, encode(a), key=a.alert_id.encode())
        await producer.send_and_wait(TOPIC, b'{"kind": "not an alert ' + unique.encode())
    finally:
        await producer.stop()


def failed_attempts(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT COUNT(*) FROM deliveries WHERE channel = ? AND status != 'sent'",
                           (CHANNEL,)).fetchone()
    return int(row[0])


def test_alert_service_counts_records_and_push_failures(live_services: Settings, tmp_path: Path, unique: str,
                                                        refusing_hook: str) -> None:
    settings, group = live_services, f"ws-alerts-obs-{unique}"
    asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions, [TOPIC]))
    asyncio.run(commit_group_at_end(settings.kafka_bootstrap, group, [TOPIC]))
    start = committed_offsets(settings, group)
    metrics_port = free_port()
    proc, log, db = serve(tmp_path, group, refusing_hook, metrics_port)
    try:
        wait_for(lambda: ready(metrics_port), "the alert service ready", 60, proc=proc, log=log)
        asyncio.run(produce(settings, unique))
        # both alerts pushed and failed twice (2 attempts), the poison record dead-lettered
        wait_for(lambda: failed_attempts(db) >= 4
                 and value(scrape(metrics_port), "ws_messages_deadlettered_total", topic=TOPIC) >= 1,
                 "the pushes to fail for good", 60, proc=proc, log=log)

        def settled() -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], int, int] | None:
            """The scrape, the committed records and the failed attempts, once they agree twice."""
            first = scrape(metrics_port), failed_attempts(db)
            end = committed_offsets(settings, group)
            again = scrape(metrics_port), failed_attempts(db)
            if first != again:
                return None
            return again[0], sum(end[tp] - start[tp] for tp in end), again[1]

        after, committed, failures = wait_for(settled, "counters at rest", 30, proc=proc, log=log)
        seen_in = value(after, "ws_messages_in_total", topic=TOPIC)
        assert seen_in == committed, (seen_in, committed)
        assert value(after, "ws_messages_out_total", topic=TOPIC) + \
            value(after, "ws_messages_deadlettered_total", topic=TOPIC) == seen_in
        assert value(after, "ws_messages_deadlettered_total", topic=TOPIC) >= 1
        assert value(after, "ws_push_failures_total", channel=CHANNEL) == failures >= 4
        assert value(after, "ws_pushes_total", channel=CHANNEL, result="failed") == failures
        assert value(after, "ws_pushes_total", channel=CHANNEL, result="ok") == 0
        assert value(after, "ws_alerts_ingested_total", outcome="new") >= 2
        assert value(after, "ws_ready", component="alerts") == 1
        assert get(metrics_port, "/healthz") == (200, "alive\n")
    finally:
        stop_process(proc)


def test_alert_service_not_started_is_not_ready(live_services: Settings, tmp_path: Path, unique: str,
                                               refusing_hook: str) -> None:
    metrics_port, nothing = free_port(), free_port()
    proc, log, _ = serve(tmp_path, f"ws-alerts-obs-{unique}", refusing_hook, metrics_port,
                         WS_KAFKA_BOOTSTRAP=f"127.0.0.1:{nothing}")
    try:
        status, body = wait_for(answered(metrics_port, "/readyz"), "an answer from /readyz", 30, proc=proc,
                                log=log)
        assert status == 503 and "service: starting" in body, body
        assert get(metrics_port, "/healthz")[0] == 200
    finally:
        stop_process(proc)
