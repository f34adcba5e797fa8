"""The de-duplication mark of stream/dedup.py as a JSON dict that any analysis's state embeds.

Why: each analysis keeps ONE table value per key holding both this mark and its own state
(see the stream/dedup.py docstring), so the mark travels inside that value. The logic and
the JSON shape are dedup.py's `SeqMark`; this is only the one-call `accept`.
"""

from __future__ import annotations

from typing import Any

from contract.msgid import MsgKey
from stream.dedup import SeqMark


def accept(mark: dict[str, Any], key: MsgKey) -> bool:
    """Record `key` in `mark` (mutated in place); False (and no change) when it is a duplicate."""
    state = SeqMark()
    state.mark_from_json(mark)
    if not state.record(key):
        return False
    mark.clear()
    mark.update(state.mark_to_json())
    return True
