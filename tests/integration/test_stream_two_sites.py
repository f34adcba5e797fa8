"""Issue 11 finding 5 on the real services: two sites each with a weighbridge `wb-1`, sending the
SAME msg ids, through the bridge's routing (stream/validation.py: topic and key) and a real
worker on real Kafka and InfluxDB. Both sites' tickets are counted, each exactly once; before,
the stream kept one state for `wb-1` and dropped the second site's tickets as duplicates."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contract import Weighing, encode, mqtt_topic
from contract.events import Direction, WasteCategory, WeighingFlag
from stream.topics_admin import ensure_topics
from stream.validation import Routed, validate
from tests.integration.workerkit import read_alerts, skip_backlog, start_worker, stop, wait_until
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PER_SITE = 30


def site_tickets(site: str, net0: float) -> list[Weighing]:
    """`wb-1` of `site`: seq 1..PER_SITE of one epoch, so two sites share every msg id."""
    now = datetime.now(UTC).replace(microsecond=0)
    epoch = int(time.time()) - 86_400
    return [Weighing(msg_id=f"wb-1:{epoch}:{seq}", device_id="wb-1", site_id=site,
                     ts=now + timedelta(seconds=seq), ticket_id=f"T{seq}", plate="沪A12345",
                     direction=Direction.INBOUND, gross_kg=20000.0 + net0 + seq, tare_kg=20000.0,
                     net_kg=net0 + seq, category=WasteCategory.KITCHEN, origin="district-3",
                     flags=(WeighingFlag.DOUBLE_WEIGHING,) if seq == 1 else ())
            for seq in range(1, PER_SITE + 1)]


async def produce_as_bridge(settings: Settings, events: list[Weighing]) -> None:
    """Each ticket as the bridge routes it: `validate` on its MQTT topic gives the Kafka topic and key."""
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for w in events:
            routed = validate(mqtt_topic(w.site_id, "weighbridge", w.device_id, "weighing"), encode(w))
            assert isinstance(routed, Routed), routed
            await producer.send(routed.kafka_topic, routed.payload, key=routed.key)
        await producer.flush()
    finally:
        await producer.stop()


def daily_per_site(settings: Settings) -> dict[str, tuple[float, int]]:
    """The worker's running totals (its per-device state), summed over the local days, per site."""
    rows = influxql(settings, "SELECT sum(net_kg) AS kg, sum(tickets) AS n FROM tonnage_daily GROUP BY site")
    return {r["site"]: (r["kg"], r["n"]) for r in rows}


def tickets_per_site(settings: Settings) -> dict[str, int]:
    rows = influxql(settings, "SELECT count(net_kg) AS n FROM weighing GROUP BY site")
    return {r["site"]: r["n"] for r in rows}


def test_two_sites_each_with_wb_1_are_both_counted_exactly_once(
        settings: Settings, run_id: str, tmp_path: Path) -> None:
    a, b = f"a-{run_id}", f"b-{run_id}"
    ta, tb = site_tickets(a, 1000.0), site_tickets(b, 5000.0)
    assert [t.msg_id for t in ta] == [t.msg_id for t in tb]
    repeats = ta[::5] + tb[::7]  # redeliveries: dropped, each once
    asyncio.run(skip_backlog(settings))
    asyncio.run(produce_as_bridge(settings, [*ta, *tb, *repeats]))
    want = {a: (sum(t.net_kg for t in ta), PER_SITE), b: (sum(t.net_kg for t in tb), PER_SITE)}
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    try:
        got = wait_until(lambda: daily_per_site(settings) == want and daily_per_site(settings), 90, proc, log,
                         f"tonnage_daily per site {want}")
        time.sleep(2.0)  # and nothing more arrives (no double counting)
        assert daily_per_site(settings) == got == want
        assert tickets_per_site(settings) == {a: PER_SITE, b: PER_SITE}
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    text = log.read_text()
    summary = re.search(r"tonnage: (\d+) processed, (\d+) duplicates", text)
    assert summary is not None, text[-3000:]
    assert (int(summary[1]), int(summary[2])) == (2 * PER_SITE, len(repeats))

    alerts = asyncio.run(read_alerts(settings, lambda x: x.get("site_id") in (a, b)))
    double = {x["alert_id"]: x["site_id"] for x in alerts if x["kind"] == "weighbridge_double_weighing"}
    assert sorted(double.values()) == [a, b]  # one per site: not taken for the same incident

