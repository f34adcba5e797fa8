"""The device-driver seam: what every device kind implements and what the agent hands it.

A kind is one `Driver` subclass with its config struct (a `DeviceSpec` tagged by `kind`), listed
once in `edge.devices.registry`. The agent knows drivers only through this module: it builds a
`DeviceContext` per device, constructs the driver once, and supervises `await driver.run()`
(restarting it with backoff when it raises or returns). Drivers import this module, never
`edge.config` or `edge.agent`, so the site config can import the registry without a cycle.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from contract.events import DeviceState, Envelope, Ident, WasteCategory

if TYPE_CHECKING:
    from edge.clock import ClockGuard

PositiveKg = Annotated[float, msgspec.Meta(gt=0)]


class DeviceSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """One device entry of the site config; a kind subclasses it with `tag="<kind>"`."""

    kind: ClassVar[str]
    id: Ident


class Vehicle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The site's vehicle registry entry (the weighbridge's tare and rating; others may read it)."""

    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    tare_kg: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """None: no registered tare; the weighbridge weighs the truck in and out (two-pass weighing)."""
    rated_gross_kg: PositiveKg
    category: WasteCategory = WasteCategory.RESIDUAL
    origin: Ident = "unknown"


@dataclass(frozen=True, slots=True)
class Numbered:
    """An event whose fields depend on its outbox seq (a ticket id): `build(msg_id, seq)` makes it
    inside the store's transaction. Its device time is the driver's to check (`ctx.clock`): the
    verdict may belong in the payload, as a weighing's clock_skew flag."""

    type: type[Envelope]
    build: Callable[[str, int], Envelope]


class DeviceContext(Protocol):
    """What the agent gives one device's driver. `store` and `report` are thread-safe."""

    site_id: str
    device_id: str
    epoch: int
    """The outbox's epoch (msg_id = device:epoch:seq), for ids derived from the outbox seq."""
    vehicles: Mapping[str, Vehicle]
    clock: ClockGuard
    stop: asyncio.Event
    """Set when the agent stops (for drivers on the event loop)."""
    halt: threading.Event
    """Set when the agent stops (for drivers that block in a thread)."""

    def store(self, events: Sequence[Envelope | Numbered], state: Mapping[str, str] | None = None) -> list[
            str | None]:
        """Put events (msg_id "") and driver `state` into the outbox in one transaction; their msg_ids
        (None: refused by a full outbox). Counts as a sign of life."""
        ...

    async def emit(self, event: Envelope) -> None:
        """`store` one event from the event loop (in a worker thread: SQLite blocks)."""
        ...

    def alive(self) -> None:
        """The device answered (a poll with nothing new to store still proves it online)."""
        ...

    def report(self, state: DeviceState, error: str | None) -> None:
        """The driver's own judgement of the device (for kinds with `reports_state`); a change is
        published at once."""
        ...

    def get_state(self, key: str) -> str | None:
        """Driver state stored by `store(..., state=)` (a cursor), or None."""
        ...


C = TypeVar("C", bound=DeviceSpec)


class Driver(ABC, Generic[C]):
    """One device of one kind. Built once per device; `run` is called again after each failure."""

    kind: ClassVar[str]
    config: ClassVar[type[DeviceSpec]]
    loggers: ClassVar[tuple[str, ...]] = ()
    """Loggers whose warnings `"<device id>: ..."` become the device's `last_error`."""
    reports_state: ClassVar[bool] = False
    """True: the driver calls `ctx.report`; False: the agent judges it by signs of life."""
    has_clock: ClassVar[bool] = False
    """The device keeps its own time: its last clock offset goes in its device_status."""

    def __init__(self, cfg: C, ctx: DeviceContext) -> None:
        self.cfg, self.ctx = cfg, ctx

    @abstractmethod
    async def run(self) -> None:
        """Talk to the device until `ctx.stop` is set; raise on a failure the agent should restart."""

    def stale_after(self) -> float:
        """Seconds without a sign of life after which the device is offline."""
        return 30.0

    @classmethod
    def site_defaults(cls, raw: dict[str, Any], site: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The raw device entry with what it takes from the site (`site_id`, when its config has one)."""
        if "site_id" not in cls.config.__struct_fields__:
            return raw
        if "site_id" in raw:
            raise ValueError(f"`{where}.site_id`: a device takes site_id from the site")
        return {**raw, "site_id": site.get("site_id")}
