"""paho-mqtt's `Properties` without its per-packet set-up (issue 14: the bridge's per-message cost).

Why: paho builds a `Properties` for every MQTT 5 PUBLISH it reads, and its `__init__` rebuilds
three constant tables (type names, the 27 property names, which packet takes which property)
while `unpack` first calls `clear`, which probes all 27 names with `hasattr`: together about a
third of the bridge's CPU per message in a profile (cProfile, 20,000 weighings). The tables are
never changed after `__init__` (paho only reads them), so one shared copy serves every instance,
and `clear`/`isEmpty` need only look at the instance's own attributes.

Applied only to the paho versions it was checked against (`CHECKED`, the 2.x line whose
`Properties` has these attributes); any other version runs unpatched (correct, slower), with one
log line. tests/unit/test_paho_speedups.py checks properties read back the same either way.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

CHECKED = ("2.1.", "2.2.")
"""paho-mqtt versions whose Properties this was read against."""

_applied = False


def apply() -> bool:
    """Patch `paho.mqtt.properties.Properties` once; False (unpatched) on another paho version."""
    global _applied
    if _applied:
        return True
    version = importlib.metadata.version("paho-mqtt")
    template = Properties(PacketTypes.PUBLISH)
    if not version.startswith(CHECKED) or not all(
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
