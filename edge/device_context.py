"""The agent's side of the driver seam: one `AgentContext` per device (edge.devices.base.DeviceContext).

Every event goes into the outbox before it is published, with its real msg_id, on
`ws/v1/{site}/{kind}/{device}/{event}`; driver state passed along (a station's cursor) is
committed in the same transaction. A driver's own state report becomes a device_status at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from contract import DeviceStatus, encode, mqtt_topic
from contract.events import DeviceState, Envelope
from contract.text import printable
from edge.clock import ClockGuard
from edge.devices.base import Numbered, Vehicle
from edge.health import Health
from edge.outbox import Build, Outbox

log = logging.getLogger("edge.agent")


class AgentContext:
    """What one device's driver may do: store events, show life, report its state, read its state."""

    def __init__(self, *, site_id: str, device_id: str, kind: str, outbox: Outbox, clock: ClockGuard,
                 health: Health, vehicles: Mapping[str, Vehicle], stored: Counter[tuple[str, str]],
                 stop: asyncio.Event, halt: threading.Event) -> None:
        self.site_id, self.device_id, self.kind = site_id, device_id, kind
        self.outbox, self.clock, self.health, self.vehicles = outbox, clock, health, vehicles
        self.stored, self.stop, self.halt = stored, stop, halt
        self.epoch = outbox.epoch

    def topic(self, event: str) -> str:
        return mqtt_topic(self.site_id, self.kind, self.device_id, event)

    def store(self, events: Sequence[Envelope | Numbered], state: Mapping[str, str] | None = None) -> list[
            str | None]:
        items: list[tuple[str, str, Build]] = []
        for event in events:
            if isinstance(event, Numbered):
                items.append((self.device_id, self.topic(event.type.event), _numbered(event)))
                continue
            if self.clock.check(self.device_id, event.ts):
                log.debug("%s: %s with skewed device time %s", self.device_id, event.event, event.ts)
            items.append((self.device_id, self.topic(event.event), _builder(event)))
        entries = self.outbox.put_batch(items, state)
        self.health.ok()
        self.stored.update(
            (self.device_id, e.type.event if isinstance(e, Numbered) else e.event) for e in events)
        return [None if entry is None else entry.msg_id for entry in entries]

    async def emit(self, event: Envelope) -> None:
        await asyncio.to_thread(self.store, [event])

    def alive(self) -> None:
        self.health.ok()

    def report(self, state: DeviceState, error: str | None) -> None:
        health = self.health
        if (state, error) == (health.driver_state, health.driver_error):
            return
        health.driver_state, health.driver_error = state, error
        device, site, outbox = self.device_id, self.site_id, self.outbox

        def build(msg_id: str, seq: int) -> bytes:
            return encode(DeviceStatus(
                msg_id=msg_id, device_id=device, site_id=site, ts=datetime.now(UTC), state=state,
                outbox_depth=outbox.depth(),
                last_error=None if error is None else printable(error)))  # the contract refuses a newline

        outbox.put(device, self.topic("device_status"), build)

    def get_state(self, key: str) -> str | None:
        return self.outbox.get_state(key)


def _builder(event: Envelope) -> Build:
    def build(msg_id: str, seq: int) -> bytes:
        return encode(msgspec.structs.replace(event, msg_id=msg_id))

    return build


def _numbered(event: Numbered) -> Build:
    def build(msg_id: str, seq: int) -> bytes:
        return encode(event.build(msg_id, seq))

    return build
