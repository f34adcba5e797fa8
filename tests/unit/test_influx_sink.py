"""The sink's batching, back-pressure, retry and dead-letter behaviour, with a fake transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from stream.sinks.config import SinkConfig
from stream.sinks.influx import InfluxSink
from stream.sinks.line_protocol import Point
from stream.sinks.transport import WriteError


class FakeTransport:
    target = "fake"

    def __init__(self, failures: int = 0, transient: bool = True) -> None:
        self.bodies: list[bytes] = []
        self.failures = failures
        self.transient = transient
        self.calls = 0

    async def prepare(self) -> None:
        pass

    async def write(self, body: bytes) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise WriteError("HTTP 503: down", transient=self.transient)
        self.bodies.append(body)

    async def close(self) -> None:
        pass


def point(i: int) -> Point:
    return Point("m", {"site": "s"}, {"v": float(i)}, i)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_batches_by_size_and_acks_after_write() -> None:
    async def scenario() -> None:
        transport, done = FakeTransport(), []
        sink = InfluxSink(transport, deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=10, flush_ms=50))
        await sink.start()
        for i in range(25):
            await sink.write(point(i), on_done=lambda i=i: done.append(i))
        await sink.flush(5)
        await sink.stop()
        lines = b"\n".join(transport.bodies).split(b"\n")
        assert len(lines) == 25 and done == list(range(25))
        assert all(len(b.split(b"\n")) <= 10 for b in transport.bodies)

    run(scenario())


def test_back_pressure_when_buffer_full() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        class Slow(FakeTransport):
            async def write(self, body: bytes) -> None:
                await gate.wait()
                await super().write(body)

        sink = InfluxSink(Slow(), deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=5, flush_ms=10, max_buffered=10))
        await sink.start()
        for i in range(10):
            await sink.write(point(i))
        blocked = asyncio.create_task(sink.write(point(10)))
        await asyncio.sleep(0.2)
        assert not blocked.done()  # awaits: buffer full and InfluxDB stalled
        gate.set()
        await asyncio.wait_for(blocked, 5)
        await sink.stop()

    run(scenario())


def test_retries_then_succeeds() -> None:
    async def scenario() -> None:
        transport = FakeTransport(failures=3)
        sink = InfluxSink(transport, deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(flush_ms=10, backoff_initial_s=0.01, give_up_s=5))
        await sink.start()
        await sink.write(point(1))
        await sink.flush(5)
        await sink.stop()
        assert transport.calls == 4 and sink.stats.retries == 3 and sink.stats.points == 1

    run(scenario())


def test_gives_up_to_deadletter_with_reason_and_acks() -> None:
    async def scenario() -> None:
        records: list[bytes] = []

        async def deadletter(record: bytes) -> None:
            records.append(record)

        done: list[int] = []
        sink = InfluxSink(FakeTransport(failures=10**6), deadletter,
                          config=SinkConfig(flush_ms=10, backoff_initial_s=0.02, backoff_max_s=0.05,
                                            give_up_s=0.3, deadletter_chunk_bytes=40))
        await sink.start()
        for i in range(5):
            await sink.write(point(i), on_done=lambda i=i: done.append(i))
        await sink.flush(5)
        await sink.stop()
        assert done == list(range(5)) and sink.stats.deadlettered == 5
        decoded = [json.loads(r) for r in records]
        assert len(decoded) > 1  # split under the chunk limit
        assert sum(d["points"] for d in decoded) == 5
        assert all("HTTP 503" in d["reason"] and d["topic"] == "fake" for d in decoded)
        assert "\n".join(d["payload"] for d in decoded).count("m,site=s") == 5

    run(scenario())


def test_invalid_batch_is_deadlettered_without_retry() -> None:
    async def scenario() -> None:
        records: list[bytes] = []

        async def deadletter(record: bytes) -> None:
            records.append(record)

        transport = FakeTransport(failures=1, transient=False)
        sink = InfluxSink(transport, deadletter, config=SinkConfig(flush_ms=10))
        await sink.start()
        await sink.write(point(1))
        await sink.flush(5)
        await sink.stop()
        assert transport.calls == 1 and len(records) == 1

    run(scenario())


def test_failed_deadletter_leaves_points_unacked() -> None:
    async def scenario() -> None:
        async def deadletter(record: bytes) -> None:
            raise ConnectionError("kafka down too")

        done: list[int] = []
        sink = InfluxSink(FakeTransport(failures=1, transient=False), deadletter,
                          config=SinkConfig(flush_ms=10))
        await sink.start()
        await sink.write(point(1), on_done=lambda: done.append(1))
        await sink.flush(5)
        await sink.stop()
        assert done == []

    run(scenario())


def test_flush_waits_for_earlier_points_not_for_later_writers() -> None:
    """A caller's flush on a sink others share (stream/sinks/shared.py): its points are stored and
    acked when it returns, though another caller never stops writing."""
    class Busy(FakeTransport):  # each write takes a while: the other writer's points always wait
        async def write(self, body: bytes) -> None:
            await asyncio.sleep(0.02)
            await super().write(body)

    async def scenario() -> None:
        done: list[int] = []
        sink = InfluxSink(Busy(), deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=50, flush_ms=20))
        await sink.start()
        stop = asyncio.Event()

        async def other_writer() -> None:
            i = 1000
            while not stop.is_set():
                await sink.write(point(i))
                i += 1
                await asyncio.sleep(0.001)

        other = asyncio.create_task(other_writer())
        for i in range(30):
            await sink.write(point(i), on_done=lambda i=i: done.append(i))
        await sink.flush(2)  # waited for an empty buffer before, which the other writer never left
        assert done == list(range(30))
        stop.set()
        await other
        await sink.stop()

    run(scenario())


def test_a_lone_point_is_written_at_once_and_writes_are_spaced_by_flush_ms() -> None:
    """An idle sink writes a new point without waiting for a timer (the old fixed 200 ms period
    was half of the pipeline's median latency, issue 14); points that come while a write is
    recent wait for `flush_ms` after it and then go together in one request."""
    async def scenario() -> None:
        transport, loop = FakeTransport(), asyncio.get_running_loop()
        started: list[float] = []
        real_write = transport.write

        async def timed(body: bytes) -> None:
            started.append(loop.time())
            await real_write(body)

        transport.write = timed  # type: ignore[method-assign]
        sink = InfluxSink(transport, deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=100, flush_ms=300))
        await sink.start()
        t0 = loop.time()
        done: list[int] = []
        await sink.write(point(0), on_done=lambda: done.append(0))
        while not done:
            await asyncio.sleep(0.005)
        assert loop.time() - t0 < 0.1  # not after flush_ms: the sink was idle
        for i in range(1, 6):  # a trickle right after that write
            await sink.write(point(i), on_done=lambda i=i: done.append(i))
            await asyncio.sleep(0.02)
        while len(done) < 6:
            await asyncio.sleep(0.005)
        await sink.stop()
        assert done == list(range(6))
        assert len(transport.bodies) == 2  # the trickle waited and went in one request
        assert started[1] - started[0] >= 0.3 - 0.01

    run(scenario())


def test_a_full_batch_does_not_wait_for_flush_ms() -> None:
    async def scenario() -> None:
        transport = FakeTransport()
        sink = InfluxSink(transport, deadletter=lambda r: asyncio.sleep(0),
                          config=SinkConfig(batch_size=10, flush_ms=10_000))
        await sink.start()
        done: list[int] = []
        for i in range(31):
            await sink.write(point(i), on_done=lambda i=i: done.append(i))
        await asyncio.wait_for(_until(lambda: len(done) >= 30), 2)  # three full batches, no 10 s waits
        await sink.stop()
        assert done == list(range(31))

    run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)
