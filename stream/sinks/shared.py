"""One InfluxDB sink per process (per event loop and database), shared by every agent in it.

Why (issue 14): each agent used to own a sink, so a worker sent one HTTP write per agent every
`flush_ms`. InfluxDB spends about half a millisecond of CPU on a write request whatever its size
(HTTP, WAL append and fsync, shard mapping; measured on InfluxDB 1.6 here: ~0.5-0.7 ms per
request, ~17-20 us per point), so at low and medium rates the requests, not the points, were
most of its cost. One sink per worker process sends all its agents' points of a flush in one
request.

Nothing of the sink's guarantees changes (stream/sinks/influx.py): each caller passes its own
`on_done`, which runs only once that point's batch is stored (or dead-lettered); back-pressure
is shared (all agents wait when InfluxDB does, as they would each on its own sink). A caller
that stops flushes what it wrote (`InfluxSink.flush` waits for the points buffered before it,
not for the others' later ones); the last one stops the sink.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from stream.sinks.config import SinkConfig
from stream.sinks.influx import DeadLetter, InfluxSink, make_transport
from wastestream.foundation.settings import Settings


@dataclass
class _Entry:
    sink: InfluxSink
    started: asyncio.Task[None]
    users: int = 0
    key: tuple[object, ...] = field(default=())


_entries: dict[tuple[object, ...], _Entry] = {}


def _key(settings: Settings, deadletter: DeadLetter) -> tuple[object, ...]:
    # Per event loop: a sink's tasks, session and locks belong to the loop that started it.
    return (id(asyncio.get_running_loop()), settings.influx_api, settings.influx_url, settings.influx_org,
            settings.influx_db, settings.influx_token, deadletter)


async def acquire(settings: Settings, deadletter: DeadLetter, config: SinkConfig | None = None) -> InfluxSink:
    """The process's sink for these settings, started; pair with `release`. `config` counts only for
    the first caller (the one that creates the sink)."""
    key = _key(settings, deadletter)
    entry = _entries.get(key)
    if entry is None:
        sink = InfluxSink(make_transport(settings), deadletter,
                          config or SinkConfig(flush_ms=settings.influx_flush_ms))
        entry = _entries[key] = _Entry(sink, asyncio.create_task(sink.start(), name="influx-sink-start"),
                                       key=key)
    entry.users += 1
    try:
        await asyncio.shield(entry.started)
    except BaseException:
        await _drop(entry)
        raise
    return entry.sink


async def release(sink: InfluxSink, timeout: float = 30.0) -> None:
    """Flush what was written through `sink` so far (the caller's points with it); the last user
    stops the sink (as `InfluxSink.stop`: unwritten points stay unacked and are replayed)."""
    entry = next((e for e in _entries.values() if e.sink is sink), None)
    if entry is None:
        raise ValueError("release of a sink that shared.acquire did not hand out (or released too often)")
    if entry.users > 1:
        try:
            await sink.flush(timeout)
        except TimeoutError:
            pass  # as InfluxSink.stop: what is unwritten stays unacked and is replayed
        finally:
            await _drop(entry, timeout)
        return
    await _drop(entry, timeout)


async def _drop(entry: _Entry, timeout: float = 30.0) -> None:
    entry.users -= 1
    if entry.users > 0:
        return
    if _entries.get(entry.key) is entry:
        del _entries[entry.key]  # before awaiting: a new acquire meanwhile gets a new sink
    if entry.started.done() and not entry.started.cancelled() and entry.started.exception() is None:
        await entry.sink.stop(timeout=timeout)
    else:
        entry.started.cancel()
        await asyncio.gather(entry.started, return_exceptions=True)
        await entry.sink.transport.close()
