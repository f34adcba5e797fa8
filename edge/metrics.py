"""The edge agent's metrics and readiness (through wastestream/foundation/observability.py).

Counts (`ws_messages_{in,out,deadlettered}_total{topic="ws/v1"}`): messages stored in the outbox,
forgotten once delivered (the pipeline's confirmation, or the broker's PUBACK with `delivery:
broker`), and refused by the broker (kept in the outbox's refused table); messages lost to the
full-outbox policy in `ws_edge_outbox_dropped_total`. At each scrape, from the agent: outbox depth
and the age of its oldest message, MQTT connected. Ready: the outbox answers and MQTT is connected.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.topics import MQTT_PREFIX
from wastestream.foundation import observability
from wastestream.foundation.observability import Check, messages_deadlettered, messages_in, messages_out
from wastestream.foundation.settings import load_settings

DROPPED = Counter("ws_edge_outbox_dropped", "Messages lost to the full-outbox policy (when_full)")


def stored(n: int) -> None:
    """`n` messages committed to the outbox."""
    messages_in.inc_locked(MQTT_PREFIX, n)


def delivered(n: int) -> None:
    """`n` messages forgotten by the outbox because they were delivered."""
    messages_out.inc_locked(MQTT_PREFIX, n)


def refused() -> None:
    """One message the broker refused, moved to the outbox's refused table."""
    messages_deadlettered.inc_locked(MQTT_PREFIX)


class AgentCollector(Collector):
    """Outbox depth and oldest age, MQTT connected: read from the agent at each scrape."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        site = self.agent.site_id
        depth = GaugeMetricFamily("ws_edge_outbox_depth", "Messages in the outbox, not yet delivered",
                                  labels=["site"])
        age = GaugeMetricFamily("ws_edge_outbox_oldest_age_seconds", "How long the oldest message in the "
                                "outbox has waited (0 when empty)", labels=["site"])
        connected = GaugeMetricFamily("ws_edge_mqtt_connected", "1 while the MQTT session is connected",
                                      labels=["site"])
        with contextlib.suppress(Exception):  # a closed outbox: the gauges are left out, /readyz says why
            depth.add_metric([site], float(self.agent.outbox.depth()))
            age.add_metric([site], self.agent.outbox.oldest_age_s(time.time()) or 0.0)
        connected.add_metric([site], 1.0 if self.agent.session.connected.is_set() else 0.0)
        yield from (depth, age, connected)


def agent_checks(agent: Any) -> dict[str, Check]:
    def outbox() -> str | None:
        try:
            agent.outbox.depth()
        except Exception as exc:
            return f"outbox {agent.outbox.path} not usable: {type(exc).__name__}: {exc}"
        return None

    def mqtt() -> str | None:
        if agent.session.connected.is_set():
            return None
        cfg = agent.session.cfg
        return f"not connected to {cfg.host}:{cfg.port}"

    return {"outbox": outbox, "mqtt": mqtt}


@contextlib.contextmanager
def endpoint(agent: Any, port: int | None = None) -> Iterator[observability.MetricsServer | None]:
    """`with endpoint(agent, port): await agent.run()`; port None: WS_METRICS_PORT; 0: none."""
    settings = load_settings()
    port = settings.metrics_port if port is None else port
    if not port:
        yield None
        return
    for counter in (messages_in, messages_out, messages_deadlettered):
        counter.inc_locked(MQTT_PREFIX, 0)
    collector = AgentCollector(agent)
    REGISTRY.register(collector)
    try:
        with observability.serving("edge", port, agent_checks(agent), host=settings.metrics_host) as server:
            yield server
    finally:
        REGISTRY.unregister(collector)
