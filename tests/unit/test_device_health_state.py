"""Device health (pure): Last-Will offline (also beyond the dedup window), silence, re-arm, outbox
threshold, duplicates, points, and a site whose edge is offline (one alert, not one per device)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contract.events import Alert, DeviceState, DeviceStatus
from contract.msgid import device_key, parse_msg_id
from stream.agents.device_health_state import (
    WILLS_KEPT,
    EdgeNotice,
    Health,
    Output,
    on_check,
    on_edge_notice,
    on_status,
)
from stream.alerting.make import alert_id
from stream.dedup import WINDOW
from stream.rules import DeviceHealthRules, Rules
from stream.sinks.line_protocol import to_line

RULES = Rules(city="t", device_health=DeviceHealthRules(offline_after_s=300, outbox_growing_depth=100))
T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
NS = 1_000_000_000


class Device:
    """One device's table value, fed statuses (arrival at T0 + `at` s) and checks."""

    def __init__(self, device: str = "wb1", site: str = "s1") -> None:
        self.h, self.device, self.site, self.seq = Health(), device, site, 0
        self.alerts: list[Alert] = []

    def status(self, at: float, state: str = "online", depth: int = 0, seq: int | None = None,
               ts_at: float | None = None, error: str | None = None) -> tuple[str, bool]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        msg_id = f"{self.device}:1:{seq}"
        s = DeviceStatus(msg_id=msg_id, device_id=self.device, site_id=self.site,
                         ts=T0 + timedelta(seconds=at if ts_at is None else ts_at),
                         state=DeviceState(state), outbox_depth=depth, last_error=error)
        out = on_status(self.h, s, parse_msg_id(msg_id), ns(at), RULES)
        assert len(out.points) == 1
        self.alerts += out.alerts
        return msg_id, out.duplicate

    def check(self, at: float) -> list[Alert]:
        out = on_check(self.h, device_key(self.site, self.device), ns(at), RULES)
        assert not out.points
        self.alerts += out.alerts
        return out.alerts


def ns(at: float) -> int:
    return int((T0 + timedelta(seconds=at)).timestamp()) * NS


def test_last_will_offline_raises_once_per_episode_and_online_rearms() -> None:
    edge = Device("s1-edge")
    will = f"s1-edge:1:{edge.seq + 1}"
    edge.seq += 1  # the Last-Will's seq is reserved at connect time: it arrives after later seqs
    edge.status(0)
    edge.status(60)
    _, dup = edge.status(90, "offline", seq=1, ts_at=-1, error="connection lost (last will)")
    assert not dup, "the Will fills its dedup gap: new, and it is the newest news"
    assert [a.alert_id for a in edge.alerts] == [alert_id("device_offline", f"s1/s1-edge|{will}")]
    assert edge.alerts[0].evidence == (will,) and "lost its connection" in edge.alerts[0].summary
    assert "last will" not in edge.alerts[0].summary  # the edge's raw text is not for officers
    assert edge.alerts[0].ts == T0 + timedelta(seconds=90)  # heard, not the Will's stale ts
    assert edge.h.state == "offline"
    edge.status(95, "offline")
    assert edge.check(1000) == []  # already in an offline episode: silence adds nothing
    assert len(edge.alerts) == 1
    edge.status(1100)  # online again: re-armed
    second, _ = edge.status(1200, "offline")
    assert [a.alert_id for a in edge.alerts][1:] == [alert_id("device_offline", f"s1/s1-edge|{second}")]


def test_silence_after_offline_after_s_then_rearmed_when_heard() -> None:
    d = Device()
    last, _ = d.status(0)
    assert d.check(299) == []
    [alert] = d.check(300)
    assert alert.alert_id == alert_id("device_offline", f"s1/wb1|silent-after|{last}")
    assert alert.ts == T0 + timedelta(seconds=300) and alert.evidence == (last,)
    assert d.check(600) == [] and d.check(300) == []  # repeated or replayed checks: once
    d.status(700)
    assert d.check(800) == []
    last, _ = d.status(900)
    [again] = d.check(1300)
    assert again.alert_id == alert_id("device_offline", f"s1/wb1|silent-after|{last}")


def test_never_heard_is_never_silent_and_check_replay_gives_the_same_id() -> None:
    assert on_check(Health(), "x", ns(10**6), RULES).alerts == []
    a, b = Device(), Device()
    a.status(0)
    b.status(0)
    assert [x.alert_id for x in a.check(400)] == [x.alert_id for x in b.check(500)]


