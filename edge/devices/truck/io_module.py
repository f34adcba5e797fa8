"""Muck-truck I/O module over Modbus: lid, bed and ignition switches and the load cell.

The module's map is a vendor profile (`edge/devices/profiles/vendors/truck_io/`, chosen by the
truck's `io_profile`): which discrete input, coil or register bit is each switch (and whether it is
inverted), where the load is, in which type, order and unit, and which status bits mean a faulty
cell. `IoMap(profile).decode(image)` is pure and validates: a negative load, one above
`MAX_LOAD_KG` or a faulted cell is an `IoError` with the reason, never a reading.

The reference map (profile `wastestream-v1`; `decode_io` reads it; addresses are 0-based PDU
addresses, as on the wire)::

    discrete inputs (FC 02)
      0  lid closed        1 = tarp/lid limit switch closed (load covered)
      1  bed raised        1 = tipper body angle switch open (bed up, dumping)
      2  ignition          1 = ACC on
    holding registers (FC 03)
      0-1  load            kg, signed 32-bit, high word first (a drifting cell reads < 0)
      2    status          bit 0 = load cell fault (open circuit / ADC error), other bits 0

A real truck reaches the module over RS-485 (Modbus RTU); the simulator serves Modbus TCP on
loopback or RTU on a pty, so both transports are supported (``transport: tcp | rtu``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edge.devices.profiles import DEFAULT, ProfileError, load_profile
from edge.devices.profiles.dump import DumpError, apply_dump, parse_dump
from edge.devices.profiles.fields import BIT_TABLES, Block, FieldError, Image, raw, spans, value
from edge.devices.profiles.reader import ModbusReadError, read_image
from edge.devices.profiles.truck_io import TruckIoProfile

DI_LID_CLOSED = 0
DI_BED_RAISED = 1
DI_IGNITION = 2
DI_COUNT = 3
HR_LOAD = 0
HR_STATUS = 2
HR_COUNT = 3
STATUS_CELL_FAULT = 0x0001
MAX_LOAD_KG = 60_000.0
"""No two- or three-axle muck truck carries more; a larger reading is a fault, not a load."""

Transport = Literal["tcp", "rtu"]


@dataclass(frozen=True, slots=True)
class IoReading:
    lid_closed: bool
    bed_raised: bool
    ignition: bool
    load_kg: float


@dataclass(frozen=True, slots=True)
class IoError:
    """A poll whose values cannot be used, and why."""

    reason: str


def encode_load(load_kg: int) -> list[int]:
    """Registers 0-1 for a load in kg (signed 32-bit, high word first); used by the simulator."""
    hi, lo = struct.unpack(">HH", struct.pack(">i", load_kg))
    return [hi, lo]


NOUN = {"holding": "holding registers", "input": "input registers", "coil": "coils",
        "discrete": "discrete inputs"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class IoMap:
    """One I/O profile resolved: the reads of a poll (`spans`) and the decoder of its answer."""

    def __init__(self, profile: TruckIoProfile) -> None:
        self.profile = profile
        self.fields = dict(profile.roles())
        self.spans = spans(profile.placed())

    def decode(self, image: Image) -> IoReading | IoError:
        """One poll (each table read from its span's start) -> a reading or the reason it is none."""
        for function, (start, count) in self.spans.items():
            block = image.get(function)
            n = 0 if block is None else len(block.values)
            if block is None or n < count or block.start != start:
                return IoError(f"got {n} {NOUN[function]}, need {count}")
            if function in BIT_TABLES:
                if any(v not in (0, 1) for v in block.values[:count]):
                    return IoError(f"a {NOUN[function][:-1]} value is not 0 or 1")
            else:
                regs = list(block.values[:count])
                if any(isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 0xFFFF for r in regs):
                    return IoError(f"register value out of 16-bit range: {regs}")
        try:
            fault = self.profile.fault
            if fault is not None:
                status = int(raw(image, self.fields["fault"]))
                if status & fault.mask:
                    return IoError(f"{fault.name} (status 0x{status:04X})")
            load = value(image, self.fields["load"])
            switches = {role: bool(raw(image, self.fields[role])) != getattr(self.profile, role).invert
                        for role in ("lid_closed", "bed_raised", "ignition")}
        except FieldError as exc:
            return IoError(str(exc))
        if load < 0:
            return IoError(f"negative load {_num(load)} kg")
        if load > MAX_LOAD_KG:
            return IoError(f"load {_num(load)} kg above {MAX_LOAD_KG:.0f} kg")
        return IoReading(load_kg=float(load), **switches)


REFERENCE = IoMap(load_profile("truck_io", DEFAULT))  # type: ignore[arg-type]


def io_map(profile: str = DEFAULT) -> IoMap:
    """The decoder of an I/O profile by name or path (raises ProfileError)."""
    loaded = load_profile("truck_io", profile)
    assert isinstance(loaded, TruckIoProfile)
    return REFERENCE if profile == DEFAULT else IoMap(loaded)


def decode_io(bits: Sequence[bool], registers: Sequence[int]) -> IoReading | IoError:
    """Turn one poll of the reference map (discrete inputs 0-2, holding registers 0-2) into a
    reading or a reason."""
    return REFERENCE.decode({"discrete": Block(0, bits), "holding": Block(0, registers)})


def decode_dump(data: bytes) -> IoReading | IoError:
    """A text register dump (`edge.devices.profiles.dump`) through its I/O profile."""
    try:
        name, writes = parse_dump(data.decode("utf-8"))
        imap = io_map(name)
        blank = {fn: [0] * count for fn, (_, count) in imap.spans.items()}
        return imap.decode(apply_dump(blank, imap.spans, writes))
    except (UnicodeDecodeError, DumpError, ProfileError) as exc:
        return IoError(str(exc))


class IoModuleError(Exception):
    """The module did not answer or answered with a Modbus exception (transport-level)."""


class TruckIoClient:
    """Polls one I/O module. Connection errors raise `IoModuleError`; the caller retries.

    pymodbus's own background reconnect is off (reconnect_delay=0) so that one loop, the
    caller's, owns retries and their backoff.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        host: str = "127.0.0.1",
        port: int = 502,
        serial_port: str = "",
        baudrate: int = 9600,
        unit_id: int = 1,
        timeout: float = 1.0,
        profile: str = DEFAULT,
    ) -> None:
        self.unit_id = unit_id
        self.map = io_map(profile)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if transport == "tcp":
            self._client = AsyncModbusTcpClient(
                host, port=port, timeout=timeout, retries=0, reconnect_delay=0
            )
        else:
            self._client = AsyncModbusSerialClient(
                serial_port, baudrate=baudrate, timeout=timeout, retries=0, reconnect_delay=0
            )

    async def read(self) -> IoReading | IoError:
        if not self._client.connected and not await self._client.connect():
            raise IoModuleError("cannot connect to the I/O module")
        try:
            image = await read_image(self._client, self.unit_id, self.map.spans)
        except ModbusReadError as exc:
            self.close()
            raise IoModuleError(str(exc)) from exc
        except Exception as exc:  # pymodbus raises ModbusException and subclasses, or OSError
            self.close()
            raise IoModuleError(f"{type(exc).__name__}: {exc}") from exc
        return self.map.decode(image)

    def close(self) -> None:
        self._client.close()
