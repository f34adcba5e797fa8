"""Device health (pure): online/offline, silence and growing outboxes, per device.

One table value per device (`Health`): the dedup mark (stream/dedup.py) and what the
stream knows of the device, so mark and state are one changelog record (see dedup.py).

- **State follows arrival order** (the partition's order), not seq or `ts`: the edge's
  Last-Will is composed (msg_id and `ts`) when the agent connects, so it carries an older
  seq and time than every heartbeat of that connection, yet it is the newest news. A
  late seq still fills its dedup gap; only a true duplicate is dropped.
- **The edge's own `offline`** (its Last-Will, or the `offline` it says when stopped): a
  status of device `{site_id}-edge` (edge/mqtt_session.py `agent_device_id`; the dashboards
  rely on the same name) in state `offline`. The agent's heartbeats are always `online`, so
  this identifies the Will without a contract change (an added field would be refused by
  strict decoders not yet upgraded) and without its `last_error` text. Why it needs its own
  de-duplication: the Will's seq is taken at connect time and every heartbeat after it takes
  a newer one, so after `dedup.WINDOW` heartbeats (~17 h at 60 s) its seq is below the window
  and the seq mark would take it for a duplicate. So these statuses are judged by
  `Health.wills` instead: the (epoch, seq) of the last `WILLS_KEPT` of them accepted, with the
  arrival time of each. One in that list is a duplicate (an MQTT redelivery, a replay of the
  partition: no alert, and its point is written again at its FIRST arrival time, so InfluxDB
  overwrites instead of gaining a point); one older than every Will of its own epoch in a full
  list is a duplicate with no point; anything else is new, whatever its seq. Epochs are not
  compared (a replaced edge box may start a lower epoch, stream/dedup.py): a Will of an epoch
  no longer in the list counts as new, at worst a repeat whose alert id the alert service
  already knows. The seq mark still records it (fills its
  gap if within the window). Rejected alternatives: renewing the Will by reconnecting (drops
  the session for a bookkeeping problem); heartbeats on a seq stream of their own (one device
  id has one seq per the contract, and dedup.py orders by it).
- **A planned stop raises nothing**: an edge that stops on purpose (SIGTERM, maintenance) says
  `stopped` for each device and for itself (edge/status.py `stopped_statuses`). A stopped device
  is not judged silent, and a stopped edge explains its devices' silence like an offline one
  (its `EdgeNotice` says down), but no alert is raised for either; `online` again re-arms.
- **Officers read a plain reason**, never a driver's exception text (`SerialException: device
  reports readiness...`): the summary says what kind of failure it is (`offline_reason`); the raw
  `last_error` stays in the `device_status` point and the edge's log for the engineers.
- **`device_offline`** (warning), once per episode: a status saying `offline` (the agent's
  Last-Will, or a device its edge judged offline), dedup key `site/device|msg_id`; or silence,
  nothing heard for `offline_after_s` (a `check` from the timer, stream/agents/device_health.py),
  dedup key `site/device|silent-after|last msg_id`. The table key is `site/device` too
  (contract.msgid.device_key): device ids are unique within a site only. An `online` status
  ends the episode (re-arm).
- **A site whose edge is offline** raises one `device_offline` (the edge's), not one more per
  device: the devices' silence is explained. The edge's state lives on its own partition, its
  devices' on theirs, so when the edge's state flips (offline, or online again after it) its
  owner emits an `EdgeNotice` (numbered per edge: `Health.notices`, restored with the edge's
  state, so a replay re-emits the same numbers), which device_health.py sends to EVERY
  partition of the checks topic; each partition's owner applies it, in order with that
  partition's statuses, to the devices of the site it holds (`on_edge_notice`): `edge_down`
  while the edge is offline (no silence episode opens), then `edge_up_ns`: silence counts
  from the later of last heard and the edge's return, so a device that stays silent after its
  edge is back is alerted `offline_after_s` later. A stale notice (number not above the last
  one applied: a replay) changes nothing. An explicit `offline` status for a device still
  alerts (a live edge judged it offline). Not covered: an edge that goes silent without a Will
  (its silence and its devices' are judged independently, each alerts); a device first heard
  after its edge's offline notice was applied on its partition.
- **`outbox_growing`** (warning), once per episode, for the site's edge agent only
  (`{site_id}-edge`): every status of a site carries the same site outbox depth, so judging
  each device would page once per device for one outbox. Starts when two statuses in a row
  are at depth ≥ `outbox_growing_depth` and the second is not lower (dedup key
  `site/device|msg_id` of the second): an edge that comes back with a backlog and drains it
  (the next heartbeat is lower) is not "data not getting through". Re-armed below half of it.
- **Clock**: "heard" is the Kafka record timestamp (the bridge's produce time), the same after
  any replay; silence is judged on a watermark of it (manifest_state.Watermark), so a replayed
  backlog does not look silent.
- **Points**: `device_status`, one per status message, timestamped at arrival (ms) plus the
  seq's last six digits as ns (two statuses of one device in one ms stay two points): a
  Last-Will's `ts` would put "offline" before the heartbeats it follows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from contract.events import Alert, DeviceState, DeviceStatus
from contract.msgid import MsgKey, device_key, split_device_key
from stream.agents.seen import accept
from stream.alerting.make import make_alert
from stream.rules import Rules
from stream.sinks.line_protocol import Point, to_ns

NS = 1_000_000_000
DEVICE_STATUS = "device_status"
WILLS_KEPT = 16
"""The edge's own offline statuses remembered for de-duplication (one per outage)."""


