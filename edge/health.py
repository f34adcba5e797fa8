"""What the agent knows about each device's health, and the log handler that feeds it errors."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Container

from contract.events import DeviceState


@dataclasses.dataclass
class Health:
    """One device, for its device_status: the supervisor's view, signs of life, the driver's report."""

    started: float
    stale_after: float
    state: DeviceState | None = None
    last_error: str | None = None
    last_ok: float | None = None
    restarts: int = 0
    reported: tuple[DeviceState, str | None] | None = None
    driver_state: DeviceState | None = None
    """What a driver that reports its own state said last (`DeviceContext.report`)."""
    driver_error: str | None = None

    def ok(self) -> None:
        self.last_ok = time.monotonic()

    def current(self, now: float) -> DeviceState | None:
        """ONLINE while the driver shows life; None until it had a fair chance to."""
        if self.state == DeviceState.OFFLINE and (self.last_ok is None or self.last_ok < self.started):
            return DeviceState.OFFLINE  # the driver raised and has not delivered since its restart
        if self.last_ok is not None and now - self.last_ok <= self.stale_after:
            return DeviceState.ONLINE
        if now - self.started < self.stale_after:
            return None
        return DeviceState.OFFLINE


class ErrorCapture(logging.Handler):
    """Keeps the last warning a driver logged for a device (drivers log `"<id>: ..."`, args[0] = id)."""

    def __init__(self, devices: Container[str], note_error: Callable[[str, str], None]) -> None:
        super().__init__(logging.WARNING)
        self.devices, self.note_error = devices, note_error

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[0], str) and args[0] in self.devices:
            with contextlib.suppress(Exception):
                self.note_error(args[0], record.getMessage())
