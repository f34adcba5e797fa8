"""Batched, bounded, retrying InfluxDB sink; v1 `/write` or v2 `/api/v2/write` behind one interface.

- Batched: points are flushed every `flush_ms` or as soon as `batch_size` are buffered
  (one HTTP request per batch: ~200x the throughput of a request per point).
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
  (p50/p99/max, count) is written, so dashboards see it without a separate probe.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import inspect
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from stream.deadletter import deadletter_record
from stream.logutil import RateLimitedLog
from stream.sinks.line_protocol import FieldValue, Point, to_line
from wastestream.foundation.settings import Settings

log = logging.getLogger(__name__)

DeadLetter = Callable[[bytes], Awaitable[Any]]
OnDone = Callable[[], Any]


class WriteError(Exception):
    """A failed write; `transient` ones are retried, the others dead-lettered at once."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class Transport(Protocol):
    target: str
    """Where points go, for logs and dead-letter records (e.g. `influx-v1:http://...:wastestream`)."""

    async def prepare(self) -> None: ...
    async def write(self, body: bytes) -> None: ...
    async def close(self) -> None: ...


def _classify(status: int, text: str) -> WriteError:
    transient = status >= 500 or status in (404, 408, 429)  # 404: database not (yet) there
    return WriteError(f"HTTP {status}: {text.strip()[:300]}", transient=transient)


