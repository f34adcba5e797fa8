"""Store-and-forward outbox: SQLite (WAL, synchronous=FULL) so no event is lost to a crash.

Every event is committed here before it is published and deleted only when delivered: on the
pipeline's confirmation that Kafka has it (`confirm`, the default; contract.acks) or, with
`delivery: broker`, on the broker's PUBACK (`ack`). msg_id = `{device_id}:{epoch}:{seq}`: epoch
is fixed when the database is created, seq grows by one per device and is persisted, so an id
never changes across retries or restarts and never repeats. Rows are replayed in insertion
order. When `max_messages` rows are pending, `when_full` decides: `drop_oldest` (default: fresh
data matters more on a long outage) or `reject_new`; either way the loss is logged and counted in `dropped`.
Thread-safe: the MQTT network thread acks while device threads append. Each row keeps when it was
stored (`stored_at`, wall clock), so the oldest message's wait is a metric (edge/metrics.py).

A small key/value `state` table holds driver state that must move with the messages it
produced (a sorting station's drop cursor): `put_batch` commits both in one transaction, so a
crash can neither lose the events of an advanced cursor nor re-send those of an old one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.msgid import make_msg_id
from edge import metrics as edge_metrics

log = logging.getLogger("edge.outbox")

WhenFull = Literal["drop_oldest", "reject_new"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seqs (device_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    stored_at REAL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    refused_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

Build = Callable[[str, int], bytes]
"""build(msg_id, seq) -> payload"""


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    device_id: str
    seq: int
    msg_id: str
    topic: str
    payload: bytes


class Outbox:
    """A durable FIFO of (topic, payload) with stable message ids."""

    def __init__(self, path: str | Path, *, max_messages: int = 100_000, when_full: WhenFull = "drop_oldest"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.when_full = when_full
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if "stored_at" not in {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}:
            self._db.execute("ALTER TABLE messages ADD COLUMN stored_at REAL")  # an outbox from before it
        self._opened_at = time.time()
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (int(time.time()),))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
        self.epoch: int = self._meta("epoch")
        self._listeners: list[Callable[[], None]] = []

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def _tx(self) -> _Tx:
        return _Tx(self._db, self._lock)

    @property
    def dropped(self) -> int:
        """Messages lost to the full-outbox policy since the database was created."""
        with self._lock:
            return self._meta("dropped")

    def on_put(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the putting thread) after each stored message: wakes the publisher."""
        self._listeners.append(callback)

    def next_msg_id(self, device_id: str) -> str:
        """Allocate a msg_id without storing a message (for the Last-Will and direct publishes)."""
        with self._tx():
            return make_msg_id(device_id, self.epoch, self._next_seq(device_id))

    def _next_seq(self, device_id: str) -> int:
        self._db.execute(
            "INSERT INTO seqs VALUES (?, 1) ON CONFLICT(device_id) DO UPDATE SET last_seq = last_seq + 1",
            (device_id,),
        )
        return int(
            self._db.execute("SELECT last_seq FROM seqs WHERE device_id = ?", (device_id,)).fetchone()[0]
        )

    def put(self, device_id: str, topic: str, build: Build) -> Entry | None:
        """Store one message; `build(msg_id, seq)` makes the payload, inside the same transaction.

        Returns None under `reject_new` when full (nothing stored, no seq used, counted as dropped).
        """
        return self.put_batch([(device_id, topic, build)])[0]

    def put_batch(
        self, items: Sequence[tuple[str, str, Build]], state: Mapping[str, str] | None = None
    ) -> list[Entry | None]:
        """Store several messages and `state` updates atomically (all or nothing), in order."""
        entries: list[Entry | None] = []
        with self._tx():
            for device_id, topic, build in items:
                entries.append(self._put_locked(device_id, topic, build))
            for key, value in (state or {}).items():
                self._db.execute(
                    "INSERT INTO state VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        edge_metrics.stored(sum(e is not None for e in entries))
        if any(e is not None for e in entries):
            for callback in self._listeners:
                callback()
        return entries

    def _put_locked(self, device_id: str, topic: str, build: Build) -> Entry | None:
        depth = self._depth()
        if depth >= self.max_messages:
            excess = depth - self.max_messages + 1
            if self.when_full == "reject_new":
                self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'dropped'")
                edge_metrics.DROPPED.inc()
                log.error("outbox full (%d messages): rejected a new message for %s", depth, topic)
                return None
            self._db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
            edge_metrics.DROPPED.inc(excess)
            log.error("outbox full (%d messages): dropped the oldest %d", depth, excess)
        seq = self._next_seq(device_id)
        msg_id = make_msg_id(device_id, self.epoch, seq)
        payload = build(msg_id, seq)
        cur = self._db.execute(
            "INSERT INTO messages (device_id, seq, msg_id, topic, payload, stored_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (device_id, seq, msg_id, topic, payload, time.time()),
        )
        return Entry(int(cur.lastrowid or 0), device_id, seq, msg_id, topic, payload)

    def put_allocated(self, rows: Sequence[tuple[str, int, str, str, bytes]]) -> int:
        """Store (device_id, seq, msg_id, topic, payload) rows whose msg_ids were allocated elsewhere
        (a replayed backlog, the outbox of a replaced box), atomically, after what is stored: they
        are published like any row. A msg_id already stored is skipped, so doing it twice stores
        them once; the device's own seq is untouched (another epoch). Returns how many were stored.
        Not subject to `max_messages`: the caller sized the backlog."""
        now = time.time()
        with self._tx():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO messages (device_id, seq, msg_id, topic, payload, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", ((*row, now) for row in rows),
            )
            stored = self._db.total_changes - before
        edge_metrics.stored(stored)
        if stored:
            for callback in self._listeners:
                callback()
        return stored

    def get_state(self, key: str) -> str | None:
        """A value stored by `put_batch(..., state=...)`, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        """Stored messages with id > after_id, oldest first."""
        return self._entries("WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def rows(self, entry_ids: Sequence[int]) -> list[Entry]:
        """The stored messages among `entry_ids` (gone ones are skipped), oldest first."""
        if not entry_ids:
            return []
        marks = ",".join("?" * len(entry_ids))
        return self._entries(f"WHERE id IN ({marks}) ORDER BY id", tuple(entry_ids))

    def _entries(self, where: str, params: tuple[int, ...]) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, device_id, seq, msg_id, topic, payload FROM messages {where}", params
            ).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]

    def ack(self, entry_id: int) -> None:
        """The broker has the message (PUBACK, `delivery: broker`): forget it."""
        with self._tx():
            gone = self._db.execute("DELETE FROM messages WHERE id = ?", (entry_id,)).rowcount
        edge_metrics.delivered(gone)

    def confirm(self, msg_ids: Sequence[str]) -> int:
        """The pipeline has these messages in Kafka: forget them, in one transaction. Unknown
        ids (confirmed twice, or a copy re-sent before a restart) are ignored. Returns how many
        stored messages were forgotten."""
        if not msg_ids:
            return 0
        with self._tx():
            gone = int(self._db.executemany("DELETE FROM messages WHERE msg_id = ?",
                                            ((m,) for m in msg_ids)).rowcount)
        edge_metrics.delivered(gone)
        return gone

    def refuse(self, entry_id: int, reason: str) -> None:
        """The broker refused the message (a PUBACK failure, e.g. 135 not authorized): keep it in
        the edge's dead-letter table with the reason instead of retrying forever or losing it."""
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO refused (id, device_id, msg_id, topic, payload, reason)"
                " SELECT id, device_id, msg_id, topic, payload, ? FROM messages WHERE id = ?",
                (reason, entry_id),
            )
            self._db.execute("DELETE FROM messages WHERE id = ?", (entry_id,))
        edge_metrics.refused()

    def refused_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM refused").fetchone()[0])

    def _depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def depth(self) -> int:
        with self._lock:
            return self._depth()

    def oldest_age_s(self, now: float) -> float | None:
        """How long the oldest stored message has waited (None: empty). A row from before
        `stored_at` existed counts from when this outbox was opened: a lower bound."""
        with self._lock:
            row = self._db.execute("SELECT stored_at FROM messages ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return max(0.0, now - (self._opened_at if row[0] is None else float(row[0])))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Tx:
    """BEGIN IMMEDIATE .. COMMIT under the outbox lock; rollback on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
