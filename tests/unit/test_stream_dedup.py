"""De-duplication by (epoch, seq) per device, and the device state that carries the totals."""

from __future__ import annotations

import json

from contract.msgid import MsgKey
from stream.dedup import KEEP_DAYS, NS_PER_DAY, DeviceState, is_duplicate

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
