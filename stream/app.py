"""The Faust app: Kafka topics from the contract, the tables, and the worker entry point.

Values are raw bytes: agents decode them with `contract.decode`, so the contract
module stays the one schema (Faust's model system is not used). State lives in
changelog-backed tables with the in-memory store (rebuilt from the changelog at
start). Analyses are registered by importing their module from `stream/agents/`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

if __name__ == "__main__":
    # Run the app of the importable module `stream.app` (the one agents register on), not a copy.
    sys.exit(importlib.import_module("stream.app").main())

import faust

from contract.codec import encode
from contract.events import Alert
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS
from stream import faust_fixes
from stream.rules import load_rules
from stream.topics_admin import ensure_topics
from wastestream.foundation import eventloop
from wastestream.foundation.settings import load_settings

faust_fixes.apply()  # commits and rebalances that lose or hang on records: see stream/faust_fixes.py
log = logging.getLogger(__name__)
settings = load_settings()
rules = load_rules()
"""The city's rules, loaded once per worker at import: a bad file fails the worker at start."""
_web_port = os.environ.get("WS_FAUST_WEB_PORT", "")
_session_timeout_s = float(os.environ.get("WS_FAUST_SESSION_TIMEOUT_S", "60"))
"""How long Kafka waits for a silent worker before reassigning its partitions."""
_standby_replicas = int(os.environ.get("WS_FAUST_STANDBY_REPLICAS", "1"))
"""Standby copies of each table on other workers (Faust's default is 1). Measured with make bench on one
2-core host: 1,063 msg/s sustained with a standby, 1,440 without (each worker also consumed the other's
changelogs). With 0 a worker once hung in its table recovery after a rebalance (bench run
20261127-232736): Faust had fetched the changelog records and dropped them because the rebalance had
stopped the flow, and never read them again (fix 5 in stream/faust_fixes.py, which also covers a
partition moving to a worker that was not its standby, as happens with 3+ workers at any setting).
tests/integration/test_faust_recovery.py hung in 5 of 6 runs without that fix, 0 of 9 with it. But a
fresh-clone run of that test (standby 0, four workers joining and leaving) then found 7 records that
saw their table one update behind after a rebalance (seq 164 read 162): a table write lost across the
move, not yet explained. So the default stays 1, as in Faust and docker-compose.yml, until it is;
WS_FAUST_STANDBY_REPLICAS=0 is the faster setting measured by make bench (1,316 msg/s)."""


class App(faust.App):
    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """An agent crashed: drop its traceback's frame locals, so the event in hand can be freed.

        Why: Faust keeps the crash reason (exception → traceback → the agent's frames → the
        event), and the consumer tracks unacked messages in a weak set: a message whose agent
        crashed stays "unacked" forever, so `wait_empty` (on SIGTERM and on every rebalance)
        waits for it until the worker is SIGKILLed. It is still NOT acked: Faust commits only
        up to the first unacked offset, so it is redelivered after a restart (at-least-once).
        Line numbers stay in the traceback that Faust logs next.
        """
        traceback.clear_frames(exc.__traceback__)
        await super()._on_agent_error(agent, exc)


app = App(
    settings.faust_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    topic_replication_factor=1,
    topic_partitions=settings.kafka_partitions,
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",  # a new app (or group) must not skip what is already in Kafka
    web_enabled=bool(_web_port),
    web_port=int(_web_port or 6066),
    web_host="127.0.0.1",
    producer_acks=-1,
    producer_linger=settings.kafka_linger_ms / 1000,  # batch changelog and forwarded records
    # stream_wait_empty stays True: an agent still writing a revoked partition's table after a
    # rebalance could land a stale changelog record behind the new owner's (exactness first).
    table_standby_replicas=_standby_replicas,
    broker_session_timeout=_session_timeout_s,
    broker_heartbeat_interval=min(3.0, _session_timeout_s / 3),
)

weighings_topic = app.topic(KAFKA_TOPICS["weighing"], key_type=bytes, value_type=bytes)
deadletter_topic = app.topic(DEADLETTER_TOPIC, key_type=bytes, value_type=bytes)
alerts_topic = app.topic(KAFKA_TOPICS["alert"], key_type=bytes, value_type=bytes)


async def send_deadletter(record: bytes) -> None:
    """Produce one dead-letter record and wait until Kafka has it."""
    future = await deadletter_topic.send(value=record)
    await future


async def send_alert(alert: Alert) -> None:
    """Raise an alert on ws.alerts and wait until Kafka has it; the alert service takes it from there."""
    await send_alerts([alert])


async def send_alerts(alerts: Sequence[Alert]) -> None:
    """Raise several alerts: all are sent, then all awaited (one round trip for the lot, not N).

    Keyed by kind and subject, not by alert id: repeats of one incident land on one partition
    in order, so the alert service's cool-down pages for the first occurrence, not a later one.
    """
    sent = [(a, await alerts_topic.send(key=f"{a.kind}|{a.subject}".encode(), value=encode(a)))
            for a in alerts]
    for alert, future in sent:
        await future
        # Counts what THIS worker raised: ws.alerts is shared, and any app replaying the topics
        # re-raises the same deterministic ids (tests count these lines).
        log.info("raised alert %s (%s)", alert.alert_id, alert.subject)


AGENT_MODULES = ("stream.agents.tonnage", "stream.agents.sorting",
                 "stream.agents.transport", "stream.agents.manifest", "stream.agents.device_health")
for _module in AGENT_MODULES:
    importlib.import_module(_module)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Faust's CLI (`worker -l info`, ...) after making sure the source topics exist."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker"]:
        eventloop.install()
        asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions))
        if not _web_port and "--with-web" not in args:
            args.append("--without-web")  # Faust's CLI would bind 6066 anyway; workers share a host
    sys.argv = ["wastestream-worker", *args]
    app.main()
    return 0

