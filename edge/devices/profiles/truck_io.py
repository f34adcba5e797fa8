"""The profile of one truck I/O module model (decoded by `edge.devices.truck.io_module`).

Roles (all required but `fault`): `lid_closed`, `bed_raised`, `ignition` are bools (a discrete
input, a coil or a register bit); `invert: true` for a normally-closed switch that reads 1 when the
lid is open. `load` is the load cell in kg after scale/offset (a transmitter reporting tonnes has
scale 1000). `fault` is a status register whose bits in `mask` mean the load cell is faulty.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edge.devices.profiles.fields import Field, Placed, ProfileHead, place

NUMERIC = frozenset({"u16", "i16", "u32", "i32", "f32"})


class Switch(Field, frozen=True, kw_only=True):
    type: Literal["bool"] = "bool"  # type: ignore[assignment]
    invert: bool = False


class Fault(Field, frozen=True, kw_only=True):
    mask: Annotated[int, msgspec.Meta(ge=1, le=0xFFFFFFFF)]
    name: str = "load cell fault"


class TruckIoProfile(ProfileHead, frozen=True, kw_only=True):
    """One I/O module model's map (YAML; `wastestream schema --profile truck_io`)."""

    kind: Literal["truck_io"]
    lid_closed: Switch
    bed_raised: Switch
    ignition: Switch
    load: Field
    fault: Fault | None = None

    def roles(self) -> list[tuple[str, Placed]]:
        d = self.defaults
        fields: list[tuple[str, Field | None]] = [
            ("lid_closed", self.lid_closed), ("bed_raised", self.bed_raised), ("ignition", self.ignition),
            ("load", self.load), ("fault", self.fault)]
        return [(role, place(role, f, d)) for role, f in fields if f is not None]

    def placed(self) -> list[Placed]:
        return [p for _, p in self.roles()]

    def problems(self) -> list[str]:
        roles = dict(self.roles())
        out = []
        if roles["load"].type not in NUMERIC:
            out.append(f"load: type {roles['load'].type} is not numeric")
        if "fault" in roles and roles["fault"].type not in ("u16", "u32"):
            out.append(f"fault: a status mask needs u16 or u32, not {roles['fault'].type}")
        return out
