"""A crashed agent must not pin the event in hand: the consumer's unacked set is weak, and
`wait_empty` (SIGTERM, rebalance) waits for every message still in it (stream/app.py `App`)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from stream.app import app


class Message:
    """Stands in for the ConsumerMessage the agent holds (the consumer tracks it weakly)."""


async def agent(event: Message) -> None:
    held = event  # the agent's frame holds the event while it processes it
    raise RuntimeError(f"crash while holding {held!r}")


def test_agent_crash_releases_the_event_but_keeps_the_traceback() -> None:
    event = Message()
    ref = weakref.ref(event)
    try:
        asyncio.run(agent(event))
    except RuntimeError as exc:
        crash = exc  # what Faust keeps as the crash reason
    del event
    gc.collect()
    assert ref() is not None, "the traceback's frames pin the event (the SIGTERM hang)"
    asyncio.run(app._on_agent_error(None, crash))
    gc.collect()
    assert ref() is None
    assert crash.__traceback__ is not None  # still logged with its lines
