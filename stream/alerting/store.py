"""The alert lifecycle store: SQLite (WAL) in the run dir, the one source of truth for alerts.

Why SQLite: alerts are few (tens per hour in a city), must survive restarts with their
history (who acknowledged what, when), and the service is one process per city. Every
method is one transaction, so a crash leaves either all of an alert's effects or none;
the Kafka offset is committed only after `ingest` returns (at-least-once in, exactly-once
in effect, because a replayed alert_id is a no-op).

Tables:
- `alerts`      primary alerts (the ones pushed) and their lifecycle state and repeat count
- `repeats`     alerts suppressed by cool-down, linked to the primary they repeat
- `evidence`    msg_ids per primary alert (a repeat's evidence is appended to its primary)
- `events`      every change: raise, repeat, ack, close; with actor, note and time
- `push_jobs`   one per (alert, channel): pending / sent / failed, next attempt time (durable queue)
- `deliveries`  one row per delivery attempt: channel, status, HTTP code, error, time
"""

from __future__ import annotations

import enum
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.events import Alert
from contract.text import BLANK, FORBIDDEN
from stream.sinks.line_protocol import to_ns

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, kind TEXT NOT NULL, severity TEXT NOT NULL,
    site_id TEXT NOT NULL, device_id TEXT NOT NULL, subject TEXT NOT NULL, summary TEXT NOT NULL,
    lat REAL, lon REAL, raised_at TEXT NOT NULL, raised_ns INTEGER NOT NULL,
    state TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 1, last_seen_at TEXT NOT NULL,
    received_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_subject ON alerts(kind, subject, raised_ns);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, raised_ns);