class V1Transport:
    """InfluxDB 1.x HTTP API: `/write?db=..&precision=ns`; `CREATE DATABASE` on prepare."""

    def __init__(self, url: str, db: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.url, self.db = url.rstrip("/"), db
        self.target = f"influx-v1:{self.url}/{db}"
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def prepare(self) -> None:
        """Create the database (idempotent in InfluxDB); a failure here is retried by the writes."""
        try:
            query = {"q": f'CREATE DATABASE "{self.db}"'}
            async with self._http().post(f"{self.url}/query", params=query) as r:
                if r.status != 200:
                    log.warning("CREATE DATABASE %s: HTTP %d %s", self.db, r.status, await r.text())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("InfluxDB at %s not reachable to create %s: %s", self.url, self.db, exc)

    async def write(self, body: bytes) -> None:
        try:
            async with self._http().post(
                f"{self.url}/write", params={"db": self.db, "precision": "ns"}, data=body
            ) as r:
                if r.status == 204:
                    return
                error = _classify(r.status, await r.text())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise WriteError(f"{type(exc).__name__}: {exc}", transient=True) from None
        if r.status == 404:
            await self.prepare()
        raise error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class V2Transport:
    """InfluxDB 2.x/3.x (and 1.8+) `/api/v2/write` through influxdb-client's async client."""

    def __init__(self, url: str, org: str, bucket: str, token: str, timeout_s: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self.target = f"influx-v2:{url.rstrip('/')}/{org}/{bucket}"
        self._bucket, self._org = bucket, org
        self._client_factory = lambda: InfluxDBClientAsync(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000)
        )
        self._client: Any = None

    async def prepare(self) -> None:
        """Buckets are provisioned by the operator (creating one needs an all-access token)."""

    async def write(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException

        if self._client is None:
            self._client = self._client_factory()
        try:
            await self._client.write_api().write(
                bucket=self._bucket, org=self._org, record=body, write_precision="ns"
            )
        except ApiException as exc:
            raise _classify(int(exc.status or 0), str(exc.body or exc.reason)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise WriteError(f"{type(exc).__name__}: {exc}", transient=True) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def make_transport(settings: Settings) -> Transport:
    if settings.influx_api == "v2":
        s = settings
        return V2Transport(s.influx_url, s.influx_org, s.influx_db, s.influx_token)
    if settings.influx_api != "v1":
        raise ValueError(f"influx_api must be v1 or v2, not {settings.influx_api!r}")
    return V1Transport(settings.influx_url, settings.influx_db, settings.influx_token)


@dataclass(frozen=True)
class SinkConfig:
    batch_size: int = 5000
    flush_ms: int = 200
    max_buffered: int = 50_000
    give_up_s: float = 60.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    deadletter_chunk_bytes: int = 512 * 1024
    """Kafka's default message limit is 1 MB; a big failed batch is split into records below it."""
    latency_interval_s: float = 5.0
    """How often a `pipeline_latency` point is written per measurement; 0 turns the measurement off."""
    latency_sample_every: int = 4
    """Record the age of one stored point in this many: cheap, yet enough samples for a p99."""
    latency_max_samples: int = 20_000
    """Per measurement and interval; further samples in that interval are skipped (bounded memory)."""


LATENCY_MEASUREMENT = "pipeline_latency"

LATENCY_BUCKETS_MS = (10, 20, 50, 100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000, 3000, 5000,
                      7000, 10000, 20000, 30000, 60000)
"""Upper bounds of the cumulative histogram fields `le_<ms>` of each `pipeline_latency` point.

Why: a window's p99 cannot be combined with another's, so a reader could only take the worst
window (an upper bound). Cumulative counts add up across windows and workers: the quantiles of
a whole run follow to within a bucket, and the share within a bound (`le_1000` / `count`: is
p99 under 1 s?) exactly."""


def percentile(sorted_values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[min(len(sorted_values), max(rank, 1)) - 1])


class LatencyRecorder:
    """Ages of stored points (ns), sampled, per measurement; summarised into points every interval.

    Works on the encoded lines (measurement = text before the first `,` or space, timestamp =
    after the last space), so the hot path of `write()` gains nothing; the cost is one slice
    and one `int()` per sampled line when a batch is acknowledged.
    """

    def __init__(self, config: SinkConfig, host: str | None = None, worker: str | None = None) -> None:
        self.every = max(1, config.latency_sample_every)
        self.max_samples = config.latency_max_samples
        self.host = host or socket.gethostname()
        self.worker = worker or str(os.getpid())
        self._samples: dict[str, list[int]] = {}

    def record(self, lines: list[str], now_ns: int) -> None:
        for line in lines[:: self.every]:
            end = line.find(" ")
            comma = line.find(",", 0, end)
            measurement = line[: comma if comma > 0 else end]
            samples = self._samples.get(measurement)
            if samples is None:
                if measurement == LATENCY_MEASUREMENT:
                    continue
                samples = self._samples[measurement] = []
            if len(samples) < self.max_samples:
                try:
                    samples.append(now_ns - int(line[line.rfind(" ") + 1:]))
                except ValueError:
                    continue

    def take_points(self, now_ns: int) -> list[Point]:
        """One `pipeline_latency` point per measurement seen since the last call; resets."""
        points = []
        for measurement, samples in self._samples.items():
            if not samples:
                continue
            samples.sort()
            fields: dict[str, FieldValue] = {
                "p50_ms": percentile(samples, 50) / 1e6, "p99_ms": percentile(samples, 99) / 1e6,
                "max_ms": samples[-1] / 1e6, "count": len(samples) * self.every}
            for bound in LATENCY_BUCKETS_MS:
                fields[f"le_{bound}"] = bisect.bisect_right(samples, bound * 1_000_000) * self.every
            points.append(Point(
                LATENCY_MEASUREMENT,
                {"measurement": measurement, "host": self.host, "worker": self.worker},
                fields,
                now_ns,
            ))
        self._samples = {}
        return points


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
        self._idle = asyncio.Event()
        self._idle.set()
        self._unfinished = 0
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
        self._unfinished += 1
        self._idle.clear()
        if len(self._buf) >= self.config.batch_size:
            self._wake.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every buffered point is stored or dead-lettered."""
        self._wake.set()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float = 30.0) -> None:
        try:
            if self._task is not None and not self._task.done():
                await self.flush(timeout)
        except TimeoutError:
            log.error("InfluxDB sink stopped with %d points unwritten (unacked: replayed)", self._unfinished)
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            await self.transport.close()

    async def _run(self) -> None:
        flush_s = self.config.flush_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), flush_s)
            self._wake.clear()
            while self._buf:
                n = min(len(self._buf), self.config.batch_size)
                batch = [self._buf.popleft() for _ in range(n)]
                await self._deliver(batch)
                await self._write_latency()  # also inside: under load the buffer never empties
            await self._write_latency()

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
        self._unfinished -= len(batch)
        if self._unfinished == 0:
            self._idle.set()

    async def _write_with_retry(self, lines: list[str]) -> bool:
        """True once the batch is in InfluxDB or in the dead-letter topic."""
        body = "\n".join(lines).encode("utf-8")
        started = time.monotonic()
        delay = self.config.backoff_initial_s
        while True:
            try:
                await self.transport.write(body)
                if self.latency is not None:
                    self.latency.record(lines, time.time_ns())
                self.stats.points += len(lines)
                self.stats.batches += 1
                return True
            except WriteError as exc:
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
