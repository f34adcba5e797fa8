"""Alerts of a period, from the alert service: its HTTP API or (read-only) its SQLite store.

The alert service (stream/alerting/) owns the lifecycle; this module only reads:
- API: `GET /stats?since=&until=` (counts and 办结率) and `GET /alerts?limit=` then
  `GET /alerts/{id}` for evidence and events (who acknowledged/closed, when).
- SQLite: `$WS_RUN_DIR/alerts/alerts.db` opened with `mode=ro` (never written, never locked
  for writing: the service may be running).
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wastestream.foundation.settings import load_settings


class AlertSourceError(RuntimeError):
    pass


@dataclass
class AlertRecord:
    alert_id: str
    kind: str
    severity: str
    site_id: str
    subject: str
    summary: str
    raised_at: str
    state: str
    count: int = 1
    lat: float | None = None
    lon: float | None = None
    evidence: list[str] = field(default_factory=list)
    closed_by: str = ""
    closed_at: str = ""
    acked_by: str = ""


@dataclass
class AlertLog:
    source: str
    """Where it came from: the API URL or the store path."""
    alerts: list[AlertRecord] = field(default_factory=list)
    """Alerts raised in the period, newest first."""

    def count(self, state: str | None = None) -> int:
        return sum(1 for a in self.alerts if state is None or a.state == state)


def _iso_z(ts: datetime) -> str:
    return ts.astimezone().isoformat()


def _record(row: dict[str, Any], events: list[dict[str, Any]], evidence: list[str]) -> AlertRecord:
    rec = AlertRecord(
        alert_id=row["alert_id"], kind=row["kind"], severity=row["severity"], site_id=row["site_id"],
        subject=row["subject"], summary=row["summary"], raised_at=row["raised_at"], state=row["state"],
        count=int(row.get("count") or 1), lat=row.get("lat"), lon=row.get("lon"), evidence=list(evidence))
    for e in events:
        if e.get("to_state") == "closed":
            rec.closed_by, rec.closed_at = str(e.get("actor") or ""), str(e.get("at") or "")
        elif e.get("to_state") == "acknowledged":
            rec.acked_by = str(e.get("actor") or "")
    return rec


def from_store(path: Path | str, start: datetime, end: datetime) -> AlertLog:
    """Read alerts raised in `[start, end)` from the service's SQLite store, read-only."""
    path = Path(path)
    if not path.exists():
        raise AlertSourceError(f"no alert store at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.row_factory = sqlite3.Row
    try:
        lo, hi = int(start.timestamp() * 1e9), int(end.timestamp() * 1e9)
        rows = [dict(r) for r in db.execute(
            "SELECT * FROM alerts WHERE raised_ns >= ? AND raised_ns < ? ORDER BY raised_ns DESC", (lo, hi))]
        log = AlertLog(source=str(path))
        for row in rows:
            evidence = [r["msg_id"] for r in db.execute(
                "SELECT msg_id FROM evidence WHERE alert_id = ? ORDER BY rowid", (row["alert_id"],))]
            events = [dict(r) for r in db.execute(
                "SELECT action, from_state, to_state, actor, at FROM events WHERE alert_id = ? ORDER BY id",
                (row["alert_id"],))]
            log.alerts.append(_record(row, events, evidence))
        return log
    except sqlite3.Error as exc:
        raise AlertSourceError(f"{path}: {exc}") from exc
    finally:
        db.close()


def _get(url: str, token: str, timeout: float) -> Any:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:
        raise AlertSourceError(f"alert API {url}: {exc}") from exc


def from_api(base_url: str, start: datetime, end: datetime, *, token: str | None = None,
             timeout: float = 10.0, limit: int = 1000) -> AlertLog:
    """Read alerts raised in `[start, end)` from the alert service's HTTP API (bearer token)."""
    token = token if token is not None else load_settings().alerts_token
    base = base_url.rstrip("/")
    rows = _get(f"{base}/alerts?{urllib.parse.urlencode({'limit': limit})}", token, timeout)
    log = AlertLog(source=base)
    for row in rows:
        raised = datetime.fromisoformat(row["raised_at"].replace("Z", "+00:00"))
        if not start <= raised < end:
            continue
        detail = _get(f"{base}/alerts/{urllib.parse.quote(row['alert_id'], safe='')}", token, timeout)
        log.alerts.append(_record(detail, detail.get("events", []), detail.get("evidence", [])))
    return log


def default_store(run_dir: Path) -> Path:
    return run_dir / "alerts" / "alerts.db"


def load_alerts(start: datetime, end: datetime, *, run_dir: Path, alerts_api: str | None = None,
                alerts_db: Path | str | None = None) -> AlertLog | None:
    """The API if given, else the given store, else the run dir's store if it exists, else None."""
    if alerts_api:
        return from_api(alerts_api, start, end)
    path = Path(alerts_db) if alerts_db else default_store(run_dir)
    if alerts_db or path.exists():
        return from_store(path, start, end)
    return None