def edge_device_id(site_id: str) -> str:
    """The edge agent's own status device (edge/mqtt_session.py `agent_device_id`)."""
    return f"{site_id}-edge"


def offline_reason(s: DeviceStatus) -> str:
    """A plain reason for officers (no exception text): the edge's own offline is its connection
    (its Last-Will: the box, its power or its network); a device's is its link to the edge."""
    if s.device_id == edge_device_id(s.site_id):
        return "the site's edge gateway lost its connection to the platform (power or network)"
    return "the device stopped responding to the site's edge gateway (details in its device status)"


def is_edge_down(s: DeviceStatus) -> bool:
    """The edge agent itself offline (its Last-Will) or stopped on purpose: its devices' silence
    is explained."""
    return s.state is not DeviceState.ONLINE and s.device_id == edge_device_id(s.site_id)


def is_edge_offline(s: DeviceStatus) -> bool:
    """The edge agent's own `offline`: its Last-Will, or what it says when stopped."""
    return s.state is DeviceState.OFFLINE and s.device_id == edge_device_id(s.site_id)


class EdgeNotice(msgspec.Struct, frozen=True, tag="edge", tag_field="kind"):
    """A site edge's state flipped: sent to every partition, applied to the site's devices there."""

    site: str
    n: int
    """The edge's notice number (1, 2, ...): a device applies only a newer one than it has."""
    down: str | None
    """msg_id of the edge's `offline` status; None: the edge is online again."""
    heard_ns: int
    """Record time of that status: silence counts from it when the edge is back."""


class Health(msgspec.Struct, kw_only=True):
    """What the stream remembers per device (the table value, as JSON)."""

    mark: dict[str, Any] = {}
    partition: int | None = None
    """The source partition of this key: the timer only checks keys of partitions it owns."""
    site: str = ""
    state: str = ""
    msg_id: str = ""
    """The last status heard (arrival order)."""
    ts_ns: int = 0
    heard_ns: int = 0
    outbox_depth: int = 0
    last_error: str | None = None
    offline: str | None = None
    """Dedup key of the open offline episode (alerted); None when armed."""
    outbox: str | None = None
    """Dedup key of the open outbox episode (alerted); None when armed."""
    wills: list[tuple[int, int, int]] = []
    """The edge only: (epoch, seq, heard_ns) of its own offline statuses accepted, in arrival order."""
    notices: int = 0
    """The edge only: EdgeNotices emitted so far (the last one's number)."""
    edge_notice: int = 0
    """A device: number of the last notice of its site's edge applied."""
    edge_down: str | None = None
    """A device: msg_id of its edge's `offline` while the edge is offline (silence explained)."""
    edge_up_ns: int = 0
    """A device: when its edge was heard back online; silence counts from here at the earliest."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Health:
        return msgspec.convert(data, cls) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def quiet_since_ns(self) -> int:
        """Since when silence counts: last heard, or its edge's return if that is later."""
        return max(self.heard_ns, self.edge_up_ns)

    def silent(self, now_ns: int, rules: Rules) -> bool:
        """Heard before, not in an offline episode, its edge not offline, and nothing for
        `offline_after_s` (the timer's question)."""
        return (bool(self.msg_id) and self.offline is None and self.edge_down is None
                and self.state != DeviceState.STOPPED.value
                and now_ns - self.quiet_since_ns() >= rules.device_health.offline_after_s * NS)


class Output(msgspec.Struct):
    duplicate: bool = False
    alerts: list[Alert] = []
    points: list[Point] = []
    notices: list[EdgeNotice] = []
    """For every partition of the checks topic (device_health.py)."""


def status_point(s: DeviceStatus, key: MsgKey, heard_ns: int) -> Point:
    fields: dict[str, float | int | bool | str] = {
        "state": s.state.value, "online": s.state is DeviceState.ONLINE, "outbox_depth": s.outbox_depth,
        "last_error": s.last_error or "", "msg_id": s.msg_id}
    if s.clock_offset_s is not None:
        fields["clock_offset_s"] = float(s.clock_offset_s)
    ms = heard_ns // 1_000_000
    return Point(DEVICE_STATUS, {"site": s.site_id, "device": s.device_id}, fields,
                 ms * 1_000_000 + key.seq % 1_000_000)


