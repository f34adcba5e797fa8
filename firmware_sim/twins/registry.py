"""Every simulated device kind: one line per kind (its twin, see base.py), as edge/devices/registry.py."""

from __future__ import annotations

from firmware_sim.twins.base import Twin
from firmware_sim.twins.jt808 import Jt808Twin
from firmware_sim.twins.sorting_station import SortingStationTwin
from firmware_sim.twins.truck import TruckTwin
from firmware_sim.twins.weighbridge import WeighbridgeTwin

TWINS: dict[str, Twin] = {t.kind: t for t in (
    WeighbridgeTwin(),
    SortingStationTwin(),
    TruckTwin(),
    Jt808Twin(),
)}
