"""Device health against the real Kafka and InfluxDB: an edge's Last-Will, a device reporting
offline then back, a device going silent (short `offline_after_s` from a test rules file) and a
growing outbox give exactly their alerts (each once) and one `device_status` point per status;
a site whose edge loses power after more than the dedup window of heartbeats gives one alert
(its Will), not one per device, and silence counts again once the edge is back."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from contract import encode
from contract.events import DeviceState, DeviceStatus
from contract.topics import KAFKA_TOPICS
from stream.alerting.make import alert_id
from stream.dedup import WINDOW
from stream.rules import DEFAULT_RULES
from tests.integration.workerkit import (
    produce,
    raised,
    read_alerts,
    start_worker,
    stop,
    wait_until,
)
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings

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


def write_rules(tmp_path: Path, outbox_depth: int) -> Path:
    """The default rules with a short `offline_after_s` (and the given outbox threshold)."""
    rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    rules["device_health"] = {"offline_after_s": OFFLINE_AFTER_S, "stuck_after_readings": 30,
                              "outbox_growing_depth": outbox_depth}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return path


def test_offline_silence_outbox_alerts_once_and_points(settings: Settings, run_id: str,
                                                       tmp_path: Path) -> None:
    rules_file = write_rules(tmp_path, OUTBOX_DEPTH)
    site = f"hs-{run_id}"
    quiet_site = f"hsq-{run_id}"  # `silent`'s edge is up: at `site`, the edge's Will explains silence
    stopped_site = f"hss-{run_id}"  # stopped on purpose (maintenance): raises nothing, now or later
    sites = {site, quiet_site, stopped_site}
    stopped_edge, stopped_device = f"{stopped_site}-edge", f"hssd-{run_id}"
    planned = [status(stopped_edge, stopped_site, 1), status(stopped_device, stopped_site, 1),
               status(stopped_device, stopped_site, 2, "stopped", error="planned stop (SIGTERM)"),
               status(stopped_edge, stopped_site, 2, "stopped", error="planned stop (SIGTERM)")]
    edge, silent, flaky = f"{site}-edge", f"hsw-{run_id}", f"hsa-{run_id}"
    # The edge's Will (seq 1) was composed at connect time: it arrives after seqs 2..5.
    edge_statuses = [status(edge, site, 2), status(edge, site, 3, depth=OUTBOX_DEPTH + 10),
                     status(edge, site, 4, depth=OUTBOX_DEPTH * 2), status(edge, site, 5, depth=3),
                     status(edge, site, 1, "offline", error="connection lost (last will)")]
    first = [*edge_statuses[:3], edge_statuses[1], edge_statuses[0], edge_statuses[3],  # duplicates
             status(silent, quiet_site, 1), status(flaky, site, 1),
             status(flaky, site, 2, "offline", error="SerialException: device reports readiness to read "
                                                     "but returned no data"), *planned]
    asyncio.run(produce(settings, first))
    time.sleep(0.01)  # the Will comes later (its own millisecond: points are stamped on arrival)
    asyncio.run(send_now(settings, edge_statuses[4:]))
    first.append(edge_statuses[4])
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, WS_RULES=str(rules_file))
    want = {alert_id("outbox_growing", f"{site}/{edge}|{edge}:1:4"),  # 2nd over, not falling; site/device
            alert_id("device_offline", f"{site}/{edge}|{edge}:1:1"),
            alert_id("device_offline", f"{site}/{flaky}|{flaky}:1:2"),
            alert_id("device_offline", f"{quiet_site}/{silent}|silent-after|{silent}:1:1")}
    sent = {s.msg_id for s in first}
    seq = 2
    try:
        def alerts_in() -> list[dict[str, Any]] | None:
            nonlocal seq
            seq += 1  # `flaky` is back and keeps talking: never silent
            beat = status(flaky, site, seq)
            asyncio.run(send_now(settings, [beat]))
            sent.add(beat.msg_id)
            got = asyncio.run(read_alerts(settings, lambda a: a["site_id"] in sites))
            mine = {a["alert_id"] for a in got if a["alert_id"] in raised(log)}
            return got if mine >= want else None

        wait_until(alerts_in, 70, proc, log, "alerts")
        for _ in range(OFFLINE_AFTER_S // 2 + 2):  # nothing more comes: `flaky` stays heard
            seq += 1
            beat = status(flaky, site, seq)
            asyncio.run(send_now(settings, [beat]))
            sent.add(beat.msg_id)
            time.sleep(1.0)
        query = (f"SELECT * FROM device_status WHERE site = '{site}' OR site = '{quiet_site}' "
                 f"OR site = '{stopped_site}'")
        rows = wait_until(lambda: (r := influxql(settings, query)) and {x["msg_id"] for x in r} == sent and r,
                          15, proc, log, "device_status points")
        alerts = asyncio.run(read_alerts(settings, lambda a: a["site_id"] in sites))
    finally:
        stop(proc)
    by_id = {a["alert_id"]: a for a in alerts}
    assert set(by_id) == want, by_id
    for aid in want:  # ws.alerts is shared (another worker may replay): "once" is what OUR worker raised
        assert raised(log)[aid] == 1, aid
    assert all(a["severity"] == "warning" and a["subject"] == a["device_id"] for a in by_id.values())
    will = by_id[alert_id("device_offline", f"{site}/{edge}|{edge}:1:1")]
    assert will["evidence"] == [f"{edge}:1:1"] and "lost its connection" in will["summary"]
    assert "last will" not in will["summary"]  # the edge's own words are not for officers
    serial = by_id[alert_id("device_offline", f"{site}/{flaky}|{flaky}:1:2")]
    assert "SerialException" not in serial["summary"] and "stopped responding" in serial["summary"]
    assert not [a for a in alerts if a["site_id"] == stopped_site], "a planned stop raised an alert"
    silence = by_id[alert_id("device_offline", f"{quiet_site}/{silent}|silent-after|{silent}:1:1")]
    assert silence["evidence"] == [f"{silent}:1:1"]
    by_msg = {r["msg_id"]: r for r in rows}
    assert by_msg[f"{edge}:1:1"]["state"] == "offline" and by_msg[f"{edge}:1:1"]["online"] is False
    assert by_msg[f"{edge}:1:3"]["outbox_depth"] == OUTBOX_DEPTH + 10
    assert by_msg[f"{edge}:1:3"]["online"] is True
    assert by_msg[f"{flaky}:1:2"]["last_error"].startswith("SerialException: ")  # the raw detail stays here
    assert by_msg[f"{stopped_device}:1:2"]["state"] == "stopped"
    last_edge = max((r for r in rows if r["device"] == edge), key=lambda r: r["time"])
    assert last_edge["msg_id"] == f"{edge}:1:1", "points are stamped on arrival: the Will is the last word"


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partition of a record key (the bridge keys statuses by device id)."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions))))


@pytest.mark.timeout(240)
def test_site_outage_one_alert_from_a_will_beyond_the_window_then_silence_after_return(
        settings: Settings, run_id: str, tmp_path: Path) -> None:
    """An edge up for more than dedup.WINDOW heartbeats loses power: its Will (seq 1, taken at
    connect) is the site's one alert, once although MQTT delivers it twice; its devices, on other
    partitions, raise no silence alert while it is offline; once it is back, the device that
    stays silent is alerted, the one that talks is not."""
    rules_file = write_rules(tmp_path, 10**6)
    site = f"ho-{run_id}"
    edge = f"{site}-edge"
    parts = settings.kafka_partitions
    others = (f"hod{i}-{run_id}" for i in range(1000))
    talker, mute = [d for d in others if partition_of(d, parts) != partition_of(edge, parts)][:2]
    beats = WINDOW + 200
    asyncio.run(produce(settings, [*(status(edge, site, seq) for seq in range(2, beats + 2)),
                                   status(talker, site, 1), status(mute, site, 1)]))
    will = status(edge, site, 1, "offline", error="connection lost (last will)")
    asyncio.run(send_now(settings, [will]))
    time.sleep(0.05)
    asyncio.run(send_now(settings, [will]))  # the broker delivers it again (QoS 1): a second record
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, WS_RULES=str(rules_file))
    will_alert = alert_id("device_offline", f"{site}/{edge}|{will.msg_id}")
    mute_alert = alert_id("device_offline", f"{site}/{mute}|silent-after|{mute}:1:1")
    try:
        wait_until(lambda: will_alert in raised(log), 90, proc, log,
                   "the Will's alert")
        time.sleep(OFFLINE_AFTER_S + 8)  # longer than any device's silence, with timer ticks to spare
        early = asyncio.run(read_alerts(settings, lambda a: a["site_id"] == site))
        assert {a["alert_id"] for a in early} == {will_alert}, "edge offline: devices' silence is explained"
        seq, n = beats + 2, 1
        asyncio.run(send_now(settings, [status(edge, site, seq), status(talker, site, 2)]))  # back

        def mute_alerted() -> bool:
            nonlocal seq, n
            seq, n = seq + 1, n + 1  # the edge and `talker` keep talking
            asyncio.run(send_now(settings, [status(edge, site, seq), status(talker, site, n)]))
            return mute_alert in raised(log)

        wait_until(mute_alerted, 60, proc, log, "the silent device's alert after the edge's return")
        for _ in range(3):
            mute_alerted()
            time.sleep(1.0)
        query = f"SELECT * FROM device_status WHERE device = '{edge}'"
        last = f"{edge}:1:{seq}"
        rows = wait_until(lambda: (r := influxql(settings, query)) and last in {x["msg_id"] for x in r} and r,
                          30, proc, log, "the edge's points")
        alerts = asyncio.run(read_alerts(settings, lambda a: a["site_id"] == site))
    finally:
        stop(proc)
    assert {a["alert_id"] for a in alerts} == {will_alert, mute_alert}
    assert raised(log)[will_alert] == 1 and raised(log)[mute_alert] == 1
    assert [r["state"] for r in rows if r["msg_id"] == will.msg_id] == ["offline"], "one point for the Will"
    by_id = {a["alert_id"]: a for a in alerts}
    assert "lost its connection" in by_id[will_alert]["summary"]
    assert "since its edge came back" in by_id[mute_alert]["summary"]
