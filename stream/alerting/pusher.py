"""Deliver pending pushes: the store's `push_jobs` table is the queue, this drains it.

Why the queue lives in SQLite: a push accepted from Kafka must survive a restart of the
service (its offset is already committed), and a slow or dead channel must never hold up
consumption. The consumer only inserts jobs and wakes this loop; at most `max_in_flight`
sends run at once (the bounded work queue); failures are retried with exponential backoff
up to `attempts`, then the job is marked failed with the last reason. Every attempt is a
`deliveries` row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from stream.alerting import metrics as alert_metrics
from stream.alerting.channels.base import Channel, Delivery
from stream.alerting.config import RetryConfig
from stream.alerting.store import AlertStore, NotFound, PushJob
from wastestream.foundation.eventloop import wait_event

log = logging.getLogger(__name__)


def backoff_s(retry: RetryConfig, attempt: int) -> float:
    """Delay after the `attempt`-th (1-based) failed attempt."""
    return float(min(retry.initial_s * 2 ** (attempt - 1), retry.max_s))


class Pusher:
    def __init__(self, store: AlertStore, channels: dict[str, Channel], retry: RetryConfig,
                 max_in_flight: int = 8, clock: Callable[[], float] = time.time, *,
                 linker: Callable[[str], str] | None = None,
                 escalation_channels: frozenset[str] = frozenset()) -> None:
        """`linker(alert_id)`: the signed link to the alert's page put in each push;
        `escalation_channels`: channels whose pushes are escalations (titled as such)."""
        self.store, self.channels, self.retry = store, channels, retry
        self.linker, self.escalation_channels = linker, escalation_channels
        self.max_in_flight, self._clock = max_in_flight, clock
        self._wake = asyncio.Event()
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        """Checked by the loop: Python 3.11's wait_for can swallow a cancel that races a wake-up."""

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        failed = self.store.orphan_jobs(set(self.channels))
        if failed:
            log.warning("%d pending pushes to channels no longer configured marked failed", failed)
        self._task = asyncio.create_task(self._run(), name="alert-pusher")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let running sends finish briefly; unfinished ones stay pending and resume at next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=grace_s)
        for task in self._in_flight.values():
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.max_in_flight - len(self._in_flight)
            if free > 0:
                for job in self.store.due_jobs(self._clock(), free, set(self._in_flight)):
                    key = (job.alert_id, job.channel)
                    task = asyncio.create_task(self._deliver(job), name=f"push-{job.channel}")
                    self._in_flight[key] = task
                    task.add_done_callback(functools.partial(self._done, key))
            due = self.store.next_due()
            wait = 1.0 if due is None else max(0.0, min(1.0, due - self._clock()))
            if free <= 0:
                wait = 1.0  # a finishing send wakes us
            await wait_event(self._wake, wait if wait > 0 else 0.01)
            self._wake.clear()

    def _done(self, key: tuple[str, str], _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        self._wake.set()

    async def _deliver(self, job: PushJob) -> None:
        channel = self.channels.get(job.channel)
        try:
            alert = self.store.get(job.alert_id)
        except NotFound:
            alert = None
        if channel is None or alert is None:
            result = Delivery(False, None, "channel not configured" if alert else "alert not found", False)
        else:
            if self.linker is not None:
                alert["link"] = self.linker(job.alert_id)
            alert["escalated"] = job.channel in self.escalation_channels
            try:
                result = await channel.send(alert, alert["evidence"])
            except Exception as exc:  # a channel bug must not kill the pusher
                log.exception("channel %s raised", job.channel)
                result = Delivery(False, None, f"{type(exc).__name__}: {exc}"[:500])
        attempt = job.attempts + 1
        alert_metrics.pushed(job.channel, result.ok)
        retry_at = None
        if not result.ok and result.retryable and attempt < self.retry.attempts:
            retry_at = self._clock() + backoff_s(self.retry, attempt)
        self.store.record_delivery(job, ok=result.ok, http_code=result.http_code, error=result.error,
                                   retry_at=retry_at)
        if result.ok:
            log.info("pushed %s to %s (attempt %d)", job.alert_id, job.channel, attempt)
        elif retry_at is None:
            log.error("push of %s to %s failed for good after %d attempts: %s",
                      job.alert_id, job.channel, attempt, result.error)
        else:
            log.warning("push of %s to %s failed (attempt %d: %s); retry in %.1fs",
                        job.alert_id, job.channel, attempt, result.error, retry_at - self._clock())
