"""Device clock checks: each event's `ts` (device time) against the agent's clock.

Reference clock: the agent's host clock, which production keeps NTP-synced (chrony). We would
rather measure against the broker, but MQTT carries no broker time: Mosquitto's `$SYS` tree has
`broker/uptime` (seconds since start, no epoch) and nothing absolute, and a PUBACK has no
timestamp. So the agent does not claim an offset to the broker (its own device_status sends
`clock_offset_s: null`); downstream can compare `ts` with Kafka's append time if it needs to.

Per device we keep the last offset (device ts - host clock) and count events outside the
bound: more than `max_skew_s` from the host clock, or before `not_before` (an unset clock:
boxes without an RTC battery boot in 1970; if the host itself is unset, every event trips
this). A weighing is flagged `clock_skew` by the caller; for other events we log once per
episode (entering and leaving skew) and report the count and the offset in device_status.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("edge.clock")


@dataclass
class DeviceClock:
    offset_s: float | None = None
    skewed: int = 0
    in_skew: bool = False


class ClockGuard:
    """Thread-safe: weighbridge threads and the event loop both check events."""

    def __init__(self, max_skew_s: float, not_before: datetime) -> None:
        self.max_skew_s = max_skew_s
        self.not_before = not_before
        self._devices: dict[str, DeviceClock] = {}
        self._lock = threading.Lock()

    def check(self, device_id: str, ts: datetime, now: datetime | None = None) -> bool:
        """Record `ts` for `device_id`; True when it is outside the bound."""
        now = now or datetime.now(UTC)
        offset = (ts - now).total_seconds()
        bad = abs(offset) > self.max_skew_s or ts < self.not_before
        with self._lock:
            clock = self._devices.setdefault(device_id, DeviceClock())
            clock.offset_s = round(offset, 3)
            if bad:
                clock.skewed += 1
            entering, leaving = bad and not clock.in_skew, clock.in_skew and not bad
            clock.in_skew = bad
        if entering:
            log.warning("%s: device time %s is %+.1f s from the agent clock (bound %.0f s, not before %s)",
                        device_id, ts.isoformat(), offset, self.max_skew_s, self.not_before.date())
        elif leaving:
            log.info("%s: device time back within bounds (offset %+.1f s)", device_id, offset)
        return bad

    def get(self, device_id: str) -> DeviceClock:
        with self._lock:
            c = self._devices.get(device_id, DeviceClock())
            return DeviceClock(c.offset_s, c.skewed, c.in_skew)

    def summary(self, device_id: str) -> str | None:
        """A line for device_status.last_error once any event was out of bounds, else None."""
        c = self.get(device_id)
        if not c.skewed:
            return None
        return (f"clock: {c.skewed} event(s) with device time beyond ±{self.max_skew_s:.0f} s"
                f" (last offset {c.offset_s:+.1f} s)")
