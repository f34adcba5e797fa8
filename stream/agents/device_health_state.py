"""Device health (pure): online/offline, silence and growing outboxes, per device.

One table value per device (`Health`): the dedup mark (stream/dedup.py) and what the
stream knows of the device, so mark and state are one changelog record (see dedup.py).

- **State follows arrival order** (the partition's order), not seq or `ts`: the edge's
  Last-Will is composed (msg_id and `ts`) when the agent connects, so it carries an older
  seq and time than every heartbeat of that connection, yet it is the newest news. A
  late seq still fills its dedup gap; only a true duplicate is dropped.
- **`device_offline`** (warning), once per episode: a status saying `offline` (the agent's
  Last-Will, or a device its edge judged offline), dedup key `device|msg_id`; or silence,
  nothing heard for `offline_after_s` (a `check` from the timer, stream/agents/device_health.py),
  dedup key `device|silent-after|last msg_id`. An `online` status ends the episode (re-arm).
- **`outbox_growing`** (warning), once per episode, for the site's edge agent only
  (`{site_id}-edge`): every status of a site carries the same site outbox depth, so judging
  each device would page once per device for one outbox. Starts at depth ≥
  `outbox_growing_depth` (dedup key `device|msg_id`), re-armed below half of it.
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

from contract.events import Alert, DeviceState, DeviceStatus, Severity
from contract.msgid import MsgKey
from stream.agents.seen import accept
from stream.alerting.make import make_alert
from stream.rules import Rules
from stream.sinks.line_protocol import Point, to_ns

NS = 1_000_000_000
DEVICE_STATUS = "device_status"
DEVICE_OFFLINE = "device_offline"
OUTBOX_GROWING = "outbox_growing"


def edge_device_id(site_id: str) -> str:
    """The edge agent's own status device (edge/mqtt_session.py `agent_device_id`)."""
    return f"{site_id}-edge"


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

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Health:
        return msgspec.convert(data, cls) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def silent(self, now_ns: int, rules: Rules) -> bool:
        """Heard before, not in an offline episode, and nothing since `offline_after_s` (timer's question)."""
        return (bool(self.msg_id) and self.offline is None
                and now_ns - self.heard_ns >= rules.device_health.offline_after_s * NS)


class Output(msgspec.Struct):
    duplicate: bool = False
    alerts: list[Alert] = []
    points: list[Point] = []


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
    out = Output(points=[status_point(s, key, heard_ns)])
    if not accept(h.mark, key):
        out.duplicate = True  # its point is idempotent: written again (heals a crash before the write)
        return out
    h.site, h.state, h.msg_id = s.site_id, s.state.value, s.msg_id
    h.ts_ns, h.heard_ns = to_ns(s.ts), max(h.heard_ns, heard_ns)
    h.outbox_depth, h.last_error = s.outbox_depth, s.last_error
    when = datetime.fromtimestamp(heard_ns / NS, UTC)
    if s.state is DeviceState.ONLINE:
        h.offline = None
    elif h.offline is None:
        h.offline = f"{s.device_id}|{s.msg_id}"
        out.alerts.append(make_alert(
            DEVICE_OFFLINE, Severity.WARNING, site_id=s.site_id, device_id=s.device_id, subject=s.device_id,
            summary=f"{s.device_id} at {s.site_id} reported offline"
                    + (f": {s.last_error}" if s.last_error else ""),
            evidence=[s.msg_id], ts=when, dedup_key=h.offline))
    _outbox(h, s, when, rules, out)
    return out


def _outbox(h: Health, s: DeviceStatus, when: datetime, rules: Rules, out: Output) -> None:
    if s.device_id != edge_device_id(s.site_id):
        return
    limit = rules.device_health.outbox_growing_depth
    if h.outbox is not None and s.outbox_depth < limit / 2:
        h.outbox = None
    elif h.outbox is None and s.outbox_depth >= limit:
        h.outbox = f"{s.device_id}|{s.msg_id}"
        out.alerts.append(make_alert(
            OUTBOX_GROWING, Severity.WARNING, site_id=s.site_id, device_id=s.device_id, subject=s.device_id,
            summary=f"the outbox of {s.site_id}'s edge holds {s.outbox_depth} messages "
                    f"(threshold {limit}): data is not getting through",
            evidence=[s.msg_id], ts=when, dedup_key=h.outbox))


def on_check(h: Health, device_id: str, now_ns: int, rules: Rules) -> Output:
    """The timer's "it is now `now_ns`": open a silence episode if the device is still silent."""
    out = Output()
    if not h.silent(now_ns, rules):
        return out  # heard meanwhile, already offline, or a repeated check
    h.offline = f"{device_id}|silent-after|{h.msg_id}"
    after = rules.device_health.offline_after_s
    out.alerts.append(make_alert(
        DEVICE_OFFLINE, Severity.WARNING, site_id=h.site, device_id=device_id, subject=device_id,
        summary=f"{device_id} at {h.site}: nothing heard for {after:g} s (last status {h.msg_id}, {h.state})",
        evidence=[h.msg_id], ts=datetime.fromtimestamp((h.heard_ns + round(after * NS)) / NS, UTC),
        dedup_key=h.offline))
    return out

