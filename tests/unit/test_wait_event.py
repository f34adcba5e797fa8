"""wait_event: a loop around it always ends on cancel (asyncio.wait_for on 3.11 may swallow it)."""

from __future__ import annotations

import asyncio

import pytest

from wastestream.foundation.eventloop import wait_event


async def _cancelled_as_it_wakes(yields: int) -> bool:
    """A sink-like `while True` loop, cancelled `yields` loop turns after its event is set."""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait_event(event, 10)
            event.clear()

    task = asyncio.create_task(loop())
    for _ in range(3):
        await asyncio.sleep(0)
    event.set()
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=1)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=1)
    return bool(done)


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
def test_a_cancel_as_the_event_is_set_ends_the_loop(yields: int) -> None:
    # With asyncio.wait_for(event.wait(), 10) in its place, yields 0-2 hang (Python 3.11).
    assert asyncio.run(_cancelled_as_it_wakes(yields))


def test_set_and_timeout() -> None:
    async def main() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_soon(event.set)
        return timed_out, await wait_event(event, 5)

    assert asyncio.run(main()) == (False, True)
