"""The alert service's metrics and readiness (through wastestream/foundation/observability.py).

Counts: ws.alerts records in, stored (new, repeat or suppressed: `ws_alerts_ingested_total{outcome}`)
as out, dead-lettered; push attempts per channel and result, and failures per channel
(`ws_push_failures_total{channel}`, retried or given up). Ready: the service has started (Kafka
producer, API bound, pusher running) and its SQLite store answers a query on the service's loop.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter

from wastestream.foundation import observability
from wastestream.foundation.observability import (
    Check,
    OnLoop,
    messages_deadlettered,
    messages_in,
    messages_out,
)

INGESTED = Counter("ws_alerts_ingested", "Alerts stored, by outcome (new, duplicate, suppressed)",
                   ["outcome"])
PUSHES = Counter("ws_pushes", "Push attempts per channel and result (ok, failed)", ["channel", "result"])
PUSH_FAILURES = Counter("ws_push_failures", "Failed push attempts per channel (retried or given up)",
                        ["channel"])
_pushes: dict[tuple[str, bool], Any] = {}
_failures: dict[str, Any] = {}
_outcomes: dict[str, Any] = {}


def stored(topic: str, outcome: str) -> None:
    """One ws.alerts record stored (`outcome`: the store's new / duplicate / suppressed)."""
    messages_in.inc(topic)
    messages_out.inc(topic)
    child = _outcomes.get(outcome)
    if child is None:
        child = _outcomes[outcome] = INGESTED.labels(outcome=outcome)
    child.inc()


def rejected(topic: str) -> None:
    """One ws.alerts record that is no alert, dead-lettered."""
    messages_in.inc(topic)
    messages_deadlettered.inc(topic)


def pushed(channel: str, ok: bool) -> None:
    """One push attempt to `channel` finished."""
    child = _pushes.get((channel, ok))
    if child is None:
        child = _pushes[(channel, ok)] = PUSHES.labels(channel=channel, result="ok" if ok else "failed")
    child.inc()
    if not ok:
        failure = _failures.get(channel)
        if failure is None:
            failure = _failures[channel] = PUSH_FAILURES.labels(channel=channel)
        failure.inc()


def alert_checks(service: Any) -> dict[str, Check]:
    def started() -> str | None:
        return None if service.ready.is_set() else "starting (Kafka producer, API, pusher)"

    def store() -> str | None:
        try:
            service.store._db.execute("SELECT 1").fetchone()
        except Exception as exc:  # closed, or the file gone bad
            return f"alert store {service.store.path} not usable: {type(exc).__name__}: {exc}"
        return None

    return {"service": started, "store": OnLoop(store)}


def endpoint(service: Any, port: int, host: str) -> contextlib.AbstractContextManager[
        observability.MetricsServer | None]:
    """`with endpoint(service, port, host): await service.run(stop)`; port 0: none."""
    topic = service.config.kafka_topic
    for counter in (messages_in, messages_out, messages_deadlettered):
        counter.inc(topic, 0)
    for channel in service.pusher.channels:
        for ok in (True, False):
            PUSHES.labels(channel=channel, result="ok" if ok else "failed")
        PUSH_FAILURES.labels(channel=channel)
    return observability.serving("alerts", port, alert_checks(service), host=host)