def test_device_first_heard_offline_alerts() -> None:
    d = Device("st1")
    msg, _ = d.status(0, "offline", error="serial port missing")
    assert [a.alert_id for a in d.alerts] == [alert_id("device_offline", f"s1/st1|{msg}")]


def test_outbox_growing_threshold_and_rearm_below_half() -> None:
    edge = Device("s1-edge")
    edge.status(0, depth=99)
    edge.status(60, depth=100)  # over the threshold once: could be a backlog being drained
    assert edge.alerts == []
    first, _ = edge.status(120, depth=400)  # twice in a row and not falling: growing
    edge.status(180, depth=51)  # not below half: same episode
    edge.status(240, depth=120)
    assert [a.alert_id for a in edge.alerts] == [alert_id("outbox_growing", f"s1/s1-edge|{first}")]
    assert edge.alerts[0].kind == "outbox_growing" and edge.alerts[0].severity == "warning"
    edge.status(300, depth=49)  # below half: re-armed
    edge.status(360, depth=100)
    second, _ = edge.status(420, depth=100)
    assert [a.alert_id for a in edge.alerts][1:] == [alert_id("outbox_growing", f"s1/s1-edge|{second}")]


def test_an_edge_back_with_a_backlog_that_drains_is_not_alerted() -> None:
    """After an outage (or a replayed day) the edge connects with thousands of rows and delivers
    them: its next heartbeat is lower. That is data getting through, not an outbox growing."""
    edge = Device("s1-edge")
    edge.status(0, depth=0)
    edge.status(60, depth=5000)  # connects with the backlog
    edge.status(120, depth=4000)  # draining
    edge.status(180, depth=0)
    assert edge.alerts == []


def test_outbox_depth_of_other_devices_is_the_sites_outbox_and_not_alerted() -> None:
    d = Device("wb1")
    d.status(0, depth=5000)
    assert d.alerts == []


def test_duplicates_change_nothing_and_still_write_their_point() -> None:
    d = Device()
    d.status(0)
    offline, _ = d.status(60, "offline")
    before = d.h.to_json()
    _, dup = d.status(61, "online", seq=1)
    assert dup and d.h.to_json() == before
    _, dup = d.status(62, "offline", seq=2)
    assert dup and len(d.alerts) == 1
    again = Health.from_json(before)
    out = on_status(again, DeviceStatus(msg_id=offline, device_id="wb1", site_id="s1", ts=T0,
                                        state=DeviceState.OFFLINE), parse_msg_id(offline), ns(60), RULES)
    assert out.duplicate and out.alerts == [] and len(out.points) == 1


def test_state_roundtrips_through_json_and_point_shape() -> None:
    d = Device()
    d.status(0, "offline", depth=7, error="e")
    assert Health.from_json(d.h.to_json()) == d.h
    s = DeviceStatus(msg_id="wb1:1:1234567", device_id="wb1", site_id="s1", ts=T0, state=DeviceState.ONLINE,
                     outbox_depth=3, clock_offset_s=-1.5)
    out = on_status(Health(), s, parse_msg_id(s.msg_id), ns(0) + 123_456_789, RULES)
    line = to_line(out.points[0])
    want_ns = ns(0) + 123_000_000 + 234_567  # arrival ms + the seq's last six digits
    assert line == ('device_status,device=wb1,site=s1 clock_offset_s=-1.5,last_error="",'
                    f'msg_id="wb1:1:1234567",online=true,outbox_depth=3i,state="online" {want_ns}')


# -- the edge's Last-Will beyond the dedup window (seq taken at connect, ~1000 heartbeats later)

def edge_after_heartbeats(beats: int) -> tuple[Device, str]:
    """An edge whose Will (seq 1) was composed at connect, then online and `beats` heartbeats."""
    edge = Device("s1-edge")
    edge.seq = 1
    for i in range(beats + 1):
        edge.status(i * 60)
    return edge, "s1-edge:1:1"


def will(edge: Device, at: float, seq: int = 1) -> tuple[str, Output]:
    msg_id = f"s1-edge:1:{seq}"
    s = DeviceStatus(msg_id=msg_id, device_id="s1-edge", site_id="s1", ts=T0, state=DeviceState.OFFLINE,
                     last_error="connection lost (last will)")
    out = on_status(edge.h, s, parse_msg_id(msg_id), ns(at), RULES)
    edge.alerts += out.alerts
    return msg_id, out


