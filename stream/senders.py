"""What agents produce besides their tables: dead-letter records and alerts, each awaited until
Kafka has it (the batch order of stream/agents/runner.py depends on that)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from contract.codec import encode
from contract.events import Alert
from stream.app import alerts_topic, deadletter_topic, settings

log = logging.getLogger(__name__)


async def send_deadletter(record: bytes) -> None:
    """Produce one dead-letter record and wait until Kafka has it."""
    future = await deadletter_topic.send(value=record)
    await future


async def send_alerts(alerts: Sequence[Alert]) -> None:
    """Raise several alerts: all are sent, then all awaited (one round trip for the lot, not N).

    Keyed by kind and subject, not by alert id: repeats of one incident land on one partition
    in order, so the alert service's cool-down pages for the first occurrence, not a later one.
    """
    sent = [(a, await alerts_topic.send(key=f"{a.kind}|{a.subject}".encode(), value=encode(a)))
            for a in alerts]
    for alert, future in sent:
        await future
        log.info("raised alert %s (%s)", alert.alert_id, alert.subject)
    record_raised(alerts, settings.raised_alerts_file)


def record_raised(alerts: Sequence[Alert], path: str) -> None:
    """Append one JSON line per raised alert to `path` (WS_RAISED_ALERTS_FILE; "" = off).

    Why a file and not the log: it says what THIS worker raised (ws.alerts is shared, and any app
    replaying the topics re-raises the same deterministic ids), in a form that is read, not parsed."""
    if not path or not alerts:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(json.dumps({"alert_id": a.alert_id, "kind": a.kind, "subject": a.subject},
                                  ensure_ascii=False) + "\n" for a in alerts)
