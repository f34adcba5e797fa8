"""De-duplication by (epoch, seq) per device, and the device state that carries the totals."""

from __future__ import annotations

import json

from contract.msgid import MsgKey
from stream.dedup import EPOCHS_KEPT, KEEP_DAYS, NS_PER_DAY, WINDOW, SeqMark, WeighbridgeState, is_duplicate

DAY = 1_772_323_200 * 1_000_000_000


def key(seq: int, epoch: int = 1) -> MsgKey:
    return MsgKey("wb-1", epoch, seq)


def test_is_duplicate_orders_by_seq_within_one_epoch_only() -> None:
    assert not is_duplicate(None, key(1))
    assert is_duplicate((1, 5), key(5))
    assert is_duplicate((1, 5), key(3))
    assert not is_duplicate((1, 5), key(6))
    assert not is_duplicate((1, 5), key(1, epoch=2))  # outbox rebuilt: new epoch restarts seq
    assert not is_duplicate((2, 1), key(99, epoch=1))  # epochs are not ordered against each other


def test_accept_adds_once_and_drops_replays() -> None:
    s = WeighbridgeState()
    dk = f"site-a|kitchen|{DAY}"
    assert s.accept(key(1), dk, 100.0)
    assert s.accept(key(2), dk, 50.0)
    assert not s.accept(key(2), dk, 50.0)
    assert not s.accept(key(1), dk, 100.0)
    assert s.total(dk) == (150.0, 2)


def test_state_round_trips_through_json() -> None:
    s = WeighbridgeState()
    s.accept(key(7), f"a|kitchen|{DAY}", 12.5)
    again = WeighbridgeState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s
    assert not again.accept(key(7), f"a|kitchen|{DAY}", 12.5)
    assert WeighbridgeState.from_json(None) == WeighbridgeState()


def test_old_days_are_pruned_and_too_late_tickets_do_not_reset_totals() -> None:
    s = WeighbridgeState()
    old = f"a|kitchen|{DAY}"
    s.accept(key(1), old, 10.0)
    new = f"a|kitchen|{DAY + KEEP_DAYS * NS_PER_DAY}"
    s.accept(key(2), new, 5.0)
    assert old not in s.days and s.total(new) == (5.0, 1)
    assert s.accept(key(3), old, 1.0)  # new message, but its day is out of the window
    assert old not in s.days


def test_late_message_that_fills_a_gap_is_new_once() -> None:
    s = WeighbridgeState()
    dk = f"a|kitchen|{DAY}"
    for seq in (1, 2, 5, 6):  # 3 and 4 held up in a crashed bridge's session
        assert s.accept(key(seq), dk, 1.0)
    assert s.gaps == {(1, 3), (1, 4)}
    assert s.accept(key(4), dk, 1.0)
    assert not s.accept(key(4), dk, 1.0)
    assert not s.accept(key(6), dk, 1.0)
    assert s.accept(key(3), dk, 1.0)
    assert s.gaps == set() and s.total(dk) == (6.0, 6)


def test_first_message_near_start_leaves_gaps_for_reordered_predecessors() -> None:
    s = WeighbridgeState()
    dk = f"a|kitchen|{DAY}"
    assert s.accept(key(3), dk, 1.0)
    assert s.accept(key(1), dk, 1.0) and s.accept(key(2), dk, 1.0)
    assert not s.accept(key(2), dk, 1.0)
    late_start = WeighbridgeState()
    assert late_start.accept(key(5000), dk, 1.0)
    assert late_start.gaps == set()  # history before the stream started is not tracked


def test_gaps_are_bounded_by_the_window_and_survive_json() -> None:
    s = WeighbridgeState()
    dk = f"a|kitchen|{DAY}"
    s.accept(key(1), dk, 1.0)
    s.accept(key(10), dk, 1.0)
    s.accept(key(10 + WINDOW + 5), dk, 1.0)
    assert all(seq >= 5 + 10 for _, seq in s.gaps) and len(s.gaps) <= WINDOW
    again = WeighbridgeState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s
    new_epoch = WeighbridgeState.from_json(s.to_json())
    assert new_epoch.accept(key(1, epoch=2), dk, 1.0)
    assert new_epoch.accept(key(12, epoch=1), dk, 1.0) is False  # aged out of the window


