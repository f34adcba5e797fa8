"""The sink against the real InfluxDB (v1 /write): exact sums, idempotent replay, dead-letter when down."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contract import Weighing
from contract.events import Direction, WasteCategory
from stream.agents.tonnage_points import weighing_point
from stream.sinks import shared
from stream.sinks.config import SinkConfig
from stream.sinks.influx import InfluxSink, make_transport
from stream.sinks.influx_v1 import V1Transport
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def settings() -> Iterator[Settings]:
    s = dataclasses.replace(load_settings(), influx_db=f"ws_test_{uuid.uuid4().hex[:8]}", influx_api="v1")
    yield s
    query = urllib.parse.urlencode({"q": f'DROP DATABASE "{s.influx_db}"'})
    urllib.request.urlopen(urllib.request.Request(f"{s.influx_url}/query?{query}", method="POST"), timeout=10)


def tickets(n: int) -> list[Weighing]:
    base = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    return [
        Weighing(
            msg_id=f"wb-{i % 3}:1:{i}", device_id=f"wb-{i % 3}", site_id=f"site-{i % 2}",
            ts=base + timedelta(seconds=i, microseconds=i), ticket_id=f"T{i}", plate="沪A1234" + str(i % 10),
            direction=Direction.INBOUND, gross_kg=20000.0 + i, tare_kg=10000.0, net_kg=10000.0 + i,
            category=WasteCategory.KITCHEN if i % 4 else WasteCategory.RECYCLABLE, origin="区 3",
        )
        for i in range(n)
    ]


def sums(settings: Settings) -> dict[str, tuple[float, int]]:
    rows = influxql(settings, "SELECT sum(net_kg) AS kg, count(net_kg) AS n FROM weighing GROUP BY site")
    return {r["site"]: (r["kg"], r["n"]) for r in rows}


async def write_all(settings: Settings, batch: list[Weighing]) -> InfluxSink:
    async def no_deadletter(record: bytes) -> None:
        raise AssertionError(record)

    sink = InfluxSink(make_transport(settings), no_deadletter, SinkConfig(batch_size=1000, flush_ms=50))
    await sink.start()
    for w in batch:
        await sink.write(weighing_point(w))
    await sink.flush(20)
    await sink.stop()
    return sink


def test_sums_are_exact_and_replay_overwrites(settings: Settings) -> None:
    batch = tickets(2500)
    expected: dict[str, tuple[float, int]] = {}
    for w in batch:
        kg, n = expected.get(w.site_id, (0.0, 0))
        expected[w.site_id] = (kg + w.net_kg, n + 1)
    sink = asyncio.run(write_all(settings, batch))
    assert sink.stats.points == 2500 and sink.stats.batches >= 3
    assert sums(settings) == expected
    asyncio.run(write_all(settings, batch[:1200]))  # a replay of part of the stream
    assert sums(settings) == expected
    rows = influxql(settings, "SELECT plate, origin FROM weighing WHERE ticket_id = 'T7'")
    assert rows[0]["plate"] == "沪A12347" and rows[0]["origin"] == "区 3"


def test_unreachable_influx_retries_then_deadletters_without_hanging(settings: Settings) -> None:
    async def scenario() -> tuple[InfluxSink, list[dict[str, object]], float]:
        records: list[dict[str, object]] = []

        async def deadletter(record: bytes) -> None:
            records.append(json.loads(record))

        transport = V1Transport("http://127.0.0.1:9", settings.influx_db, timeout_s=1.0)  # nothing listens
        sink = InfluxSink(transport, deadletter,
                          SinkConfig(flush_ms=20, backoff_initial_s=0.05, backoff_max_s=0.2, give_up_s=1.5))
        start = time.monotonic()
        await sink.start()
        done: list[int] = []
        for w in tickets(10):
            await sink.write(weighing_point(w), on_done=lambda: done.append(1))
        await sink.flush(10)
        await sink.stop()
        assert len(done) == 10
        return sink, records, time.monotonic() - start

    sink, records, elapsed = asyncio.run(scenario())
    assert elapsed < 8
    assert sink.stats.retries >= 3 and sink.stats.deadlettered == 10 and sink.stats.points == 0
    assert records
    assert all("InfluxDB write to influx-v1:http://127.0.0.1:9" in str(r["reason"]) for r in records)
    assert sum(int(r["points"]) for r in records) == 10  # type: ignore[call-overload]
    assert "沪A1234" in str(records[0]["payload"])


def _has_v2_write(url: str) -> bool:
    try:
        request = urllib.request.Request(f"{url}/api/v2/write?bucket=x", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as exc:  # 1.8 answers 404 "database not found"; 1.6 "page not found"
        return exc.code != 404 or b"database not found" in exc.read()
    except OSError:
        return False
    return True


def test_v2_transport_when_the_server_has_it(settings: Settings) -> None:
    """Runs against InfluxDB 1.8+/2.x (deploy/local WS_INFLUX_IMPL=1.8); 1.6 has no /api/v2/write."""
    if not _has_v2_write(settings.influx_url):
        pytest.skip("this InfluxDB has no /api/v2/write (1.6)")
    query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{settings.influx_db}"'})
    request = urllib.request.Request(f"{settings.influx_url}/query?{query}", method="POST")
    urllib.request.urlopen(request, timeout=10)
    v2 = dataclasses.replace(settings, influx_api="v2", influx_db=f"{settings.influx_db}/autogen")
    batch = tickets(100)
    asyncio.run(write_all(v2, batch))
    assert sums(settings) == {
        site: (sum(w.net_kg for w in batch if w.site_id == site), sum(1 for w in batch if w.site_id == site))
        for site in {w.site_id for w in batch}
    }


def test_agents_of_a_process_share_one_sink_and_one_request_per_flush(settings: Settings) -> None:
    """stream/sinks/shared.py: two agents' points go in one write; each agent's acks run after its
    points are stored; the first to stop flushes its own points while the other keeps writing;
    the last stops the sink, and a later agent gets a new one."""
    async def no_deadletter(record: bytes) -> None:
        raise AssertionError(record)

    async def scenario() -> None:
        config = SinkConfig(batch_size=5000, flush_ms=300)
        a, b = await asyncio.gather(shared.acquire(settings, no_deadletter, config),
                                    shared.acquire(settings, no_deadletter, config))
        assert a is b
        acked: dict[str, list[str]] = {"a": [], "b": []}
        batch = tickets(40)
        for i, w in enumerate(batch):
            agent = "a" if i % 2 else "b"
            await a.write(weighing_point(w),
                          on_done=lambda agent=agent, w=w: acked[agent].append(w.ticket_id))
        await shared.release(a, timeout=10)  # agent a stops; b still holds the sink
        assert a.stats.batches == 1 and a.stats.points == 40  # one request for both agents' points
        assert acked["a"] == [w.ticket_id for i, w in enumerate(batch) if i % 2]
        assert sums(settings) == {site: (sum(w.net_kg for w in batch if w.site_id == site),
                                         sum(1 for w in batch if w.site_id == site))
                                  for site in {w.site_id for w in batch}}
        more = tickets(60)[40:]
        for w in more:
            await b.write(weighing_point(w), on_done=lambda w=w: acked["b"].append(w.ticket_id))
        await shared.release(b, timeout=10)  # the last user: flushed and stopped
        evens = [w.ticket_id for i, w in enumerate(batch) if not i % 2]
        assert acked["b"] == evens + [w.ticket_id for w in more]
        assert b.stats.points == 60
        c = await shared.acquire(settings, no_deadletter, config)
        assert c is not a
        await shared.release(c)
        with pytest.raises(ValueError):
            await shared.release(c)

    asyncio.run(scenario())