def test_last_will_below_the_dedup_window_alerts_once_and_redelivery_adds_no_point() -> None:
    edge, will_id = edge_after_heartbeats(WINDOW + 200)
    heard = (WINDOW + 300) * 60
    _, first = will(edge, heard)
    assert not first.duplicate, "the Will is the newest news however old its seq"
    assert [a.alert_id for a in edge.alerts] == [alert_id("device_offline", f"s1/s1-edge|{will_id}")]
    assert edge.h.state == "offline"
    _, again = will(edge, heard + 30)  # MQTT redelivery: a new Kafka record, later
    assert again.duplicate and again.alerts == [] and len(edge.alerts) == 1
    assert [to_line(p) for p in again.points] == [to_line(p) for p in first.points], \
        "stamped at its first arrival: InfluxDB overwrites, no second point"
    restored = Health.from_json(edge.h.to_json())  # a replay of the partition after a restart
    edge.h = restored
    _, replayed = will(edge, heard)
    assert replayed.duplicate and replayed.alerts == [] and len(edge.alerts) == 1


def test_second_outage_is_a_new_will_and_old_wills_stay_duplicates() -> None:
    edge, first = edge_after_heartbeats(WINDOW + 10)
    will(edge, 10**5)
    edge.seq += 1  # the agent reconnects: its next Will is taken then, before the online status
    second = f"s1-edge:1:{edge.seq}"
    for i in range(WINDOW + 10):
        edge.status(10**5 + 60 + i * 60)
    _, out = will(edge, 10**6, seq=parse_msg_id(second).seq)
    assert not out.duplicate
    assert [a.alert_id for a in edge.alerts] == [alert_id("device_offline", f"s1/s1-edge|{first}"),
                                                 alert_id("device_offline", f"s1/s1-edge|{second}")]
    _, old = will(edge, 10**6 + 1)
    assert old.duplicate and len(edge.alerts) == 2


def test_only_the_edges_own_offline_escapes_the_window() -> None:
    edge, _ = edge_after_heartbeats(WINDOW + 5)
    _, dup = edge.status(10**6, seq=2)  # an old heartbeat is still a duplicate
    assert dup
    d = Device("wb1")
    for i in range(WINDOW + 5):
        d.status(i)
    _, dup = d.status(10**6, "offline", seq=1)  # a device's own offline keeps the seq rules
    assert dup and d.alerts == []


def test_wills_kept_are_bounded_and_older_than_all_of_them_is_a_duplicate_without_point() -> None:
    edge = Device("s1-edge")
    for k in range(WILLS_KEPT + 2):
        edge.status(k * 100)
        will(edge, k * 100 + 50, seq=edge.seq + 1)
        edge.seq += 1
    assert len(edge.h.wills) == WILLS_KEPT and len(edge.alerts) == WILLS_KEPT + 2
    _, out = will(edge, 10**6, seq=2)
    assert out.duplicate and out.points == [] and out.alerts == []


def test_a_replaced_edge_box_with_a_lower_epoch_still_alerts_its_wills() -> None:
    """Issue 11 finding 4: with a full list of the old box's Wills, the new box's (lower epoch)
    compared below all of them and was dropped as a duplicate, for good."""
    edge = Device("s1-edge")
    for k in range(WILLS_KEPT):
        edge.status(k * 100)
        will(edge, k * 100 + 50, seq=edge.seq + 1)
        edge.seq += 1
    alerts = len(edge.alerts)
    for k, seq in enumerate((1, 2, 3)):  # the replacement: epoch 0 < 1, seq from 1 again
        msg_id = f"s1-edge:0:{seq}"
        s = DeviceStatus(msg_id=msg_id, device_id="s1-edge", site_id="s1", ts=T0,
                         state=DeviceState.ONLINE if seq % 2 else DeviceState.OFFLINE)
        out = on_status(edge.h, s, parse_msg_id(msg_id), ns(10**5 + k), RULES)
        assert not out.duplicate, msg_id
        edge.alerts += out.alerts
    assert len(edge.alerts) == alerts + 1 and edge.h.state == "online"
    assert on_status(edge.h, s, parse_msg_id(msg_id), ns(10**5 + 9), RULES).duplicate


# -- a site whose edge is offline: one alert (the edge's), devices' silence explained

def test_edge_state_flips_emit_numbered_notices_the_same_on_replay() -> None:
    edge, will_id = edge_after_heartbeats(3)
    _, out = will(edge, 1000)
    assert out.notices == [EdgeNotice("s1", 1, will_id, ns(1000))]
    before = edge.h.to_json()
    assert will(edge, 1001)[1].notices == []  # duplicate
    back, _ = edge.status(1100)
    after = edge.h.to_json()
    replay = Health.from_json(before)  # crash before the table write: the same number again
    s = DeviceStatus(msg_id=back, device_id="s1-edge", site_id="s1", ts=T0 + timedelta(seconds=1100),
                     state=DeviceState.ONLINE)
    again = on_status(replay, s, parse_msg_id(back), ns(1100), RULES)
    assert again.notices == [EdgeNotice("s1", 2, None, ns(1100))] and replay.to_json() == after
    edge.status(1160)  # online while online: nothing to tell
    stop, _ = edge.status(1200, "offline")  # stopped cleanly: offline too
    assert edge.h.notices == 3 and edge.h.wills[-1][:2] == (1, parse_msg_id(stop).seq)


