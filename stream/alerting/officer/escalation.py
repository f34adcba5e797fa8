"""Deadlines and escalation: a critical alert nobody acknowledges in time goes to the supervisors.

Every `escalation_check_s` the store is asked for open alerts whose severity's acknowledgement
deadline (`officer.ack_deadline_s`, counted from when the service received the alert) has
passed; each is marked escalated once (an `escalate` event by `system`, shown in its history
and on the supervisor page) and queued for the channels configured with `when: escalate`
(the supervisors' group), which the pusher delivers like any push, titled as an escalation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from stream.alerting.config import AlertsConfig
from stream.alerting.store import AlertStore
from wastestream.foundation.eventloop import wait_event

log = logging.getLogger(__name__)


class Escalator:
    def __init__(self, store: AlertStore, config: AlertsConfig, wake_pusher: Callable[[], None]) -> None:
        self.store, self.config, self.wake_pusher = store, config, wake_pusher
        self.deadlines: dict[str, float] = {str(k): v for k, v in config.officer.ack_deadline_s.items()}
        self.escalated = 0

    def check(self, now_ns: int | None = None) -> list[str]:
        """Escalate what is overdue now; the ids escalated."""
        done = []
        for alert in self.store.overdue(time.time_ns() if now_ns is None else now_ns, self.deadlines):
            channels = self.config.escalation_routes(alert["kind"], alert["severity"])
            if self.store.escalate(alert["alert_id"], channels, self.deadlines[alert["severity"]]):
                log.warning("alert %s (%s) not acknowledged within %.0f s: escalated to %s",
                            alert["alert_id"], alert["severity"], self.deadlines[alert["severity"]],
                            ", ".join(channels) or "the supervisor page (no escalation channel configured)")
                done.append(alert["alert_id"])
        if done:
            self.escalated += len(done)
            self.wake_pusher()
        return done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # a store hiccup must not end escalation for good
                log.exception("escalation check failed")
            await wait_event(stop, self.config.officer.escalation_check_s)