CREATE TABLE IF NOT EXISTS repeats (
    alert_id TEXT PRIMARY KEY, parent_id TEXT NOT NULL REFERENCES alerts(alert_id),
    raised_at TEXT NOT NULL, summary TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    alert_id TEXT NOT NULL REFERENCES alerts(alert_id), msg_id TEXT NOT NULL,
    source_alert TEXT NOT NULL, PRIMARY KEY (alert_id, msg_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL REFERENCES alerts(alert_id),
    action TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL, actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '', at TEXT NOT NULL, at_ns INTEGER NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unexported ON events(exported) WHERE exported = 0;
CREATE TABLE IF NOT EXISTS push_jobs (
    alert_id TEXT NOT NULL REFERENCES alerts(alert_id), channel TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS push_jobs_due ON push_jobs(status, next_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, channel TEXT NOT NULL,
    attempt INTEGER NOT NULL, status TEXT NOT NULL, http_code INTEGER, error TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries(alert_id);
"""

MIGRATIONS = (
    # the officers' workflow (issue 16); added to older files in place, existing rows get defaults
    ("alerts", "district", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "assignee", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "outcome", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "case_no", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "received_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("alerts", "acked_ns", "INTEGER"),
    ("alerts", "closed_ns", "INTEGER"),
    ("alerts", "escalated_ns", "INTEGER"),
    ("events", "detail", "TEXT NOT NULL DEFAULT ''"),
)

OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
SAME = ""
"""A TRANSITIONS target: the action leaves the state as it is (assign, note)."""

TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "ack": ({OPEN}, ACKNOWLEDGED),
    "assign": ({OPEN, ACKNOWLEDGED}, SAME),
    "note": ({OPEN, ACKNOWLEDGED, CLOSED}, SAME),
    "close": ({OPEN, ACKNOWLEDGED}, CLOSED),
    "reopen": ({CLOSED}, OPEN),
}
"""action -> (states it may start from, state it leads to)."""


class CloseOutcome(enum.StrEnum):
    """How a case ends: confirmed (with the enforcement case number), a false alarm, or referred
    to another authority."""

    CONFIRMED = "confirmed"
    FALSE_ALARM = "false_alarm"
    REFERRED = "referred"


OUTCOME_NAMES = {
    CloseOutcome.CONFIRMED: "属实立案 (confirmed)",
    CloseOutcome.FALSE_ALARM: "误报 (false alarm)",
    CloseOutcome.REFERRED: "移交其他部门 (referred)",
}
MAX_CASE_NO_CHARS = 64


class Outcome(enum.StrEnum):
    NEW = "new"  # stored, pushed
    DUPLICATE = "duplicate"  # alert_id already known (a replay): nothing changes
    SUPPRESSED = "suppressed"  # within the cool-down of an open alert: recorded, not pushed


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    primary_id: str
    """The alert that was (or will be) pushed: itself when NEW, the repeated one otherwise."""


MAX_LIST = 1000
"""Most alerts one `find` returns."""
MAX_ID_CHARS = 128
"""An alert id is a contract msg_id (at most 128 characters): a longer one cannot be known."""
MAX_OFFICER_CHARS, MAX_NOTE_CHARS = 64, 2000
_FORBIDDEN = re.compile(f"[{FORBIDDEN}]")
_FORBIDDEN_IN_NOTE = re.compile(f"(?!\n)[{FORBIDDEN}]")
_BLANK = re.compile(f"[{BLANK}]*\\Z")


class NotFound(LookupError):
    pass


class InvalidInput(ValueError):
    """A value the store refuses to record (HTTP 400); the message says why."""


def checked_text(name: str, value: object, max_chars: int, *, newlines: bool = False) -> str:
    """`value` if it is a string of at most `max_chars` with none of the characters the contract
    refuses in text (control, format, bidi: contract.text), a note may have line breaks: the audit
    trail is read by people, exported to InfluxDB and shown in dashboards as-is."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidInput(f"{name} has {len(value)} characters; at most {max_chars}")
    bad = (_FORBIDDEN_IN_NOTE if newlines else _FORBIDDEN).search(value)
    if bad is not None:
        raise InvalidInput(f"{name} has a control, format or bidi character U+{ord(bad.group()):04X} "
                           f"at position {bad.start()}")
    return value


class TransitionError(ValueError):
    """An action the alert's state does not allow (HTTP 409); the message says why."""


@dataclass(frozen=True)
class PushJob:
    alert_id: str
    channel: str
    attempts: int


def utc_iso(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertStore:
    """One connection, used from one thread (the service's event loop); short transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable before the Kafka offset is committed
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for table, column, ddl in MIGRATIONS:
            have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
        self._db.execute("CREATE INDEX IF NOT EXISTS alerts_by_district ON alerts(district, state)")

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def _run(self, fn: Any, *args: Any) -> Any:
        db = self._tx()
        try:
            result = fn(db, *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, alert: Alert, cooldown_s: float, channels: Sequence[str],
               district: str = "") -> IngestResult:
        """Store one alert from the stream: new (push jobs for `channels`), duplicate, or repeat.
        `district` (区/县, from the site) scopes which officers see it."""
        return self._run(self._ingest, alert, cooldown_s, channels, district)  # type: ignore[no-any-return]

    def _ingest(self, db: sqlite3.Connection, a: Alert, cooldown_s: float,
                channels: Sequence[str], district: str) -> IngestResult:
        known = db.execute(
            "SELECT alert_id AS p FROM alerts WHERE alert_id = ? "
            "UNION ALL SELECT parent_id FROM repeats WHERE alert_id = ?", (a.alert_id, a.alert_id)
        ).fetchone()
        if known is not None:
            return IngestResult(Outcome.DUPLICATE, known["p"])
        raised_ns, now_ns = to_ns(a.ts), time.time_ns()
        now, raised = utc_iso(now_ns), utc_iso(raised_ns)
        primary = db.execute(
            "SELECT alert_id, state FROM alerts WHERE kind = ? AND subject = ? AND state != ? "
            "AND abs(raised_ns - ?) < ? ORDER BY raised_ns DESC LIMIT 1",
            (a.kind, a.subject, CLOSED, raised_ns, int(cooldown_s * 1e9)),
        ).fetchone()
        if primary is not None:
            pid = primary["alert_id"]
            db.execute("INSERT INTO repeats VALUES (?, ?, ?, ?, ?)",
                       (a.alert_id, pid, raised, a.summary, now))
            db.execute("UPDATE alerts SET count = count + 1, last_seen_at = max(last_seen_at, ?), "
                       "updated_at = ? WHERE alert_id = ?", (raised, now, pid))
            self._add_evidence(db, pid, a.alert_id, a.evidence)
            self._event(db, pid, "repeat", primary["state"], primary["state"], "stream",
                        f"repeat {a.alert_id}", now_ns)
            return IngestResult(Outcome.SUPPRESSED, pid)
        db.execute(
            "INSERT INTO alerts (alert_id, kind, severity, site_id, device_id, subject, summary, lat, lon, "
            "raised_at, raised_ns, state, count, last_seen_at, received_at, updated_at, district, "
            "received_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (a.alert_id, a.kind, a.severity.value, a.site_id, a.device_id, a.subject, a.summary,
             a.lat, a.lon, raised, raised_ns, OPEN, raised, now, now, district, now_ns),
        )
        self._add_evidence(db, a.alert_id, a.alert_id, a.evidence)
        self._event(db, a.alert_id, "raise", None, OPEN, "stream", "", now_ns)
        db.executemany(
            "INSERT INTO push_jobs VALUES (?, ?, 'pending', 0, ?, '', ?)",
            [(a.alert_id, ch, 0.0, now) for ch in channels],
        )
        return IngestResult(Outcome.NEW, a.alert_id)

    @staticmethod
    def _add_evidence(db: sqlite3.Connection, alert_id: str, source: str, msg_ids: Iterable[str]) -> None:
        db.executemany("INSERT OR IGNORE INTO evidence VALUES (?, ?, ?)",
                       [(alert_id, m, source) for m in msg_ids])

    @staticmethod
    def _event(db: sqlite3.Connection, alert_id: str, action: str, from_state: str | None,
               to_state: str, actor: str, note: str, at_ns: int, detail: str = "") -> None:
        db.execute(
            "INSERT INTO events (alert_id, action, from_state, to_state, actor, note, at, at_ns, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (alert_id, action, from_state, to_state, actor, note, utc_iso(at_ns), at_ns, detail),
        )

    # --- lifecycle --------------------------------------------------------------------------

    def transition(self, alert_id: str, action: str, officer: str, note: str = "", *,
                   outcome: str | None = None, case_no: str = "", assignee: str = "") -> dict[str, Any]:
        """One workflow step (TRANSITIONS): NotFound, InvalidInput or TransitionError with the reason.

        close takes an `outcome` (CloseOutcome; `confirmed` needs the case number); assign takes
        the `assignee`'s username; note needs a note. Each step is an `events` row with who and when."""
        if action not in TRANSITIONS:
            raise TransitionError(f"unknown action {action!r}")
        officer = checked_text("officer", officer, MAX_OFFICER_CHARS)
        if _BLANK.match(officer):
            raise InvalidInput("officer is required")
        note = checked_text("note", note, MAX_NOTE_CHARS, newlines=True)
        case_no = checked_text("case_no", case_no, MAX_CASE_NO_CHARS).strip()
        assignee = checked_text("assignee", assignee, MAX_OFFICER_CHARS).strip()
        detail = ""
        if action == "close" and outcome is not None:
            try:
                outcome = CloseOutcome(outcome).value
            except ValueError:
                raise InvalidInput(f"outcome must be one of {', '.join(CloseOutcome)}") from None
            if outcome == CloseOutcome.CONFIRMED and not case_no:
                raise InvalidInput("a confirmed case needs its case number (case_no)")
            detail = f"outcome={outcome}" + (f" case_no={case_no}" if case_no else "")
        elif outcome is not None or case_no:
            raise InvalidInput("outcome and case_no belong to close")
        if action == "assign":
            if not assignee:
                raise InvalidInput("assign needs the assignee")
            detail = f"assignee={assignee}"
        elif assignee:
            raise InvalidInput("assignee belongs to assign")
        if action == "note" and _BLANK.match(note):
            raise InvalidInput("a note needs its text")
        self._run(self._transition, alert_id, action, officer.strip(), note, outcome or "", case_no,
                  assignee, detail)
        return self.get(alert_id)

    def _transition(self, db: sqlite3.Connection, alert_id: str, action: str, officer: str,
                    note: str, outcome: str = "", case_no: str = "", assignee: str = "",
                    detail: str = "") -> None:
        row = db.execute("SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            parent = db.execute("SELECT parent_id FROM repeats WHERE alert_id = ?", (alert_id,)).fetchone()
            if parent is not None:
                raise TransitionError(f"{alert_id} is a repeat of {parent['parent_id']}; act on that alert")
            raise NotFound(alert_id)
        allowed, target = TRANSITIONS[action]
        if row["state"] not in allowed:
            raise TransitionError(f"cannot {action} an alert that is {row['state']}")
        now_ns = time.time_ns()
        target = target or row["state"]
        db.execute("UPDATE alerts SET state = ?, updated_at = ? WHERE alert_id = ?",
                   (target, utc_iso(now_ns), alert_id))
        if action == "ack":
            db.execute("UPDATE alerts SET acked_ns = ? WHERE alert_id = ?", (now_ns, alert_id))
        elif action == "assign":
            db.execute("UPDATE alerts SET assignee = ? WHERE alert_id = ?", (assignee, alert_id))
        elif action == "close":
            db.execute("UPDATE alerts SET closed_ns = ?, outcome = ?, case_no = ? WHERE alert_id = ?",
                       (now_ns, outcome, case_no, alert_id))
        elif action == "reopen":
            db.execute("UPDATE alerts SET closed_ns = NULL, outcome = '', case_no = '' WHERE alert_id = ?",
                       (alert_id,))
        self._event(db, alert_id, action, row["state"], target, officer, note, now_ns, detail)

    # --- reading ----------------------------------------------------------------------------

    def get(self, alert_id: str) -> dict[str, Any]:
        """One alert with its evidence, repeats, events and delivery records; NotFound if unknown."""
        row = self._db.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            parent = self._db.execute("SELECT parent_id FROM repeats WHERE alert_id = ?",
                                      (alert_id,)).fetchone()
            if parent is None:
                raise NotFound(alert_id)
            return {**self.get(parent["parent_id"]), "requested_id": alert_id}
        q = self._db.execute
        out = _public(dict(row))
        out["evidence"] = [r["msg_id"] for r in q(
            "SELECT msg_id FROM evidence WHERE alert_id = ? ORDER BY rowid", (alert_id,))]
        out["repeats"] = [dict(r) for r in q(
            "SELECT alert_id, raised_at, summary, received_at FROM repeats WHERE parent_id = ? "
            "ORDER BY raised_at", (alert_id,))]
        out["events"] = [dict(r) for r in q(
            "SELECT action, from_state, to_state, actor, note, at, detail FROM events WHERE alert_id = ? "
            "ORDER BY id", (alert_id,))]
        out["deliveries"] = [dict(r) for r in q(
            "SELECT channel, attempt, status, http_code, error, at FROM deliveries WHERE alert_id = ? "
            "ORDER BY id", (alert_id,))]
        out["push"] = [dict(r) for r in q(
            "SELECT channel, status, attempts, last_error FROM push_jobs WHERE alert_id = ? "
            "ORDER BY channel", (alert_id,))]
        return out

    def alert(self, alert_id: str) -> dict[str, Any]:
        """The alert row only (what a push message needs)."""
        row = self._db.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(alert_id)
        return _public(dict(row))

    def find(self, state: str | None = None, kind: str | None = None, site: str | None = None,
             limit: int = 100, *, districts: Sequence[str] | None = None, assignee: str | None = None,
             states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Newest first; at most `limit` (1..MAX_LIST: SQLite reads a negative LIMIT as no limit).
        `districts` None = every district; else only alerts of those (an officer's scope)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST}")
        where, args = [], []
        for column, value in (("state", state), ("kind", kind), ("site_id", site), ("assignee", assignee)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        for column, values in (("district", districts), ("state", states)):
            if values is not None:  # an empty list matches nothing (not the '' district)
                where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
                args.extend(values)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY raised_ns DESC LIMIT ?", (*args, limit))
        return [_public(dict(r)) for r in rows]

    def stats(self, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, Any]:
        """Counts by state of alerts raised in [since, until) and 办结率 = closed / all (None if none)."""
        lo = -(2**63) if since_ns is None else since_ns
        hi = 2**63 - 1 if until_ns is None else until_ns
        counts = {OPEN: 0, ACKNOWLEDGED: 0, CLOSED: 0}
        for r in self._db.execute("SELECT state, count(*) AS n FROM alerts WHERE raised_ns >= ? "
                                  "AND raised_ns < ? GROUP BY state", (lo, hi)):
            counts[r["state"]] = r["n"]
        total = sum(counts.values())
        repeats = self._db.execute(
            "SELECT count(*) FROM repeats JOIN alerts ON repeats.parent_id = alerts.alert_id "
            "WHERE raised_ns >= ? AND raised_ns < ?", (lo, hi)).fetchone()[0]
        return {
            **counts, "total": total, "repeats_suppressed": repeats,
            "closure_rate": round(counts[CLOSED] / total, 4) if total else None,
            "since": None if since_ns is None else utc_iso(lo),
            "until": None if until_ns is None else utc_iso(hi),
        }

    # --- deadlines and escalation -------------------------------------------------------------

    def overdue(self, now_ns: int, ack_deadline_s: dict[str, float]) -> list[dict[str, Any]]:
        """Open alerts not escalated yet whose severity's acknowledgement deadline has passed since
        the service received them (a replayed old alert gets its full deadline too)."""
        out = []
        for severity, seconds in ack_deadline_s.items():
            rows = self._db.execute(
                "SELECT * FROM alerts WHERE state = ? AND severity = ? AND escalated_ns IS NULL "
                "AND received_ns > 0 AND received_ns + ? <= ? ORDER BY received_ns",
                (OPEN, severity, int(seconds * 1e9), now_ns))
            out += [_public(dict(r)) for r in rows]
        return out

    def escalate(self, alert_id: str, channels: Sequence[str], deadline_s: float) -> bool:
        """Mark one alert escalated (an `escalate` event by `system`) and queue its escalation
        pushes; False if it was acknowledged or escalated meanwhile."""
        def write(db: sqlite3.Connection) -> bool:
            now_ns = time.time_ns()
            cur = db.execute("UPDATE alerts SET escalated_ns = ? WHERE alert_id = ? AND state = ? "
                             "AND escalated_ns IS NULL", (now_ns, alert_id, OPEN))
            if cur.rowcount == 0:
                return False
            self._event(db, alert_id, "escalate", OPEN, OPEN, "system",
                        f"未在 {deadline_s / 60:g} 分钟内签收，已升级至主管 (not acknowledged in time)",
                        now_ns, "to=supervisor")
            db.executemany("INSERT OR IGNORE INTO push_jobs VALUES (?, ?, 'pending', 0, 0.0, '', ?)",
                           [(alert_id, ch, utc_iso(now_ns)) for ch in channels])
            return True

        return bool(self._run(write))

    # --- the supervisor's figures -----------------------------------------------------------

    def workflow_rows(self, since_ns: int, until_ns: int,
                      districts: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The lifecycle columns of alerts raised in [since, until): what weekly 办结率 and time to
        close are computed from (stream.alerting.officer.figures)."""
        sql = ("SELECT alert_id, kind, severity, district, state, assignee, outcome, raised_ns, received_ns, "
               "acked_ns, closed_ns, escalated_ns FROM alerts WHERE raised_ns >= ? AND raised_ns < ?")
        args: list[Any] = [since_ns, until_ns]
        if districts is not None:
            sql += f" AND district IN ({','.join('?' * len(districts))})" if districts else " AND 0"
            args.extend(districts)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY raised_ns", args)]

    # --- push queue ------------------------------------------------------------------------

    def due_jobs(self, now: float, limit: int, exclude: set[tuple[str, str]]) -> list[PushJob]:
        rows = self._db.execute(
            "SELECT alert_id, channel, attempts FROM push_jobs WHERE status = 'pending' AND next_at <= ? "
            "ORDER BY next_at LIMIT ?", (now, limit + len(exclude)))
        jobs = [PushJob(r["alert_id"], r["channel"], r["attempts"]) for r in rows]
        return [j for j in jobs if (j.alert_id, j.channel) not in exclude][:limit]

    def next_due(self) -> float | None:
        row = self._db.execute("SELECT min(next_at) FROM push_jobs WHERE status = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def record_delivery(self, job: PushJob, *, ok: bool, http_code: int | None, error: str,
                        retry_at: float | None) -> None:
        """One attempt: a `deliveries` row, and the job becomes sent, pending again (retry_at) or failed."""
        attempt = job.attempts + 1
        status = "sent" if ok else ("retry" if retry_at is not None else "failed")
        now = utc_iso()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO deliveries (alert_id, channel, attempt, status, http_code, error, at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (job.alert_id, job.channel, attempt, status, http_code, error, now))
            job_status = "pending" if status == "retry" else status
            db.execute("UPDATE push_jobs SET status = ?, attempts = ?, next_at = ?, last_error = ?, "
                       "updated_at = ? WHERE alert_id = ? AND channel = ?",
                       (job_status, attempt, retry_at or 0.0, error, now, job.alert_id, job.channel))

        self._run(write)

    def orphan_jobs(self, channels: set[str]) -> int:
        """Fail pending jobs for channels no longer configured (a config change), so they do not linger."""
        def write(db: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(channels)) or "''"
            cur = db.execute(f"UPDATE push_jobs SET status = 'failed', last_error = 'channel not configured' "
                             f"WHERE status = 'pending' AND channel NOT IN ({marks})", tuple(channels))
            return cur.rowcount

        return int(self._run(write))

    # --- InfluxDB export --------------------------------------------------------------------

    def unexported_events(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Events not yet written to InfluxDB, joined with their alert (for the `alert` point)."""
        rows = self._db.execute(
            "SELECT e.id, e.action, e.to_state, e.at_ns, a.alert_id, a.kind, a.severity, a.site_id, "
            "a.subject, a.lat, a.lon, a.raised_ns, a.count FROM events e JOIN alerts a USING (alert_id) "
            "WHERE e.exported = 0 ORDER BY e.id LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def mark_exported(self, event_ids: Sequence[int]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE events SET exported = 1 WHERE id = ?", [(i,) for i in event_ids])

        self._run(write)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("raised_ns", None)
    row.pop("received_ns", None)
    for step in ("acked", "closed", "escalated"):
        ns = row.pop(f"{step}_ns", None)
        row[f"{step}_at"] = None if ns is None else utc_iso(ns)
    return row