def test_gaps_survive_the_compact_changelog_encoding() -> None:
    """Interleaved event types leave every other seq as a gap; the JSON form must round-trip them."""
    s = WeighbridgeState()
    for seq in range(1, 400, 2):
        assert s.record(key(seq))
    data = s.to_json()
    assert "gapmask" in data and len(data["gapmask"]) <= WINDOW // 4
    assert s.record(key(5, epoch=0))  # another epoch (a replaced box): its own mark, gaps 1..4
    data = s.to_json()
    assert all(len(e[2]) <= WINDOW // 4 for e in data["epochs"]) and "gaps" not in data
    back = WeighbridgeState.from_json(data)
    assert back.last == s.last == (0, 5) and back.gaps == s.gaps and back.epochs == {1: 399}
    assert not back.seen(key(200)) and back.seen(key(201)) and not back.seen(key(3, epoch=0))


def test_a_replaced_box_with_a_lower_epoch_is_not_silenced() -> None:
    """Finding 4: the new outbox's clock was wrong (epoch below the old one's). Today every one
    of its tickets was a duplicate of the old epoch, forever."""
    s = WeighbridgeState()
    dk = f"a|kitchen|{DAY}"
    for seq in range(1, 6):
        assert s.accept(key(seq, epoch=1_772_323_200), dk, 10.0)
    for seq in range(1, 4):  # the replacement box: an epoch a year lower
        assert s.accept(key(seq, epoch=1_740_000_000), dk, 1.0)
    assert s.total(dk) == (53.0, 8)
    for seq in range(1, 4):  # redeliveries of both boxes are still duplicates
        assert not s.accept(key(seq, epoch=1_740_000_000), dk, 1.0)
        assert not s.accept(key(seq, epoch=1_772_323_200), dk, 1.0)
    assert s.accept(key(6, epoch=1_772_323_200), dk, 10.0)  # the old box's outbox still drains
    again = WeighbridgeState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s and not again.accept(key(2, epoch=1_740_000_000), dk, 1.0)


def test_a_forged_future_epoch_does_not_silence_the_genuine_one() -> None:
    """Finding 4: one `wb1:99999999999:1` made every later genuine ticket a duplicate."""
    s = WeighbridgeState()
    dk = f"a|kitchen|{DAY}"
    assert s.accept(key(1, epoch=1_772_323_200), dk, 1.0)
    assert s.accept(key(1, epoch=9_999_999_999), dk, 1.0)
    assert all(s.accept(key(seq, epoch=1_772_323_200), dk, 1.0) for seq in range(2, 50))
    assert s.total(dk) == (50.0, 50)


def test_epochs_remembered_are_bounded_least_recently_advanced_forgotten_first() -> None:
    """Many epochs (forged within the bridge's tolerance) cannot evict the one still in use."""
    s = SeqMark()
    for n, epoch in enumerate(range(1, EPOCHS_KEPT * 2), start=1):
        assert s.record(key(2, epoch=epoch))  # seq 1 of each epoch is a gap
        assert s.record(key(n, epoch=100))  # the genuine box keeps sending
    assert len(s.epochs) == EPOCHS_KEPT - 1 and s.last == (100, EPOCHS_KEPT * 2 - 1)
    assert 1 not in s.epochs and EPOCHS_KEPT * 2 - 1 in s.epochs  # the oldest forgotten, gaps too
    assert {e for e, _ in s.gaps} <= set(s.epochs)
    assert s.seen(key(3, epoch=100)) and not s.seen(key(1, epoch=1))  # forgotten: new again
    assert len(json.dumps(s.mark_to_json())) < 40 * EPOCHS_KEPT


def test_a_changelog_value_of_the_older_format_still_reads() -> None:
    """Values written before epochs were kept: `last`, the current epoch's `gapmask`, other
    epochs' gaps as pairs."""
    old = {"last": [5, 10], "gapmask": format(0b101, "x"), "gaps": [[4, 7]], "days": {}}
    s = WeighbridgeState.from_json(old)
    assert s.last == (5, 10) and s.gaps == {(5, 9), (5, 7), (4, 7)} and s.epochs == {4: 8}
    assert s.seen(key(10, epoch=5)) and not s.seen(key(9, epoch=5)) and not s.seen(key(7, epoch=4))
    assert s.seen(key(8, epoch=4)) and not s.seen(key(1, epoch=3))
    assert WeighbridgeState.from_json(s.to_json()) == s
