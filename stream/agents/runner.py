"""The loop every analysis agent shares: one InfluxDB sink, manual acks, a summary at stop.

A step gets the raw record, the sink and an `ack` callback, and calls `ack` only once the
record's effects are durable (usually as the `on_done` of its last point), so a crash
re-delivers rather than loses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stream.app import send_deadletter, settings
from stream.sinks.influx import InfluxSink, make_transport

Ack = Callable[[], Any]
Step = Callable[[bytes, InfluxSink, Ack], Awaitable[None]]


def acker(stream: Any, event: Any) -> Ack:
    """An ack callback for one event of a `stream.noack()` stream."""
    return lambda: stream.ack(event)


async def run_steps(stream: Any, step: Step, on_stop: Callable[[], None]) -> None:
    """Feed every event of the agent's stream to `step`; flush the sink and report on stop."""
    sink = InfluxSink(make_transport(settings), send_deadletter)
    await sink.start()
    manual = stream.noack()
    try:
        async for event in manual.events():
            await step(event.value, sink, acker(manual, event))
    finally:
        await sink.stop(timeout=10)
        on_stop()
