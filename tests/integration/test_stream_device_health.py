"""Device health against the real Kafka and InfluxDB: an edge's Last-Will, a device reporting
offline then back, a device going silent (short `offline_after_s` from a test rules file) and a
growing outbox give exactly their alerts (each once) and one `device_status` point per status."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from contract import encode
from contract.events import DeviceState, DeviceStatus
from contract.topics import KAFKA_TOPICS
from stream.alerting.make import alert_id
from stream.rules import DEFAULT_RULES
from tests.integration.workerkit import (
    produce,
    read_alerts,
    start_worker,
    stop,
    wait_until,
)
from wastestream.influxql import influxql
from wastestream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
OFFLINE_AFTER_S = 6
OUTBOX_DEPTH = 50


def status(device: str, site: str, seq: int, state: str = "online", depth: int = 0,
           error: str | None = None) -> DeviceStatus:
    return DeviceStatus(msg_id=f"{device}:1:{seq}", device_id=device, site_id=site, ts=datetime.now(UTC),
                        state=DeviceState(state), outbox_depth=depth, last_error=error)


async def send_now(s: Settings, events: list[DeviceStatus]) -> None:
    """Produce while the worker runs (no group offset commits, unlike `produce`)."""
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(KAFKA_TOPICS["device_status"], encode(e), key=e.device_id.encode())
    finally:
        await producer.stop()


def test_offline_silence_outbox_alerts_once_and_points(settings: Settings, run_id: str,
                                                       tmp_path: Path) -> None:
    rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    rules["device_health"] = {"offline_after_s": OFFLINE_AFTER_S, "stuck_after_readings": 30,
                              "outbox_growing_depth": OUTBOX_DEPTH}
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    site = f"hs-{run_id}"
    edge, silent, flaky = f"{site}-edge", f"hsw-{run_id}", f"hsa-{run_id}"
    # The edge's Will (seq 1) was composed at connect time: it arrives after seqs 2..5.
    edge_statuses = [status(edge, site, 2), status(edge, site, 3, depth=OUTBOX_DEPTH + 10),
                     status(edge, site, 4, depth=OUTBOX_DEPTH * 2), status(edge, site, 5, depth=3),
                     status(edge, site, 1, "offline", error="connection lost (last will)")]
    first = [*edge_statuses[:3], edge_statuses[1], edge_statuses[0], edge_statuses[3],  # duplicates
             status(silent, site, 1), status(flaky, site, 1),
             status(flaky, site, 2, "offline", error="serial port missing")]
    asyncio.run(produce(settings, first))
    time.sleep(0.01)  # the Will comes later (its own millisecond: points are stamped on arrival)
    asyncio.run(send_now(settings, edge_statuses[4:]))
    first.append(edge_statuses[4])
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, WS_RULES=str(rules_file))
    want = {alert_id("outbox_growing", f"{edge}|{edge}:1:3"),
            alert_id("device_offline", f"{edge}|{edge}:1:1"),
            alert_id("device_offline", f"{flaky}|{flaky}:1:2"),
            alert_id("device_offline", f"{silent}|silent-after|{silent}:1:1")}
    sent = {s.msg_id for s in first}
    seq = 2
    try:
        def alerts_in() -> list[dict[str, Any]] | None:
            nonlocal seq
            seq += 1  # `flaky` is back and keeps talking: never silent
            beat = status(flaky, site, seq)
            asyncio.run(send_now(settings, [beat]))
            sent.add(beat.msg_id)
            got = asyncio.run(read_alerts(settings, lambda a: a["site_id"] == site))
            raised = {a["alert_id"] for a in got if f"raised alert {a['alert_id']} " in log.read_text()}
            return got if raised >= want else None

        wait_until(alerts_in, 70, proc, log, "alerts")
        for _ in range(OFFLINE_AFTER_S // 2 + 2):  # nothing more comes: `flaky` stays heard
            seq += 1
            beat = status(flaky, site, seq)
            asyncio.run(send_now(settings, [beat]))
            sent.add(beat.msg_id)
            time.sleep(1.0)
        query = f"SELECT * FROM device_status WHERE site = '{site}'"
        rows = wait_until(lambda: (r := influxql(settings, query)) and {x["msg_id"] for x in r} == sent and r,
                          15, proc, log, "device_status points")
        alerts = asyncio.run(read_alerts(settings, lambda a: a["site_id"] == site))
    finally:
        stop(proc)
    by_id = {a["alert_id"]: a for a in alerts}
    assert set(by_id) == want, by_id
    text = log.read_text()
    for aid in want:  # ws.alerts is shared (another worker may replay): "once" is counted in OUR log
        assert text.count(f"raised alert {aid} ") == 1, aid
    assert all(a["severity"] == "warning" and a["subject"] == a["device_id"] for a in by_id.values())
    will = by_id[alert_id("device_offline", f"{edge}|{edge}:1:1")]
    assert will["evidence"] == [f"{edge}:1:1"] and "last will" in will["summary"]
    assert by_id[alert_id("device_offline", f"{silent}|silent-after|{silent}:1:1")]["evidence"] == \
        [f"{silent}:1:1"]
    by_msg = {r["msg_id"]: r for r in rows}
    assert by_msg[f"{edge}:1:1"]["state"] == "offline" and by_msg[f"{edge}:1:1"]["online"] is False
    assert by_msg[f"{edge}:1:3"]["outbox_depth"] == OUTBOX_DEPTH + 10
    assert by_msg[f"{edge}:1:3"]["online"] is True
    assert by_msg[f"{flaky}:1:2"]["last_error"] == "serial port missing"
    last_edge = max((r for r in rows if r["device"] == edge), key=lambda r: r["time"])
    assert last_edge["msg_id"] == f"{edge}:1:1", "points are stamped on arrival: the Will is the last word"
