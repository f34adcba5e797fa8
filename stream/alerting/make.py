"""Build contract `Alert`s with deterministic ids, so a replayed stream re-raises the same alert.

An analysis agent calls `make_alert(...)` and sends the result to ws.alerts (key = alert_id).
The kind must be registered in stream/alertkinds.py (its severity comes from there unless
given): an unregistered kind raises UnknownAlertKind, so a half-added kind fails its agent's tests.
The id is derived from the kind and a `dedup_key` the agent chooses to name the incident
(e.g. the truck and the minute the bed was raised): the same evidence, replayed after a
crash, yields the same alert_id, and the alert service drops it as already known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from contract.events import Alert, Severity
from stream import alertkinds


def alert_id(kind: str, dedup_key: str) -> str:
    digest = hashlib.sha1(f"{kind}|{dedup_key}".encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def make_alert(
    kind: str,
    severity: Severity | None = None,
    *,
    site_id: str,
    device_id: str,
    subject: str,
    summary: str,
    evidence: Sequence[str],
    ts: datetime,
    dedup_key: str,
    lat: float | None = None,
    lon: float | None = None,
) -> Alert:
    """An open alert; `evidence` are the msg_ids of the messages that raised it (at most 20 kept).

    `severity` is the registered kind's unless given (the alert service's tests vary it)."""
    registered = alertkinds.get(kind)
    aid = alert_id(kind, dedup_key)
    return Alert(
        msg_id=aid,
        device_id=device_id,
        site_id=site_id,
        ts=ts,
        alert_id=aid,
        kind=kind,
        severity=registered.severity if severity is None else severity,
        subject=subject[:64],
        summary=summary,
        evidence=tuple(evidence[-20:]),
        lat=lat,
        lon=lon,
    )
