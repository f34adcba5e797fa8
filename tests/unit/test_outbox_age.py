"""The outbox keeps when each message was stored, for the age of its oldest one (edge/metrics.py),
also in an outbox file made before it did."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge.outbox import Outbox

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE seqs (device_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, seq INTEGER NOT NULL,
                       msg_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL);
INSERT INTO meta VALUES ('epoch', 1700000000), ('dropped', 0);
INSERT INTO seqs VALUES ('d', 1);
INSERT INTO messages (device_id, seq, msg_id, topic, payload) VALUES ('d', 1, 'd:1700000000:1', 't', x'00');
"""


def test_oldest_age_is_the_first_stored_message_s(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    try:
        assert box.oldest_age_s(time.time()) is None
        before = time.time()
        box.put("d", "t", lambda msg_id, seq: b"one")
        box.put("d", "t", lambda msg_id, seq: b"two")
        stored = time.time()
        age = box.oldest_age_s(stored + 60)
        assert age is not None and 60 <= age <= 60 + (stored - before)
        first = box.pending()[0]
        box.ack(first.id)
        assert box.depth() == 1
        box.confirm([box.pending()[0].msg_id])
        assert box.oldest_age_s(time.time()) is None
    finally:
        box.close()


def test_an_outbox_from_before_stored_at_gets_it_and_counts_old_rows_from_opening(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    opened = time.time()
    box = Outbox(path)
    try:
        age = box.oldest_age_s(opened + 30)
        assert age is not None and 29 <= age <= 31  # a lower bound: since this outbox was opened
        box.put("d", "t", lambda msg_id, seq: b"new")
        assert [e.payload for e in box.pending()] == [b"\x00", b"new"]  # the old row kept, in order
    finally:
        box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT stored_at IS NULL FROM messages ORDER BY id").fetchall() == [(1,), (0,)]


def test_rows_allocated_elsewhere_are_counted_in_and_aged(tmp_path: Path) -> None:
    """A replayed backlog (put_allocated) goes in like any row: counted, and aged from when stored."""
    from wastestream.foundation.observability import messages_in

    box = Outbox(tmp_path / "o.db")
    try:
        before = messages_in.value("ws/v1")
        rows = [("d", i, f"d:1:{i}", "ws/v1/s/weighbridge/d/weighing", b"x") for i in range(1, 4)]
        assert box.put_allocated(rows) == 3
        assert box.put_allocated(rows) == 0  # twice: stored once
        assert messages_in.value("ws/v1") == before + 3
        age = box.oldest_age_s(time.time() + 10)
        assert age is not None and 10 <= age < 12
    finally:
        box.close()
