"""The simulator side of the device seam: a `Twin` per device kind plays the scenario's devices of
that kind over their real wires and writes the edge site configs that read them.

A kind is one module here, listed once in `firmware_sim.twins.registry`; `firmware_sim.city`
only iterates the registry (ports, site configs, runs), so it has no per-kind branches.
"""

from __future__ import annotations

import asyncio
import json
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from firmware_sim.scenario import Scenario
from wastestream.foundation.settings import Settings

LEAD_S = 6.0
HOLD_BUDGET_S = 60.0
"""How long devices held after their traffic (`CityPlan.hold`) are sure to stay up."""
"""Idle frames before the first truck and the first drop: time for the edge agents to start,
open their ports and take a station's baseline (an agent's first poll is its baseline)."""


@dataclass(frozen=True)
class CityPlan:
    """What every twin needs to lay out its devices: the scenario, the run dir, the ports."""

    scenario: Scenario
    run_dir: Path
    settings: Settings
    ports: dict[str, int]
    duration: float = 0.0
    hold: asyncio.Event | None = None
    """Set: after their traffic the devices stay up, idle, until it is set (or the sim is
    stopped), so the edge agents can be stopped first: a planned stop, not a device vanishing.
    Weighbridges and stations idle until then; trucks drive on (no incidents) for up to
    HOLD_BUDGET_S, their clocks that much earlier."""

    def dev(self, name: str) -> Path:
        """A device's wire under `<run_dir>/dev/` (a pty symlink)."""
        return self.run_dir / "dev" / name

    def site(self, site_id: str) -> dict[str, Any]:
        """The keys every edge site config of the run shares: its id, the broker, its outbox."""
        return {
            "site_id": site_id,
            "mqtt": {"host": self.settings.mqtt_host, "port": self.settings.mqtt_port},
            "outbox": {"path": str(self.run_dir / "edge" / f"{site_id}.db"), "max_messages": 100_000},
        }


class Ledger:
    """Append-only JSON lines, flushed per entry so a reader never sees half a record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        if self._fh.closed:  # a device task finishing after a cancelled run
            return
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


Ready = Callable[[], Callable[[], None]]
"""`ready()` registers one more wait for `<run_dir>/sim/ready` and returns its callback."""


class Twin(ABC):
    """The simulated devices of one kind in a city run."""

    kind: ClassVar[str]

    def tcp_devices(self, scenario: Scenario) -> list[str]:
        """Ids of this kind's devices that need a free loopback TCP port."""
        return []

    @abstractmethod
    def site_configs(self, plan: CityPlan) -> list[dict[str, Any]]:
        """The edge site configs (raw YAML mappings) that read this kind's simulated devices."""

    @abstractmethod
    def runs(self, plan: CityPlan, ledger: Ledger, ready: Ready) -> list[Awaitable[Any]]:
        """One simulator per device, from LEAD_S on for `plan.duration` s; truth goes to `ledger`."""

    def describe(self, results: list[Any]) -> str:
        """For the run's last log line, from what the runs returned."""
        return f"{len(results)} {self.kind}"


def free_port() -> int:
    """A free loopback TCP port (released again: the simulator binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
