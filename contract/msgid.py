"""Message ids: `{device_id}:{epoch}:{seq}`, stable across retries and ordered per device.

`epoch` is fixed when a device's outbox is created, `seq` grows by one per event,
so (epoch, seq) orders a device's messages even after the edge store is rebuilt.
"""

from __future__ import annotations

from typing import NamedTuple


class MsgKey(NamedTuple):
    device_id: str
    epoch: int
    seq: int


def make_msg_id(device_id: str, epoch: int, seq: int) -> str:
    return f"{device_id}:{epoch}:{seq}"


def parse_msg_id(msg_id: str) -> MsgKey:
    """Raise ValueError when `msg_id` is not of the form device:epoch:seq."""
    device_id, epoch, seq = msg_id.rsplit(":", 2)
    return MsgKey(device_id, int(epoch), int(seq))
