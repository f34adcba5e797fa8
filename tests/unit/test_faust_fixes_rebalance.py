"""Rebalance fixes in stream/faust_fixes.py: no hang on a cleared queue, no commit or drop past it.

The end-to-end proof is tests/integration/test_faust_rebalance.py (real Kafka, two workers);
these pin each piece on Faust's own objects.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import pytest
from faust.types import TP
from faust.types.tuples import Message
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent

from stream import faust_fixes


def message(offset: int, copies: int) -> Message:
    m = Message("t", 0, offset, 0.0, 0, None, None, b"v", None)
    m.incref(copies)  # the conductor's one reference per agent reading the topic
    return m


def event(m: Message, consumer: Any) -> SimpleNamespace:
    return SimpleNamespace(message=m, app=SimpleNamespace(consumer=consumer))


def fake_consumer(*tracked: Message) -> SimpleNamespace:
    unacked: WeakSet[Message] = WeakSet(tracked)
    return SimpleNamespace(_unacked_messages=unacked, _waiting_for_ack=None)


def test_release_of_the_last_copy_ends_the_wait_without_an_ack() -> None:
    m = message(7, copies=2)
    c = fake_consumer(m)
    m.refcount -= 1  # the fast agent acked its copy; the slow agent's copy is in a cleared queue
    faust_fixes.release(event(m, c))
    assert m not in c._unacked_messages  # wait_empty no longer waits for it
    assert not m.acked  # ... and it is not committed: the seek after the rebalance reads it again


def test_release_of_one_copy_keeps_waiting_for_the_other() -> None:
    m = message(7, copies=2)
    c = fake_consumer(m)
    faust_fixes.release(event(m, c))
    assert m.refcount == 1 and m in c._unacked_messages


def test_cleared_queue_releases_what_it_held() -> None:
    c = fake_consumer()
    q = faust_fixes.ReleasingQueue(maxsize=10, flow_control=FlowControlEvent(initially_suspended=False))
    held = [message(i, copies=1) for i in range(3)]
    for m in held:
        c._unacked_messages.add(m)
        q.put_nowait(event(m, c))
    q.clear()
    assert q.empty() and [m.refcount for m in held] == [0, 0, 0] and not list(c._unacked_messages)


def test_cancelled_put_releases_its_event() -> None:
    async def scenario() -> Message:
        c = fake_consumer()
        q = faust_fixes.ReleasingQueue(maxsize=1, flow_control=FlowControlEvent(initially_suspended=False))
        q.put_nowait(event(message(1, copies=1), c))
        blocked = message(2, copies=1)
        put = asyncio.ensure_future(q.put(event(blocked, c)))
        await asyncio.sleep(0)  # the put waits: the queue is full
        q.clear()  # a rebalance: cancels the waiting put
        with pytest.raises(asyncio.CancelledError):
            await put
        return blocked

    assert asyncio.run(scenario()).refcount == 0


def commit_consumer(acked: list[int], revoked_head: int) -> SimpleNamespace:
    """A consumer in a revoke: upstream has forgotten the committed offset (None)."""
    return SimpleNamespace(_acked={"tp": list(acked)}, _gap={"tp": IntervalTree()},
                           _acked_index=defaultdict(set), _committed_offset=defaultdict(lambda: None),
                           _ws_revoked_heads={"tp": revoked_head})


def test_commit_during_a_revoke_keeps_the_forgotten_head() -> None:
    """Upstream forgets the committed offset (100) before waiting; 105.. acked must not commit 110."""
    assert faust_fixes._new_offset(commit_consumer([105, 106, 107, 108, 109], 100), "tp") is None
    assert faust_fixes._new_offset(commit_consumer([100, 101, 103], 100), "tp") == 102


def test_next_fetch_after_a_seek_restores_the_seek_read_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records fetched before the seek raised the read offset to 317; the re-fetch from 164 must pass."""
    seeks: list[dict[str, int]] = []

    async def fetch(self: Any, active: Any, timeout: float) -> dict[str, list[int]]:
        if seeks:  # a seek lands while this fetch is in flight
            self._ws_seek_read_offsets = seeks.pop()
        return {"tp": [1]}

    monkeypatch.setattr(faust_fixes, "_upstream_getmany", fetch)
    c = SimpleNamespace(_read_offset=defaultdict(lambda: None, tp=317), _ws_seek_read_offsets={"tp": 164},
                        flow_active=True)
    asyncio.run(faust_fixes._getmany(c, None, 1.0))
    assert c._read_offset["tp"] == 164 and c._ws_seek_read_offsets is None

    seeks.append({"tp": 200})
    c._read_offset["tp"] = 250
    asyncio.run(faust_fixes._getmany(c, None, 1.0))
    assert c._read_offset["tp"] == 250  # this batch may predate the seek: wait for the next fetch
    asyncio.run(faust_fixes._getmany(c, None, 1.0))
    assert c._read_offset["tp"] == 200


