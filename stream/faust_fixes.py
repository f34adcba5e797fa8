"""A fix to faust-streaming's offset commit, applied when the app is imported.

faust-streaming (0.11–0.15) commits past a single unacked message at the head of a
partition: `Consumer._new_offset` withholds a commit only when `min(acked) - committed > 1`,
so with committed offset N (the next to read), N still in flight and N+1.. acked, it commits
past N. A worker killed then loses N for good (faust-streaming issue #606, open; PR #707).
Our agents ack out of order by design (an event is acked when InfluxDB has its points, and
some wait for a forwarded Kafka record too), so this cost real weighings in the chaos test.

The replacement below is upstream's function with the head check made exact: nothing is
committed while the committed offset itself is neither acked nor a known gap (compacted
or transaction-marker offsets, which Faust records in `_gap` and folds into `acked` first).
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.utils.functional import consecutive_numbers


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
        if candidates:
            known_missing: list[int] = []
            for entry in candidates:
                known_missing.extend(range(entry.begin, entry.end))
            acked.extend(known_missing)
            gap_for_tp.chop(0, max(known_missing[-1], max_offset + 1))
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and min(acked) > committed:
        return None  # the head (offset `committed`) is still in flight: never commit past it
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


def apply() -> None:
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