def test_devices_of_an_offline_edge_are_not_silent_until_it_is_back() -> None:
    d = Device("wb1")
    last, _ = d.status(0)
    assert on_edge_notice(d.h, "wb1", EdgeNotice("s1", 1, "s1-edge:1:1", ns(100)))
    assert not d.h.silent(ns(10**5), RULES) and d.check(10**5) == []
    assert not on_edge_notice(d.h, "wb1", EdgeNotice("s1", 1, "s1-edge:1:1", ns(100))), "replayed"
    assert on_edge_notice(d.h, "wb1", EdgeNotice("s1", 2, None, ns(20_000)))
    assert not on_edge_notice(d.h, "wb1", EdgeNotice("s1", 1, "s1-edge:1:1", ns(100))), "stale"
    assert d.check(20_299) == []
    [alert] = d.check(20_300)  # silent offline_after_s after its edge came back
    assert alert.alert_id == alert_id("device_offline", f"s1/wb1|silent-after|{last}")
    assert alert.ts == T0 + timedelta(seconds=20_300) and "since its edge came back" in alert.summary


def test_a_device_heard_after_its_edge_is_back_counts_from_then() -> None:
    d = Device("wb1")
    d.status(0)
    on_edge_notice(d.h, "wb1", EdgeNotice("s1", 1, "s1-edge:1:1", ns(100)))
    on_edge_notice(d.h, "wb1", EdgeNotice("s1", 2, None, ns(1000)))
    d.status(1100)
    assert d.check(1399) == [] and len(d.check(1400)) == 1


def test_explicit_offline_still_alerts_while_the_edge_is_down() -> None:
    d = Device("wb1")
    d.status(0)
    on_edge_notice(d.h, "wb1", EdgeNotice("s1", 1, "s1-edge:1:1", ns(100)))
    msg, _ = d.status(200, "offline", error="serial port missing")
    assert [a.alert_id for a in d.alerts] == [alert_id("device_offline", f"s1/wb1|{msg}")]


def test_a_notice_leaves_the_edge_itself_and_other_sites_alone() -> None:
    edge, _ = edge_after_heartbeats(1)
    other = Device("wb9", site="s2")
    other.status(0)
    notice = EdgeNotice("s1", 1, "s1-edge:1:1", ns(100))
    assert not on_edge_notice(edge.h, "s1-edge", notice) and not on_edge_notice(other.h, "wb9", notice)
    assert other.check(400) and edge.check(10**5)


def test_a_planned_stop_raises_nothing_and_the_next_offline_still_alerts() -> None:
    """An edge stopped on purpose says `stopped` for its devices and itself: no alert, no silence
    episode afterwards (also for the devices: the edge's notice says down), and a real outage
    after it is alerted as before."""
    d, edge = Device("wb1"), Device("s1-edge")
    d.status(0)
    edge.status(0)
    d.status(100, "stopped", error="planned stop (SIGTERM)")
    edge.status(101, "stopped", error="planned stop (SIGTERM)")
    assert d.alerts == [] and edge.alerts == []
    assert edge.h.notices == 1, "a stopped edge explains its devices' silence"
    assert d.check(10**5) == [] and edge.check(10**5) == [], "stopped: silence is intended"
    d.status(20_000)  # started again
    edge.status(20_000)
    assert edge.h.notices == 2
    msg, _ = d.status(20_100, "offline", error="SerialException: device reports readiness to read but "
                                                 "returned no data")
    [alert] = d.alerts
    assert alert.alert_id == alert_id("device_offline", f"s1/wb1|{msg}")
    assert "SerialException" not in alert.summary and "readiness" not in alert.summary
    assert "stopped responding" in alert.summary


def test_silence_after_a_stopped_status_is_not_judged() -> None:
    d = Device("wb1")
    d.status(0)
    d.status(10, "stopped", error="planned stop")
    assert not d.h.silent(ns(10**6), RULES) and d.check(10**6) == []
    d.status(2000)  # back: silence counts again
    assert len(d.check(2300)) == 1
