"""The Faust app: its settings, the city's rules and the topics every agent shares.

Values are raw bytes: agents decode them with `contract.decode`, so the contract module stays
the one schema (Faust's model system is not used). State lives in changelog-backed tables with
the in-memory store (rebuilt from the changelog at start). The agents import this module (it
imports none of them): Faust's autodiscovery (`autodiscover`, scanned by `app.main()` in
stream/worker.py, the entry point) finds every `@app.agent` and `@app.timer` in stream/agents/.
Why each knob is set as it is (standby replicas, session timeout): deploy/production/SCALING.md.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import faust

from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS
from stream import faust_fixes
from stream.rules import load_rules
from wastestream.foundation.settings import load_settings

faust_fixes.apply()  # commits and rebalances that lose or hang on records: see stream/faust_fixes.py
settings = load_settings()
faust_fixes.tune_fetch(settings.kafka_fetch_min_bytes, settings.kafka_fetch_max_wait_ms,
                       settings.kafka_fetch_idle_wait_ms)
rules = load_rules()
"""The city's rules, loaded once per worker at import: a bad file fails the worker at start."""

AGENT_PACKAGES = ["stream.agents"]
"""The agent registry: the packages Faust scans for agents and timers (a new agent is a module there)."""


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

    def _on_autodiscovery_error(self, name: str) -> None:
        """An agent module that fails to import fails the worker at start (a bad rules file, a
        bug): Faust would only log a warning and run without that agent."""
        raise RuntimeError(f"agent module {name} failed to import") from sys.exc_info()[1]


app = App(
    settings.faust_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    # Faust's default is `{id}-data` in the working directory: every test app left one in the repo
    datadir=os.environ.get("APP_DATADIR") or str(settings.run_dir / "faust" / "{conf.name}-data"),
    autodiscover=AGENT_PACKAGES,
    origin="stream.app",  # else Faust's CLI takes argv[0] (wastestream-worker) and scans it as a module
    topic_replication_factor=1,
    topic_partitions=settings.kafka_partitions,
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",  # a new app (or group) must not skip what is already in Kafka
    web_enabled=settings.faust_web_port is not None,
    web_port=settings.faust_web_port or 6066,
    web_host="127.0.0.1",
    producer_acks=-1,
    producer_linger=settings.kafka_linger_ms / 1000,  # batch changelog and forwarded records
    # stream_wait_empty stays True: an agent still writing a revoked partition's table after a
    # rebalance could land a stale changelog record behind the new owner's (exactness first).
    table_standby_replicas=settings.faust_standby_replicas,
    broker_session_timeout=settings.faust_session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.faust_session_timeout_s / 3),
)

weighings_topic = app.topic(KAFKA_TOPICS["weighing"], key_type=bytes, value_type=bytes)
deadletter_topic = app.topic(DEADLETTER_TOPIC, key_type=bytes, value_type=bytes)
alerts_topic = app.topic(KAFKA_TOPICS["alert"], key_type=bytes, value_type=bytes)
