"""Every device kind the edge agent can run: one line per kind (its driver, see base.py).

The site config's device union and the agent's drivers come from here; contract/topics.py's
KIND_EVENTS says what each kind may publish (a test checks the two agree).
"""

from __future__ import annotations

from typing import Any

from edge.devices.base import Driver
from edge.devices.jt808.driver import Jt808Driver
from edge.devices.sorting_station.station import SortingStationDriver
from edge.devices.truck.terminal import TruckDriver
from edge.devices.weighbridge.port import WeighbridgeDriver

DRIVERS: dict[str, type[Driver[Any]]] = {d.kind: d for d in (
    WeighbridgeDriver,
    SortingStationDriver,
    TruckDriver,
    Jt808Driver,
)}
DEFAULT_KIND = WeighbridgeDriver.kind
"""The kind of a device entry without `kind` (sites that were weighbridges only)."""
