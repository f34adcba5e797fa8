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
