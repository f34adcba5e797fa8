"""Outbox: order, ack, stable ids across restarts, full policies, kill -9 survival."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from contract.msgid import parse_msg_id
from edge.outbox import Outbox


def body(msg_id: str, seq: int) -> bytes:
    return f'{{"msg_id":"{msg_id}","seq":{seq}}}'.encode()


def test_order_ids_and_ack(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    entries = [ob.put("wb-1" if i % 2 else "wb-2", f"t/{i}", body) for i in range(6)]
    assert all(e is not None for e in entries)
    pending = ob.pending()
    assert [p.topic for p in pending] == [f"t/{i}" for i in range(6)]
    assert [p.seq for p in pending if p.device_id == "wb-1"] == [1, 2, 3]
    assert pending[0].msg_id == f"wb-2:{ob.epoch}:1" and pending[0].payload == body(pending[0].msg_id, 1)
    ob.ack(pending[1].id)
    ob.ack(pending[1].id)  # a duplicate PUBACK is harmless
    assert ob.depth() == 5 and [p.id for p in ob.pending(after_id=pending[2].id, limit=2)] == [
        pending[3].id,
        pending[4].id,
    ]


def test_ids_stable_across_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    first = ob.put("wb-1", "t", body)
    epoch = ob.epoch
    ob.close()
    time.sleep(1.1)
    ob = Outbox(tmp_path / "o.db")
    assert ob.epoch == epoch
    [again] = ob.pending()
    assert first is not None and again.msg_id == first.msg_id
    second = ob.put("wb-1", "t", body)
    assert second is not None and parse_msg_id(second.msg_id).seq == 2
    assert ob.next_msg_id("wb-1") == f"wb-1:{epoch}:3"


def test_wal_and_full_sync(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_drop_oldest(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_messages=3)
    for i in range(5):
        ob.put("d", f"t/{i}", body)
    assert [p.topic for p in ob.pending()] == ["t/2", "t/3", "t/4"] and ob.dropped == 2


def test_reject_new(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_messages=3, when_full="reject_new")
    results = [ob.put("d", f"t/{i}", body) for i in range(5)]
    assert results[3] is None and results[4] is None
    assert [p.topic for p in ob.pending()] == ["t/0", "t/1", "t/2"] and ob.dropped == 2
    ob.ack(ob.pending()[0].id)
    e = ob.put("d", "t/5", body)
    assert e is not None and e.seq == 4  # rejected puts used no seq


def test_on_put_listener(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    calls: list[int] = []
    ob.on_put(lambda: calls.append(1))
    ob.put("d", "t", body)
    assert calls == [1]


WRITER = textwrap.dedent(
    """
    import sys
    from edge.outbox import Outbox
    ob = Outbox(sys.argv[1])
    i = 0
    while True:
        e = ob.put("wb-1", "t", lambda m, s: m.encode())
        if i % 3 == 0 and i > 0:
            ob.ack(e.id - 1)
        print(e.id, e.msg_id, flush=True)
        i += 1
    """
)


def test_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    confirmed: list[tuple[int, str]] = []
    deadline = time.monotonic() + 30
    while len(confirmed) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            a, b = line.split()
            confirmed.append((int(a), b))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(confirmed) >= 300
    ob = Outbox(db)
    rows = ob.pending(limit=1_000_000)
    ids = [r.id for r in rows]
    seqs = [r.seq for r in rows]
    assert ids == sorted(set(ids)) and len(set(r.msg_id for r in rows)) == len(rows)
    stored = {r.id: r.msg_id for r in rows}
    for j, (entry_id, msg_id) in enumerate(confirmed):
        acked_by_writer = (j + 1) % 3 == 0
        if not acked_by_writer:  # committed and never acked: must have survived, unchanged
            assert stored.get(entry_id) == msg_id
        elif j + 1 < len(confirmed):  # the writer printed after this ack: it must be gone
            assert entry_id not in stored
    # the sequence continues without reuse after the crash
    last_seq = max(seqs + [parse_msg_id(m).seq for _, m in confirmed])
    nxt = ob.put("wb-1", "t", body)
    assert nxt is not None and nxt.seq > last_seq


def test_refused_messages_are_kept_with_their_reason(tmp_path: Path) -> None:
    """A PUBACK failure (e.g. an ACL denial) must not lose the event: it moves to `refused`."""
    box = Outbox(tmp_path / "o.db")
    entry = box.put("wb-1", "ws/v1/s/weighbridge/wb-1/weighing", lambda msg_id, seq: msg_id.encode())
    assert entry is not None
    box.refuse(entry.id, "PUBACK Not authorized")
    assert box.depth() == 0
    assert box.refused_count() == 1
    row = box._db.execute("SELECT msg_id, reason FROM refused").fetchone()
    assert row == (entry.msg_id, "PUBACK Not authorized")


def test_confirm_forgets_by_msg_id_and_rows_skips_gone_ones(tmp_path: Path) -> None:
    """The pipeline confirms by msg_id (contract.acks); twice, unknown or empty is harmless."""
    ob = Outbox(tmp_path / "o.db")
    entries = [ob.put("wb-1", "t", body) for _ in range(4)]
    ids = [e.msg_id for e in entries if e is not None]
    rows = [e.id for e in entries if e is not None]
    assert ob.confirm([ids[0], ids[2], "wb-9:1:1"]) == 2
    assert ob.confirm([ids[0]]) == 0 and ob.confirm([]) == 0
    assert [e.msg_id for e in ob.pending()] == [ids[1], ids[3]]
    assert [e.msg_id for e in ob.rows(rows)] == [ids[1], ids[3]] and ob.rows([]) == []


def test_put_allocated_stores_foreign_ids_once_and_leaves_the_devices_seq(tmp_path: Path) -> None:
    """A replayed backlog (or a replaced box's outbox) keeps its msg_ids: stored once, in order."""
    box = Outbox(tmp_path / "o.db")
    rows = [("wb", i, f"wb:100:{i}", "ws/v1/s/weighbridge/wb/weighing", b"{}") for i in (1, 2, 3)]
    assert box.put_allocated(rows) == 3
    assert box.put_allocated(rows) == 0, "the same backlog twice is stored once"
    assert [e.msg_id for e in box.pending()] == ["wb:100:1", "wb:100:2", "wb:100:3"]
    assert box.next_msg_id("wb") == f"wb:{box.epoch}:1", "the device's own seq is untouched"
    box.close()