def test_a_fetch_back_while_the_flow_is_stopped_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust drops such a batch and re-seeks only committed partitions: changelogs must be seeked back."""
    changelog, revoked = TP("app-table-changelog", 5), TP("topic", 1)
    seeks: list[tuple[TP, int]] = []

    async def fetch(self: Any, active: Any, timeout: float) -> dict[TP, list[Any]]:
        return {changelog: [SimpleNamespace(offset=0), SimpleNamespace(offset=1)],
                revoked: [SimpleNamespace(offset=7)]}

    async def call_thread(fun: Any, *args: Any) -> Any:
        return await fun(*args)

    aiokafka = SimpleNamespace(assignment=lambda: {changelog},
                               seek=lambda tp, offset: seeks.append((tp, offset)))
    thread = SimpleNamespace(_ensure_consumer=lambda: aiokafka, call_thread=call_thread)
    monkeypatch.setattr(faust_fixes, "_upstream_getmany", fetch)
    c = SimpleNamespace(_read_offset=defaultdict(lambda: None), flow_active=False, _thread=thread)
    assert asyncio.run(faust_fixes._getmany(c, None, 1.0)) == {}
    assert seeks == [(changelog, 0)]  # a partition no longer assigned is left alone
    c.flow_active = True
    assert asyncio.run(faust_fixes._getmany(c, None, 1.0))[changelog][1].offset == 1


def test_tune_fetch_makes_the_worker_consumer_start_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tuning 7: the aiokafka consumer Faust makes for a worker first fetches as an idle one."""
    import faust
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer",
                        AIOKafkaConsumerThread._create_worker_consumer)  # restored after the test

    async def made() -> Any:
        faust_fixes.tune_fetch(65_536, 120, 1500)
        app = faust.App("t-tune-fetch", broker="kafka://127.0.0.1:9")  # nothing is contacted
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return consumer

    consumer = asyncio.run(made())
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 1500)


@pytest.mark.parametrize(("brought", "expected"), [(True, (65_536, 120)), (False, (1, 1500))])
def test_a_fetch_sets_the_next_ones_size_and_wait(monkeypatch: pytest.MonkeyPatch, brought: bool,
                                                  expected: tuple[int, int]) -> None:
    """After records: wait for a full fetch (bounded); after none: wait long for the first byte."""
    async def upstream(_self: Any, _assignment: Any, _node: int, _request: Any) -> bool:
        return brought

    monkeypatch.setattr(faust_fixes, "_upstream_proc_fetch_request", upstream)
    fetcher = SimpleNamespace(_ws_fetch_tuning=(65_536, 120, 1500), _fetch_min_bytes=7, _fetch_max_wait_ms=7)
    assert asyncio.run(faust_fixes._proc_fetch_request(fetcher, None, 0, None)) is brought
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == expected
    untuned = SimpleNamespace(_fetch_min_bytes=7, _fetch_max_wait_ms=7)  # another consumer's fetcher
    asyncio.run(faust_fixes._proc_fetch_request(untuned, None, 0, None))
    assert (untuned._fetch_min_bytes, untuned._fetch_max_wait_ms) == (7, 7)
