"""De-duplication by (epoch, seq) per device, and the device state that carries the totals."""

from __future__ import annotations

import json

from contract.msgid import MsgKey
from stream.dedup import KEEP_DAYS, NS_PER_DAY, WINDOW, DeviceState, is_duplicate

DAY = 1_772_323_200 * 1_000_000_000


def key(seq: int, epoch: int = 1) -> MsgKey:
    return MsgKey("wb-1", epoch, seq)


def test_is_duplicate_orders_by_epoch_then_seq() -> None:
    assert not is_duplicate(None, key(1))
    assert is_duplicate((1, 5), key(5))
    assert is_duplicate((1, 5), key(3))
    assert not is_duplicate((1, 5), key(6))
    assert not is_duplicate((1, 5), key(1, epoch=2))  # outbox rebuilt: new epoch restarts seq
    assert is_duplicate((2, 1), key(99, epoch=1))


def test_accept_adds_once_and_drops_replays() -> None:
    s = DeviceState()
    dk = f"site-a|kitchen|{DAY}"
    assert s.accept(key(1), dk, 100.0)
    assert s.accept(key(2), dk, 50.0)
    assert not s.accept(key(2), dk, 50.0)
    assert not s.accept(key(1), dk, 100.0)
    assert s.total(dk) == (150.0, 2)


def test_state_round_trips_through_json() -> None:
    s = DeviceState()
    s.accept(key(7), f"a|kitchen|{DAY}", 12.5)
    again = DeviceState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s
    assert not again.accept(key(7), f"a|kitchen|{DAY}", 12.5)
    assert DeviceState.from_json(None) == DeviceState()


def test_old_days_are_pruned_and_too_late_tickets_do_not_reset_totals() -> None:
    s = DeviceState()
    old = f"a|kitchen|{DAY}"
    s.accept(key(1), old, 10.0)
    new = f"a|kitchen|{DAY + KEEP_DAYS * NS_PER_DAY}"
    s.accept(key(2), new, 5.0)
    assert old not in s.days and s.total(new) == (5.0, 1)
    assert s.accept(key(3), old, 1.0)  # new message, but its day is out of the window
    assert old not in s.days


def test_late_message_that_fills_a_gap_is_new_once() -> None:
    s = DeviceState()
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
    s = DeviceState()
    dk = f"a|kitchen|{DAY}"
    assert s.accept(key(3), dk, 1.0)
    assert s.accept(key(1), dk, 1.0) and s.accept(key(2), dk, 1.0)
    assert not s.accept(key(2), dk, 1.0)
    late_start = DeviceState()
    assert late_start.accept(key(5000), dk, 1.0)
    assert late_start.gaps == set()  # history before the stream started is not tracked


def test_gaps_are_bounded_by_the_window_and_survive_json() -> None:
    s = DeviceState()
    dk = f"a|kitchen|{DAY}"
    s.accept(key(1), dk, 1.0)
    s.accept(key(10), dk, 1.0)
    s.accept(key(10 + WINDOW + 5), dk, 1.0)
    assert all(seq >= 5 + 10 for _, seq in s.gaps) and len(s.gaps) <= WINDOW
    again = DeviceState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s
    new_epoch = DeviceState.from_json(s.to_json())
    assert new_epoch.accept(key(1, epoch=2), dk, 1.0)
    assert new_epoch.accept(key(12, epoch=1), dk, 1.0) is False  # aged out of the window


def test_gaps_survive_the_compact_changelog_encoding() -> None:
    """Interleaved event types leave every other seq as a gap; the JSON form must round-trip them."""
    s = DeviceState()
    for seq in range(1, 400, 2):
        assert s.record(key(seq))
    s.record(key(5, epoch=0))  # an older epoch's message: kept as a plain pair if it were a gap
    data = s.to_json()
    assert "gapmask" in data and len(data["gapmask"]) <= WINDOW // 4
    back = DeviceState.from_json(data)
    assert back.last == s.last and back.gaps == s.gaps
    assert not back.seen(key(200)) and back.seen(key(201))
