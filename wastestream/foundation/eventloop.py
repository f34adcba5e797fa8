"""The event loop of the long-running processes (Faust workers, bridges): uvloop unless told not to.

Why: a worker spends much of its time in asyncio's own machinery (tasks, futures, call_soon,
the selector) for every Kafka record; uvloop does the same work in C. `WS_EVENT_LOOP=asyncio`
keeps the standard loop (to compare, or where uvloop does not build).
"""

from __future__ import annotations

import asyncio
import logging

from wastestream.foundation.settings import load_settings

log = logging.getLogger(__name__)


def install() -> str:
    """Make uvloop the loop of every `asyncio.run` / new loop in this process; which loop is used."""
    if load_settings().event_loop == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; using asyncio's own loop")
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 that swallows a cancellation
    arriving as the inner wait completes (cpython gh-86296), so a `while True:` loop around it can
    outlive its own `cancel()`: an InfluxDB sink task stayed "cancelling" and held a worker's
    SIGTERM stop past 30 s (test_stream_tonnage, twice in one fresh-clone run under load).
    `asyncio.timeout` counts cancellations, so a cancel always reaches the caller."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
