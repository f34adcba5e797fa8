"""The offset commit must never pass a message still in flight (faust-streaming #606)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from stream.faust_fixes import _new_offset


def consumer(committed: int | None, acked: list[int],
             gaps: tuple[tuple[int, int], ...] = ()) -> SimpleNamespace:
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    return SimpleNamespace(_acked={"tp": list(acked)}, _gap={"tp": tree}, _acked_index=defaultdict(set),
                           _committed_offset=defaultdict(lambda: None, tp=committed))


def test_head_in_flight_blocks_the_commit() -> None:
    assert _new_offset(consumer(2585, [2586, 2587, 2588, 2589]), "tp") is None  # upstream returned 2590


def test_contiguous_acks_commit_up_to_the_first_hole() -> None:
    assert _new_offset(consumer(10, [10, 11, 12, 14]), "tp") == 13


def test_known_gaps_count_as_acked() -> None:
    """Compacted or transaction-marker offsets recorded as gaps do not block the commit."""
    assert _new_offset(consumer(10, [12, 13], gaps=((10, 12),)), "tp") == 14
