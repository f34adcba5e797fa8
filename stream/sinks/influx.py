"""Batched, bounded, retrying InfluxDB sink; v1 `/write` or v2 `/api/v2/write` behind one interface
(stream/sinks/transport.py; the transports are influx_v1.py and influx_v2.py).

- Batched: a write starts as soon as points wait and none is in flight, but at most one
  every `flush_ms` unless `batch_size` points wait (one HTTP request per batch: ~200x the
  throughput of a request per point). Under load each write carries what came during the one
  before; a lone point waits at most `flush_ms`, not a fixed timer's full period (issue 14: the
  old 200 ms timer was half of the median end-to-end latency).
- Bounded: at most `max_buffered` points wait; beyond that `write()` awaits (back-pressure
  reaches the Kafka consumer instead of growing memory).
- Retries with exponential backoff while InfluxDB is down or overloaded; after `give_up_s`
  (or at once for a batch InfluxDB rejects as invalid) the batch goes to the dead-letter
  callback with the reason. Never blocks forever, never drops silently.
- `on_done` callbacks run after a point's batch is stored (or dead-lettered), so the
  caller can commit its Kafka offset only then: a crash re-delivers, never loses.
- Measures its own latency: when InfluxDB acknowledges a batch, the age of a sample of its
  points (now − point timestamp; for event-time points that is device-to-InfluxDB latency)
  is recorded, and every `latency_interval_s` a `pipeline_latency` point per measurement
  (p50/p99/max, count) is written, so dashboards see it without a separate probe
  (stream/sinks/latency.py).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.sinks import metrics as sink_metrics
from stream.sinks.config import SinkConfig
from stream.sinks.influx_v1 import V1Transport
from stream.sinks.influx_v2 import V2Transport
from stream.sinks.latency import LatencyRecorder
from stream.sinks.line_protocol import Point, to_line
from stream.sinks.transport import Transport, WriteError
from wastestream.foundation.eventloop import wait_event
from wastestream.foundation.settings import Settings

log = logging.getLogger(__name__)

DeadLetter = Callable[[bytes], Awaitable[Any]]
OnDone = Callable[[], Any]


def make_transport(settings: Settings) -> Transport:
    """The transport the settings name (WS_INFLUX_API v1 | v2)."""
    if settings.influx_api == "v2":
        s = settings
        return V2Transport(s.influx_url, s.influx_org, s.influx_db, s.influx_token)
    if settings.influx_api != "v1":
        raise ValueError(f"influx_api must be v1 or v2, not {settings.influx_api!r}")
    return V1Transport(settings.influx_url, settings.influx_db, settings.influx_token)


@dataclass
class SinkStats:
    points: int = 0
    batches: int = 0
    retries: int = 0
    deadlettered: int = 0


class InfluxSink:
    """`await sink.write(point, on_done)`; `start()` before, `stop()` (flushes) after."""

    def __init__(
        self, transport: Transport, deadletter: DeadLetter, config: SinkConfig | None = None
    ) -> None:
        self.transport = transport
        self.config = config or SinkConfig()
        self.stats = SinkStats()
        self._deadletter = deadletter
        self._buf: collections.deque[tuple[str, OnDone | None]] = collections.deque()
        self._space = asyncio.Semaphore(self.config.max_buffered)
        self._wake = asyncio.Event()
        """Set when a point is buffered (the writer may be idle)."""
        self._urgent = asyncio.Event()
        """Set when a batch is full or a flush is asked for: do not wait for `flush_ms`."""
        self._accepted = 0
        """Points `write()` has buffered since the start; `_settled` of them are stored or dead-lettered
        (batches go in order, so those are the first `_settled`)."""
        self._settled = 0
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._warn = RateLimitedLog(log, per_interval=5)
        self.latency = LatencyRecorder(self.config) if self.config.latency_interval_s > 0 else None
        self._latency_due = time.monotonic() + self.config.latency_interval_s

    async def start(self) -> None:
        await self.transport.prepare()
        self._task = asyncio.create_task(self._run(), name="influx-sink")

    async def write(self, point: Point, on_done: OnDone | None = None) -> None:
        """Buffer one point; awaits while the buffer is full. ValueError if it cannot be encoded."""
        line = to_line(point)
        await self._space.acquire()
        self._buf.append((line, on_done))
        self._accepted += 1
        self._wake.set()
        if len(self._buf) >= self.config.batch_size:
            self._urgent.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every point buffered before this call is stored or dead-lettered.

        Not until the buffer is empty: on a sink that several callers share (stream/sinks/shared.py),
        the others keep writing, and one caller's flush must not wait for their points."""
        target = self._accepted
        self._urgent.set()
        self._wake.set()

        async def settled() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self._settled >= target)

        await asyncio.wait_for(settled(), timeout)

    async def stop(self, timeout: float = 30.0) -> None:
        try:
            if self._task is not None and not self._task.done():
                await self.flush(timeout)
        except TimeoutError:
            log.error("InfluxDB sink stopped with %d points unwritten (unacked: replayed)",
                      self._accepted - self._settled)
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            await self.transport.close()

    async def _run(self) -> None:
        gap = self.config.flush_ms / 1000
        idle_wait = self.config.latency_interval_s or 5.0  # an idle sink still writes its last latency point
        next_start = 0.0
        while True:
            if not self._buf:
                self._wake.clear()
                await wait_event(self._wake, idle_wait)
                await self._write_latency()
                continue
            delay = next_start - time.monotonic()
            if delay > 0 and len(self._buf) < self.config.batch_size:
                await wait_event(self._urgent, delay)
            self._urgent.clear()
            next_start = time.monotonic() + gap
            n = min(len(self._buf), self.config.batch_size)
            await self._deliver([self._buf.popleft() for _ in range(n)])
            await self._write_latency()  # also here: under load the buffer never empties

    async def _write_latency(self) -> None:
        """When due; best effort: telemetry is never retried or dead-lettered, never holds up data."""
        if self.latency is None or time.monotonic() < self._latency_due:
            return
        self._latency_due = time.monotonic() + self.config.latency_interval_s
        points = self.latency.take_points(time.time_ns())
        if not points:
            return
        try:
            await self.transport.write("\n".join(to_line(p) for p in points).encode("utf-8"))
        except WriteError as exc:
            self._warn.warning("pipeline_latency write failed (%s); dropped", exc)

    async def _deliver(self, batch: list[tuple[str, OnDone | None]]) -> None:
        lines = [line for line, _ in batch]
        stored = await self._write_with_retry(lines)
        if stored:
            for _, on_done in batch:
                if on_done is not None:
                    result = on_done()
                    if inspect.isawaitable(result):
                        await result
        # else: dead-lettering failed too; callbacks not run, so the source is not acked and replays.
        for _ in batch:
            self._space.release()
        async with self._progress:
            self._settled += len(batch)
            self._progress.notify_all()

    async def _write_with_retry(self, lines: list[str]) -> bool:
        """True once the batch is in InfluxDB or in the dead-letter topic."""
        body = "\n".join(lines).encode("utf-8")
        started = time.monotonic()
        delay = self.config.backoff_initial_s
        while True:
            try:
                began = time.monotonic()
                await self.transport.write(body)
                sink_metrics.written(time.monotonic() - began, len(lines))
                if self.latency is not None:
                    self.latency.record(lines, time.time_ns())
                self.stats.points += len(lines)
                self.stats.batches += 1
                return True
            except WriteError as exc:
                sink_metrics.WRITE_FAILURES.inc()
                waited = time.monotonic() - started
                if not exc.transient or waited + delay > self.config.give_up_s:
                    reason = f"InfluxDB write to {self.transport.target} failed after {waited:.1f}s: {exc}"
                    return await self._send_to_deadletter(lines, reason)
                self.stats.retries += 1
                self._warn.warning("InfluxDB write of %d points failed (%s); retry in %.1fs",
                                   len(lines), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)

    async def _send_to_deadletter(self, lines: list[str], reason: str) -> bool:
        log.error("dead-lettering %d points: %s", len(lines), reason)
        try:
            for chunk in _chunks(lines, self.config.deadletter_chunk_bytes):
                record = deadletter_record(reason, self.transport.target, "\n".join(chunk).encode("utf-8"),
                                           points=len(chunk), max_payload_bytes=None)  # whole: to replay
                await self._deadletter(record)
        except Exception:
            log.exception("dead-letter of %d points failed; leaving them unacked for replay", len(lines))
            return False
        self.stats.deadlettered += len(lines)
        sink_metrics.POINTS_DEADLETTERED.inc(len(lines))
        return True


def _chunks(lines: list[str], max_bytes: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        n = len(line.encode("utf-8")) + 1
        if chunks[-1] and size + n > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += n
    return chunks
