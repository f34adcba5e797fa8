"""device_status reports: what each device's state is, which reports are due, and their payloads.

A `device_status` goes out per device on every change of state (a driver that reports its own
state publishes its changes itself, see edge/device_context.py) and for every device plus the
agent itself on each heartbeat: state, outbox depth, last error, the clock summary, and the
device's clock offset where it keeps time of its own.

A planned stop (SIGTERM, a maintenance shutdown) is said as such: every device and the agent
itself report `stopped` with the reason (`stopped_statuses`), so the stream knows the silence
that follows is intended and raises nothing (stream/agents/device_health_state.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contract import DeviceStatus, encode, mqtt_topic
from contract.events import DeviceState
from edge.clock import ClockGuard
from edge.devices.base import Driver
from edge.health import Health
from edge.outbox import Build, Outbox

log = logging.getLogger("edge.agent")

Item = tuple[str, str, Build]


@dataclass(frozen=True, slots=True)
class Running:
    """One device as the agent runs it."""

    driver: Driver  # type: ignore[type-arg]  # any kind
    health: Health

    @property
    def id(self) -> str:
        return self.driver.cfg.id


def device_state(device: Running, now: float) -> tuple[DeviceState | None, str | None]:
    """(state, error) for the device's status; state None until the driver had a fair chance."""
    health = device.health
    if device.driver.reports_state:
        state = health.state if health.state == DeviceState.OFFLINE else health.driver_state
        return state, health.last_error or health.driver_error
    return health.current(now), health.last_error


def status_item(outbox: Outbox, site_id: str, device_id: str, kind: str, state: DeviceState,
                error: str | None, offset: float | None) -> Item:
    depth = outbox.depth()

    def build(msg_id: str, seq: int) -> bytes:
        return encode(DeviceStatus(
            msg_id=msg_id, device_id=device_id, site_id=site_id, ts=datetime.now(UTC), state=state,
            outbox_depth=depth, last_error=error, clock_offset_s=offset))

    return device_id, mqtt_topic(site_id, kind, device_id, "device_status"), build


def due_statuses(devices: Sequence[Running], outbox: Outbox, clock: ClockGuard, site_id: str, *,
                 heartbeat: bool, now: float) -> list[Item]:
    """Statuses due: changed devices (those the agent judges), and everyone on a heartbeat."""
    items = []
    for device in devices:
        state, error = device_state(device, now)
        if state is None:
            continue
        health, driver = device.health, device.driver
        changed = (state, error) != health.reported and not driver.reports_state
        if not (heartbeat or changed):
            continue
        if changed and health.reported is not None and state != health.reported[0]:
            log.info("%s: %s%s", device.id, state.value, f" ({error})" if error else "")
        health.reported = (state, error)
        summary = clock.summary(device.id)
        offset = clock.get(device.id).offset_s if driver.has_clock else None
        text = "; ".join(t for t in (error, summary) if t) or None
        items.append(status_item(outbox, site_id, device.id, driver.kind, state, text, offset))
    return items


PLANNED_STOP = "planned stop"
"""The reason a planned stop reports when none is given."""


def stopped_statuses(devices: Sequence[Running], outbox: Outbox, site_id: str,
                     reason: str = PLANNED_STOP) -> list[Item]:
    """A `stopped` status for every device, with the reason: the agent is stopping on purpose."""
    return [status_item(outbox, site_id, d.id, d.driver.kind, DeviceState.STOPPED, reason, None)
            for d in devices]