def on_status(h: Health, s: DeviceStatus, key: MsgKey, heard_ns: int, rules: Rules) -> Output:
    """Apply one status heard at `heard_ns` (Kafka record time) to `h` (mutated)."""
    if is_edge_offline(s):
        new, stamp = _accept_edge_offline(h, key, heard_ns)
    else:
        new, stamp = accept(h.mark, key), heard_ns
    out = Output(points=[] if stamp is None else [status_point(s, key, stamp)])
    if not new:
        out.duplicate = True  # its point is idempotent: written again (heals a crash before the write)
        return out
    was_down = h.state in (DeviceState.OFFLINE.value, DeviceState.STOPPED.value)
    h.site, h.state, h.msg_id = s.site_id, s.state.value, s.msg_id
    h.ts_ns, h.heard_ns = to_ns(s.ts), max(h.heard_ns, heard_ns)
    previous_depth = h.outbox_depth
    h.outbox_depth, h.last_error = s.outbox_depth, s.last_error
    when = datetime.fromtimestamp(heard_ns / NS, UTC)
    if s.state is not DeviceState.OFFLINE:
        h.offline = None  # online, or stopped on purpose: nothing to alert, the next offline alerts
    elif h.offline is None:
        h.offline = f"{device_key(s.site_id, s.device_id)}|{s.msg_id}"
        out.alerts.append(make_alert(
            "device_offline", site_id=s.site_id, device_id=s.device_id, subject=s.device_id,
            summary=f"{s.device_id} at {s.site_id} reported offline: {offline_reason(s)}",
            evidence=[s.msg_id], ts=when, dedup_key=h.offline))
    _outbox(h, s, previous_depth, when, rules, out)
    if s.device_id == edge_device_id(s.site_id) and was_down != is_edge_down(s):
        h.notices += 1
        out.notices.append(EdgeNotice(s.site_id, h.notices, s.msg_id if is_edge_down(s) else None,
                                      heard_ns))
    return out


def _accept_edge_offline(h: Health, key: MsgKey, heard_ns: int) -> tuple[bool, int | None]:
    """(new, arrival time for its point) of the edge's own offline: judged by `h.wills`, not the
    seq window (module doc). A duplicate's point gets its first arrival time (None: unknown)."""
    point = (key.epoch, key.seq)
    for epoch, seq, heard in h.wills:
        if (epoch, seq) == point:
            return False, heard
    same_epoch = [seq for epoch, seq, _ in h.wills if epoch == key.epoch]
    if len(h.wills) >= WILLS_KEPT and same_epoch and key.seq < min(same_epoch):
        return False, None  # older than every kept Will of its outbox (epochs are not ordered)
    accept(h.mark, key)  # fills its gap within the window; below it, the mark cannot tell
    h.wills = [*h.wills, (key.epoch, key.seq, heard_ns)][-WILLS_KEPT:]
    return True, heard_ns


def on_edge_notice(h: Health, device_id: str, notice: EdgeNotice) -> bool:
    """Apply its edge's notice to one device of the site; False (no change) when not applicable:
    the edge itself, or a notice not newer than the last one applied (a replay)."""
    if device_id == edge_device_id(notice.site) or h.site != notice.site or notice.n <= h.edge_notice:
        return False
    h.edge_notice, h.edge_down = notice.n, notice.down
    if notice.down is None:
        h.edge_up_ns = max(h.edge_up_ns, notice.heard_ns)
    return True


def _outbox(h: Health, s: DeviceStatus, previous: int, when: datetime, rules: Rules, out: Output) -> None:
    if s.device_id != edge_device_id(s.site_id):
        return
    limit = rules.device_health.outbox_growing_depth
    if h.outbox is not None and s.outbox_depth < limit / 2:
        h.outbox = None
    elif h.outbox is None and s.outbox_depth >= limit and previous >= limit and s.outbox_depth >= previous:
        h.outbox = f"{device_key(s.site_id, s.device_id)}|{s.msg_id}"
        out.alerts.append(make_alert(
            "outbox_growing", site_id=s.site_id, device_id=s.device_id, subject=s.device_id,
            summary=f"the outbox of {s.site_id}'s edge holds {s.outbox_depth} messages "
                    f"(threshold {limit}): data is not getting through",
            evidence=[s.msg_id], ts=when, dedup_key=h.outbox))


def on_check(h: Health, key: str, now_ns: int, rules: Rules) -> Output:
    """The timer's "it is now `now_ns`" for the device of table key `key` (`site/device`): open a
    silence episode if the device is still silent."""
    out = Output()
    if not h.silent(now_ns, rules):
        return out  # heard meanwhile, already offline, or a repeated check
    _, device_id = split_device_key(key)
    h.offline = f"{key}|silent-after|{h.msg_id}"
    after = rules.device_health.offline_after_s
    since = " since its edge came back" if h.edge_up_ns > h.heard_ns else ""
    out.alerts.append(make_alert(
        "device_offline", site_id=h.site, device_id=device_id, subject=device_id,
        summary=f"{device_id} at {h.site}: nothing heard for {after:g} s{since} "
                f"(last status {h.msg_id}, {h.state})",
        evidence=[h.msg_id], ts=datetime.fromtimestamp((h.quiet_since_ns() + round(after * NS)) / NS, UTC),
        dedup_key=h.offline))
    return out

