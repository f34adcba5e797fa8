"""Copy lifecycle events from the store to InfluxDB, marking each exported once it is written.

The store's `events.exported` flag makes this restartable: events not yet in InfluxDB when
the service stops are written at the next start (points are idempotent, so a repeat is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from stream.alerting.points import alert_point
from stream.alerting.store import AlertStore
from stream.sinks.influx import InfluxSink
from wastestream.foundation.eventloop import wait_event

log = logging.getLogger(__name__)


class InfluxExporter:
    def __init__(self, store: AlertStore, sink: InfluxSink, interval_s: float = 1.0) -> None:
        self.store, self.sink, self.interval_s = store, sink, interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        """Checked by the loop: Python 3.11's wait_for can swallow a cancel that races a wake-up."""

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.sink.start()
        self._task = asyncio.create_task(self._run(), name="alert-influx-export")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.export_once()
        await self.sink.stop(timeout=10.0)

    async def export_once(self) -> int:
        events = self.store.unexported_events()
        done: list[int] = []
        for event in events:
            await self.sink.write(alert_point(event), on_done=functools.partial(done.append, event["id"]))
        if events:
            await self.sink.flush(timeout=120.0)
            self.store.mark_exported(done)
        return len(done)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.export_once()
            except Exception:
                log.exception("alert export to InfluxDB failed; retrying")
            await wait_event(self._wake, self.interval_s)
            self._wake.clear()
