"""Message ids: `{device_id}:{epoch}:{seq}`, stable across retries and ordered per device.

`epoch` is fixed when a device's outbox is created (edge/outbox.py: the agent host's Unix
time in seconds), `seq` grows by one per event, so (epoch, seq) orders a device's messages
within one outbox; a rebuilt outbox starts a new epoch (stream/dedup.py remembers several).

Parsing is strict and canonical, because the stream de-duplicates on these numbers: the
device part is a contract `Ident`, epoch and seq are ASCII digits without sign, underscore,
space, leading zero or any other Unicode digit (Python's `int()` accepts `1_0`, ` 1\\n` and
full-width `１`), of bounded length. So one key has exactly one msg_id text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

EPOCH_DIGITS = 10
"""Unix seconds up to 9,999,999,999 (year 2286)."""
SEQ_DIGITS = 15
"""Below 2**53: exact in every JSON reader (the stream's table values are JSON)."""

_NUMBER = r"(?:0|[1-9][0-9]{0,%d})"
_MSG_ID = re.compile(
    rf"([A-Za-z0-9_.\-]{{1,64}}):({_NUMBER % (EPOCH_DIGITS - 1)}):({_NUMBER % (SEQ_DIGITS - 1)})")


class MsgKey(NamedTuple):
    device_id: str
    epoch: int
    seq: int


def make_msg_id(device_id: str, epoch: int, seq: int) -> str:
    return f"{device_id}:{epoch}:{seq}"


def parse_msg_id(msg_id: str) -> MsgKey:
    """Raise ValueError when `msg_id` is not exactly `device:epoch:seq` in canonical form."""
    m = _MSG_ID.fullmatch(msg_id)
    if m is None:
        raise ValueError(f"msg_id {msg_id[:140]!r} is not device:epoch:seq (ASCII digits, "
                         f"at most {EPOCH_DIGITS} and {SEQ_DIGITS}, no sign or leading zero)")
    return MsgKey(m[1], int(m[2]), int(m[3]))


def device_key(site_id: str, device_id: str) -> str:
    """The stream's key of one device: `site/device` (device ids are unique within a site only).

    The bridge's Kafka key and every per-device table, dedup mark and alert key use it, so two
    sites that both name a weighbridge `wb-1` never share state. `/` is not in an `Ident`."""
    return f"{site_id}/{device_id}"


def split_device_key(key: str) -> tuple[str, str]:
    """(site_id, device_id) of a `device_key`; ValueError when `key` is not one."""
    site_id, sep, device_id = key.partition("/")
    if not sep or not site_id or not device_id:
        raise ValueError(f"{key!r} is not a site/device key")
    return site_id, device_id


def site_msg_id(site_id: str, msg_id: str) -> str:
    """A msg_id made unique across sites (`site/device:epoch:seq`): for alert dedup keys and event
    ids, which the same msg_id of two sites' like-named devices must not share."""
    return f"{site_id}/{msg_id}"
