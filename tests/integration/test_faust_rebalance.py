"""Faust must keep delivering every record live across a rebalance (see stream/faust_fixes.py).

A tiny Faust app counts a fresh 6-partition topic while records are produced steadily: two
agents read the topic (as ws.weighings feeds tonnage and manifest), one fast and one lagging,
each acking its `noack_take` batches after a short "sink" wait like stream/agents/runner.py,
with a changelog table (so a rebalance goes through table recovery, as in our app). Worker B
joins mid-stream and later leaves (SIGTERM): worker A is rebalanced twice while it holds fetched
and queued records. Every record must be seen by BOTH agents, with no restart; a record seen
twice is fine (our agents drop repeats by msg_id).

Without the fixes (`RB_FIXES=0` in the environment) this fails one of two ways: A hangs in the
first rebalance (`wait_empty` on a message the lagging agent's cleared queue held), so B never
gets ready; or records re-fetched after the seek to the committed offsets are dropped as
"already read", so some are never seen by the lagging agent.

The workers run this module: `python -m tests.integration.test_faust_rebalance worker -l info`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

PARTITIONS = 6
RATE_PER_S = 150
PRODUCE_S = 24.0


def tiny_app(prefix: str, **conf: Any) -> Any:
    """A test worker's Faust app from $<prefix>APP and $<prefix>BOOTSTRAP, with our fixes unless
    $<prefix>FIXES=0; returns (app, its topic $<prefix>TOPIC)."""
    import faust

    from stream import faust_fixes

    if os.environ.get(f"{prefix}FIXES", "1") == "1":
        from wastestream.foundation.settings import load_settings

        faust_fixes.apply()
        s = load_settings()  # the workers' fetch tuning too (tuning 7), as stream/app.py sets it
        faust_fixes.tune_fetch(s.kafka_fetch_min_bytes, s.kafka_fetch_max_wait_ms, s.kafka_fetch_idle_wait_ms)
    app = faust.App(os.environ[f"{prefix}APP"], broker=f"kafka://{os.environ[f'{prefix}BOOTSTRAP']}",
                    store="memory://", topic_replication_factor=1, topic_partitions=PARTITIONS,
                    key_serializer="raw", value_serializer="raw", consumer_auto_offset_reset="earliest",
                    web_enabled=False, broker_session_timeout=6.0, broker_heartbeat_interval=2.0, **conf)
    topic = app.topic(os.environ[f"{prefix}TOPIC"], key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    return app, topic


def fresh_run(bootstrap: str, prefix: str, kind: str, out: Path) -> tuple[str, dict[str, str]]:
    """A new topic "ws-test-<kind>-<id>" (created) and the workers' environment: app id = topic name."""
    name = f"ws-test-{kind}-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(bootstrap, name))
    return name, {f"{prefix}APP": name, f"{prefix}TOPIC": name, f"{prefix}OUT": str(out),
                  f"{prefix}BOOTSTRAP": bootstrap, "PYTHONUNBUFFERED": "1",
                  "APP_DATADIR": str(out.parent / "faust-data")}  # not `{id}-data` in the repo


def worker_main() -> None:
    """The Faust worker: each agent appends "<agent> <value>" to $RB_OUT per record it is given."""
    import weakref

    from faust.streams import _current_event

    app, topic = tiny_app("RB_")
    table = app.Table("seen", default=int, partitions=PARTITIONS)
    out = open(os.environ["RB_OUT"], "a", encoding="utf-8")  # noqa: SIM115 (open for the worker's life)

    async def count(stream: Any, name: str, sink_s: float) -> None:
        async for events in stream.noack_take(50, within=0.05):
            out.write("".join(f"{name} {e.value.decode()}\n" for e in events))
            out.flush()
            for e in events:  # a table write goes to the partition of the event in hand
                token = _current_event.set(weakref.ref(e))
                table[f"{name}{e.message.partition}"] += 1
                _current_event.reset(token)
            await asyncio.sleep(sink_s)  # an InfluxDB write: records stay in flight meanwhile
            for e in events:
                await stream.ack(e)

    # Two agents on one topic, as ws.weighings feeds tonnage and manifest: one keeps up, one lags.
    @app.agent(topic)
    async def fast(stream: Any) -> None:
        await count(stream, "fast", 0.01)

    @app.agent(topic)
    async def slow(stream: Any) -> None:
        await count(stream, "slow", 0.4)

    sys.argv = [sys.argv[0], *sys.argv[1:], "--without-web"]
    app.main()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.integration.test_faust_rebalance",
                                 "worker", "-l", "info"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, cwd=REPO_ROOT, start_new_session=True)


def wait_for(log: Path, text: str, count: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while (text_so_far := log.read_text(errors="replace")).count(text) < count:
        assert proc.poll() is None, text_so_far[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} x{count} (rebalance hung?): {text_so_far[-3000:]}"
        time.sleep(0.2)


async def create_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, stop: threading.Event, sent: list[str]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        t0, i = time.monotonic(), 0
        while not stop.is_set() and time.monotonic() - t0 < PRODUCE_S:
            value = f"m{i}"
            await producer.send(topic, value.encode(), partition=i % PARTITIONS)
            sent.append(value)
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / RATE_PER_S - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


def seen(out: Path) -> set[str]:
    """The records both agents have seen ("m17" once each agent saw record 17)."""
    lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    pairs = [line.split() for line in lines]
    return {v for n, v in pairs if n == "fast"} & {v for n, v in pairs if n == "slow"}


def test_every_record_is_seen_live_across_join_and_leave(live_services: Settings, tmp_path: Path) -> None:
    out = tmp_path / "seen.txt"
    topic, env = fresh_run(live_services.kafka_bootstrap, "RB_", "rebalance", out)
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    a = start_worker(env, log_a)
    b: subprocess.Popen[bytes] | None = None
    stop, sent = threading.Event(), list[str]()
    producer = threading.Thread(target=lambda: asyncio.run(produce(live_services.kafka_bootstrap, topic,
                                                                   stop, sent)))
    try:
        wait_for(log_a, "Worker ready", 1, 60, a)
        producer.start()
        time.sleep(5)
        b = start_worker(env, log_b)  # join: A's partitions are revoked while it holds fetched records
        wait_for(log_b, "Worker ready", 1, 40, b)
        wait_for(log_a, "Worker ready", 2, 40, a)
        time.sleep(4)
        b.send_signal(signal.SIGTERM)  # leave: A is rebalanced again, B's partitions come back to A
        b.wait(30)
        producer.join(PRODUCE_S + 30)
        deadline = time.monotonic() + 30
        while (missing := set(sent) - seen(out)) and time.monotonic() < deadline:
            assert a.poll() is None, log_a.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        assert sent and not missing, (f"{len(missing)} of {len(sent)} records never seen live "
                                      f"(first: {sorted(missing, key=lambda v: int(v[1:]))[:10]})")
    finally:
        stop.set()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


if __name__ == "__main__":
    worker_main()
