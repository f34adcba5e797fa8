"""The de-duplication mark of stream/dedup.py, as a field that any analysis's state can embed.

Why: each analysis keeps ONE table value per key holding both this mark and its own state
(see the stream/dedup.py docstring), so the mark has to travel inside that value. The gap
logic itself is dedup.py's; this only gives it a JSON-able shape and a one-call `accept`.
"""

from __future__ import annotations

from typing import Any

from contract.msgid import MsgKey
from stream.dedup import DeviceState, is_duplicate


class _Mark(DeviceState):
    def advance(self, key: MsgKey) -> None:
        self._advance(key)


def accept(mark: dict[str, Any], key: MsgKey) -> bool:
    """Record `key` in `mark` (mutated in place); False (and no change) when it is a duplicate."""
    base = DeviceState.from_json(mark)
    state = _Mark(last=base.last, gaps=base.gaps)
    if is_duplicate(state.last, key, state.gaps):
        return False
    state.advance(key)
    data = state.to_json()
    mark.clear()
    mark.update(last=data["last"], gaps=data["gaps"])
    return True
