"""The officers' workflow in the store, the supervisor's figures and the alert page's map."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.events import Severity
from stream.alerting.make import make_alert
from stream.alerting.officer.evidence import Evidence, Fence, TrackPoint, group_of
from stream.alerting.officer.figures import open_overview, weekly
from stream.alerting.officer.mapsvg import HEIGHT, WIDTH, Projection, render_map, tile_url
from stream.alerting.store import AlertStore, InvalidInput, TransitionError

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Beijing


def alert(key: str, severity: Severity = Severity.CRITICAL, at_s: float = 0.0):
    return make_alert("illegal_dumping", severity, site_id="fleet-liubei", device_id="t1",
                      subject=f"桂B{key}", summary="dump", evidence=("m1",),
                      ts=T0 + timedelta(seconds=at_s), dedup_key=key, lat=24.3, lon=109.4)


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "alerts.db")


def test_workflow_steps_are_recorded_with_who_and_what(store: AlertStore) -> None:
    a = alert("1")
    store.ingest(a, 1800, [], district="liubei")
    store.transition(a.alert_id, "ack", "wang")
    store.transition(a.alert_id, "assign", "boss", assignee="zhang")
    store.transition(a.alert_id, "note", "zhang", "到场核查")
    with pytest.raises(InvalidInput, match="case number"):
        store.transition(a.alert_id, "close", "zhang", outcome="confirmed")
    with pytest.raises(InvalidInput, match="outcome must be"):
        store.transition(a.alert_id, "close", "zhang", outcome="solved")
    got = store.transition(a.alert_id, "close", "zhang", outcome="confirmed", case_no="柳罚〔2026〕1号")
    assert (got["state"], got["outcome"], got["case_no"], got["assignee"]) == (
        "closed", "confirmed", "柳罚〔2026〕1号", "zhang")
    assert got["district"] == "liubei" and got["acked_at"] and got["closed_at"]
    assert [(e["action"], e["actor"]) for e in got["events"]] == [
        ("raise", "stream"), ("ack", "wang"), ("assign", "boss"), ("note", "zhang"), ("close", "zhang")]
    assert got["events"][-1]["detail"] == "outcome=confirmed case_no=柳罚〔2026〕1号"
    with pytest.raises(TransitionError):
        store.transition(a.alert_id, "assign", "boss", assignee="li")  # closed: reopen first
    again = store.transition(a.alert_id, "reopen", "boss", "复查")
    assert again["state"] == "open" and again["outcome"] == "" and again["closed_at"] is None


def test_officer_scope_and_assignee_filters(store: AlertStore) -> None:
    for key, district in (("1", "liubei"), ("2", "yufeng"), ("3", "")):
        store.ingest(alert(key, at_s=float(key)), 1800, [], district=district)
    assert {a["district"] for a in store.find(districts=["liubei"])} == {"liubei"}
    assert store.find(districts=[]) == []
    assert len(store.find()) == 3


def test_escalation_once_after_the_deadline(store: AlertStore) -> None:
    a, b = alert("1"), alert("2", Severity.WARNING)
    store.ingest(a, 1800, [])
    store.ingest(b, 1800, [])
    now = time.time_ns()
    deadlines = {"critical": 60.0}
    assert store.overdue(now, deadlines) == []
    late = now + 61 * 10**9
    assert [x["alert_id"] for x in store.overdue(late, deadlines)] == [a.alert_id]
    assert store.escalate(a.alert_id, ["supervisors"], 60)
    assert not store.escalate(a.alert_id, ["supervisors"], 60)  # once
    assert store.overdue(late, deadlines) == []
    got = store.get(a.alert_id)
    assert got["escalated_at"] and [p["channel"] for p in got["push"]] == ["supervisors"]
    assert got["events"][-1]["action"] == "escalate" and got["events"][-1]["actor"] == "system"
    c = alert("3")
    store.ingest(c, 1800, [])
    store.transition(c.alert_id, "ack", "wang")
    assert store.overdue(late, deadlines) == []  # acknowledged in time: nothing to escalate


def test_weekly_closure_rate_and_time_to_close() -> None:
    h = 3600 * 10**9
    base = int(T0.timestamp() * 1e9)
    rows = [
        {"raised_ns": base, "received_ns": base, "state": "closed", "acked_ns": base + h // 2,
         "closed_ns": base + 2 * h, "escalated_ns": None, "district": "liubei", "assignee": "wang"},
        {"raised_ns": base + h, "received_ns": base + h, "state": "open", "acked_ns": None, "closed_ns": None,
         "escalated_ns": base + 2 * h, "district": "liubei", "assignee": ""},
        {"raised_ns": base + 8 * 86400 * 10**9, "received_ns": 0, "state": "closed", "acked_ns": None,
         "closed_ns": base + 8 * 86400 * 10**9 + 4 * h, "escalated_ns": None, "district": "", "assignee": ""},
    ]
    first, second = weekly(rows)
    assert (first.monday, first.raised, first.closed, first.closure_rate) == ("2026-11-30", 2, 1, 0.5)
    assert (first.ack_median_min, first.close_median_min, first.escalated) == (30.0, 120.0, 1)
    assert (second.monday, second.closure_rate, second.close_median_min) == ("2026-12-07", 1.0, 240.0)
    over = open_overview(rows, base + 3 * h)
    assert over.total == 1 and over.by_district == {"liubei": 1} and over.by_age["1-4 h"] == 1
    assert over.by_assignee == {"": 1}


def test_map_draws_track_fences_and_points_inside_the_view() -> None:
    track = [TrackPoint(i * 10**10, 24.36 + i * 0.002, 109.40, 30.0, i != 2, i == 3, 9000.0 - (i == 4) * 5000)
             for i in range(6)]
    ev = Evidence("truck", track=track, event=(24.366, 109.40), bed_raised=track[3], load_drop=track[4],
                  fences=[Fence("near", [(24.371, 109.399), (24.371, 109.401), (24.369, 109.401)]),
                          Fence("far", [(25.0, 110.0), (25.1, 110.0), (25.1, 110.1)])])
    svg = render_map(ev)
    assert svg.count('class="fence"') == 1  # the far site is off the map
    assert svg.count("<line") == 5 and svg.count('track uncovered') == 1
    assert 'class="bed"' in svg and 'class="drop"' in svg and 'class="event"' in svg and "<image" not in svg
    proj = Projection([(p.lat, p.lon) for p in track])
    for p in track:
        x, y = proj.px(p.lat, p.lon)
        assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
    tianditu = "https://t{s}.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk={tk}"
    tiled = render_map(ev, (tianditu, "KEY", ["0", "1"]))
    assert "<image" in tiled and "tk=KEY" in tiled and "&amp;" in tiled  # escaped inside the SVG
    assert tile_url("https://a/{z}/{x}/{y}.png", 12, 3, 4) == "https://a/12/3/4.png"


def test_evidence_group_per_kind() -> None:
    assert group_of("illegal_dumping") == "truck"
    assert group_of("weighbridge_tare_deviation") == "weighbridge"
    assert group_of("bin_full") == "sorting"
    assert group_of("device_offline") == "other"
