"""Rate-limited warnings: a flood of bad input must not become a flood of log lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping


class RateLimitedLog:
    """Log at most `per_interval` lines per `interval_s`; then one line saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, per_interval: int = 20, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._per_interval = per_interval
        self._interval_s = interval_s
        self._window_start = time.monotonic()
        self._count = 0
        self._suppressed = 0

    def warning(self, msg: str, *args: object, extra: Mapping[str, object] | None = None) -> None:
        """Like Logger.warning; `extra`: the record's fields (foundation/logs.py: site, device, msg_id)."""
        now = time.monotonic()
        if now - self._window_start >= self._interval_s:
            if self._suppressed:
                self._logger.warning("... %d similar warnings suppressed", self._suppressed)
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self._per_interval:
            self._count += 1
            self._logger.warning(msg, *args, extra=extra)
        else:
            self._suppressed += 1
