"""paho-mqtt internals the bridge's hot path relies on, for the paho versions checked (issue 14).

Two things, both for the bridge's CPU per message, both applied only to the paho versions they
were read against (`CHECKED`; any other version runs paho's own path: correct, slower):

- `Properties` without its per-packet set-up (`apply`).
- Direct reads and batched writes for stream.mqtt_loop (`feed_reads`, `bytes_received`,
  `queue_packet`): paho reads a packet with three or more `recv` calls (the command byte, each
  remaining-length byte, the body) and writes each queued packet with its own `send`. The loop
  reads the socket in large chunks itself, parses PUBLISH packets itself, hands every other
  packet to paho through `feed_reads`, and queues many PUBACKs as one write.

`Properties` (`apply`). Why: paho builds a `Properties` for every MQTT 5 PUBLISH it reads, and
its `__init__` rebuilds three constant tables (type names, the 27 property names, which packet
takes which property) while `unpack` first calls `clear`, which probes all 27 names with
`hasattr`: together about a third of the bridge's CPU per message in a profile (cProfile, 20,000
weighings). The tables are never changed after `__init__` (paho only reads them), so one shared
copy serves every instance, and `clear`/`isEmpty` need only look at the instance's own attributes.

tests/unit/test_paho_speedups.py checks properties read back the same either way, and
tests/unit/test_bridge_mqtt_loop.py the loop on both paths.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

CHECKED = ("2.1.", "2.2.")
"""paho-mqtt versions whose Properties this was read against."""

_applied = False
_CLIENT_INTERNALS = ("_sock_recv", "_packet_queue", "_last_bytes_received", "_msgtime_mutex")
"""What `feed_reads`, `queue_packet` and `bytes_received` touch (checked by `direct_io_checked`)."""


@functools.cache
def _version_checked() -> bool:
    return importlib.metadata.version("paho-mqtt").startswith(CHECKED)


def direct_io_checked(client: mqtt.Client) -> bool:
    """The installed paho is one `feed_reads`/`queue_packet` were read against (else: paho's path)."""
    return _version_checked() and all(hasattr(client, a) for a in _CLIENT_INTERNALS)


def feed_reads(client: mqtt.Client, recv: Callable[[int], bytes]) -> None:
    """paho reads its packets from `recv(bufsize)` instead of its socket: `recv` returns bytes
    (b"" at the end of the connection) or raises BlockingIOError (nothing now) or OSError."""
    client._sock_recv = recv  # type: ignore[method-assign,assignment]


def bytes_received(client: mqtt.Client) -> None:
    """Tell paho's keepalive that bytes arrived (paho's own reads note it per packet)."""
    client._last_bytes_received = mqtt.time_func()


def queue_packet(client: mqtt.Client, command: int, data: bytes) -> None:
    """Queue `data` (one or more whole packets of `command`'s kind, e.g. PUBACKs) as one write.

    For packets paho keeps no state about (PUBACK of a received QoS 1 message): paho's own `ack`
    queues the same bytes one packet, and so one `send`, at a time."""
    client._packet_queue(command, data, 0, 0)


def apply() -> bool:
    """Patch `paho.mqtt.properties.Properties` once; False (unpatched) on another paho version."""
    global _applied
    if _applied:
        return True
    version = importlib.metadata.version("paho-mqtt")
    template = Properties(PacketTypes.PUBLISH)
    if not _version_checked() or not all(
            hasattr(template, a) for a in ("types", "names", "properties", "packetType")):
        log.info("paho-mqtt %s: Properties left as they are (speed-up checked for %s)", version, CHECKED)
        return False
    types, names, properties = template.types, template.names, template.properties
    attributes = tuple(name.replace(" ", "") for name in names)

    def __init__(self: Any, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "properties", properties)

    def clear(self: Any) -> None:
        own = self.__dict__
        for attribute in attributes:
            if attribute in own:
                delattr(self, attribute)

    def isEmpty(self: Any) -> bool:
        own = self.__dict__
        return not any(attribute in own for attribute in attributes)

    Properties.__init__ = __init__  # type: ignore[method-assign]
    Properties.clear = clear  # type: ignore[method-assign]
    Properties.isEmpty = isEmpty  # type: ignore[method-assign]
    _applied = True
    return True
