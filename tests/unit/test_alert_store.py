"""The lifecycle store: de-duplication, cool-down boundaries, transitions, stats, push jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.events import Severity
from stream.alerting.make import make_alert
from stream.alerting.store import AlertStore, NotFound, Outcome, PushJob, TransitionError

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def alert(key: str, *, kind: str = "illegal_dumping", subject: str = "桂B12345", at: float = 0.0,
          evidence: tuple[str, ...] = ("m1",)):
    return make_alert(kind, Severity.CRITICAL, site_id="s1", device_id="t1", subject=subject,
                      summary="bed raised outside disposal sites", evidence=evidence,
                      ts=T0 + timedelta(seconds=at), dedup_key=key, lat=24.3, lon=109.4)


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "alerts.db")


def test_new_alert_is_open_with_event_evidence_and_jobs(store: AlertStore) -> None:
    a = alert("k1", evidence=("m1", "m2"))
    assert store.ingest(a, 1800, ["hook", "ding"]).outcome is Outcome.NEW
    got = store.get(a.alert_id)
    assert got["state"] == "open" and got["count"] == 1
    assert got["evidence"] == ["m1", "m2"]
    assert [e["action"] for e in got["events"]] == ["raise"]
    assert {p["channel"] for p in got["push"]} == {"hook", "ding"}


def test_replay_of_same_id_changes_nothing(store: AlertStore) -> None:
    a = alert("k1")
    store.ingest(a, 1800, ["hook"])
    before = store.get(a.alert_id)
    assert store.ingest(a, 1800, ["hook"]).outcome is Outcome.DUPLICATE
    assert store.get(a.alert_id) == before


@pytest.mark.parametrize(("delta", "outcome"), [(1799.999, Outcome.SUPPRESSED), (1800.0, Outcome.NEW),
                                                (-1799.0, Outcome.SUPPRESSED), (2000.0, Outcome.NEW)])
def test_cooldown_boundary(store: AlertStore, delta: float, outcome: Outcome) -> None:
    store.ingest(alert("k1"), 1800, ["hook"])
    assert store.ingest(alert("k2", at=delta, evidence=("m9",)), 1800, ["hook"]).outcome is outcome


def test_repeat_is_linked_counted_and_not_pushed(store: AlertStore) -> None:
    first, again = alert("k1"), alert("k2", at=60, evidence=("m9",))
    store.ingest(first, 1800, ["hook"])
    result = store.ingest(again, 1800, ["hook"])
    assert result.primary_id == first.alert_id
    got = store.get(first.alert_id)
    assert got["count"] == 2 and got["evidence"] == ["m1", "m9"]
    assert [r["alert_id"] for r in got["repeats"]] == [again.alert_id]
    assert len(got["push"]) == 1
    # the repeat's id is known too: replaying it is a duplicate, and it resolves to its primary
    assert store.ingest(again, 1800, ["hook"]).outcome is Outcome.DUPLICATE
    assert store.get(again.alert_id)["alert_id"] == first.alert_id
    assert store.stats()["repeats_suppressed"] == 1


def test_cooldown_is_per_kind_and_subject_and_ends_with_closure(store: AlertStore) -> None:
    store.ingest(alert("k1"), 1800, [])
    assert store.ingest(alert("k2", subject="桂B99999"), 1800, []).outcome is Outcome.NEW
    assert store.ingest(alert("k3", kind="uncovered_transport"), 1800, []).outcome is Outcome.NEW
    store.transition(alert("k1").alert_id, "close", "王警官")
    assert store.ingest(alert("k4", at=10), 1800, []).outcome is Outcome.NEW


def test_transitions_record_who_and_reject_invalid(store: AlertStore) -> None:
    a = alert("k1")
    store.ingest(a, 1800, [])
    got = store.transition(a.alert_id, "ack", "李明", "on my way")
    assert got["state"] == "acknowledged"
    assert got["events"][-1]["actor"] == "李明" and got["events"][-1]["note"] == "on my way"
    with pytest.raises(TransitionError, match="acknowledged"):
        store.transition(a.alert_id, "ack", "李明")
    assert store.transition(a.alert_id, "close", "李明", "罚款 5000")["state"] == "closed"
    with pytest.raises(TransitionError, match="closed"):
        store.transition(a.alert_id, "close", "李明")
    with pytest.raises(NotFound):
        store.transition("nope", "ack", "李明")
    with pytest.raises(ValueError):
        store.transition(a.alert_id, "close", "  ")


def test_open_alert_can_be_closed_directly_and_stats(store: AlertStore) -> None:
    ids = [alert(f"k{i}", subject=f"P{i}").alert_id for i in range(4)]
    for i in range(4):
        store.ingest(alert(f"k{i}", subject=f"P{i}"), 1800, [])
    store.transition(ids[0], "close", "a")
    store.transition(ids[1], "ack", "a")
    s = store.stats()
    assert (s["open"], s["acknowledged"], s["closed"], s["total"]) == (2, 1, 1, 4)
    assert s["closure_rate"] == 0.25
    assert store.stats(since_ns=2**61)["closure_rate"] is None
    assert [a["alert_id"] for a in store.find(state="open")] == [ids[3], ids[2]]


def test_push_jobs_retry_then_sent(store: AlertStore) -> None:
    a = alert("k1")
    store.ingest(a, 1800, ["hook"])
    [job] = store.due_jobs(now=1.0, limit=10, exclude=set())
    store.record_delivery(job, ok=False, http_code=500, error="HTTP 500", retry_at=5.0)
    assert store.due_jobs(now=4.0, limit=10, exclude=set()) == []
    [job] = store.due_jobs(now=5.0, limit=10, exclude=set())
    assert job == PushJob(a.alert_id, "hook", 1)
    store.record_delivery(job, ok=True, http_code=200, error="", retry_at=None)
    got = store.get(a.alert_id)
    assert [(d["attempt"], d["status"], d["http_code"]) for d in got["deliveries"]] == [
        (1, "retry", 500), (2, "sent", 200)]
    assert store.next_due() is None


def test_store_survives_reopen(tmp_path: Path) -> None:
    s = AlertStore(tmp_path / "a.db")
    s.ingest(alert("k1"), 1800, ["hook"])
    s.close()
    s2 = AlertStore(tmp_path / "a.db")
    assert s2.ingest(alert("k1"), 1800, ["hook"]).outcome is Outcome.DUPLICATE
    assert len(s2.due_jobs(now=1.0, limit=5, exclude=set())) == 1
