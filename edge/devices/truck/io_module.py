"""Muck-truck I/O module over Modbus: lid, bed and ignition switches and the load cell.

Register map (one Modbus unit; addresses are 0-based PDU addresses, as on the wire)::

    discrete inputs (FC 02)
      0  lid closed        1 = tarp/lid limit switch closed (load covered)
      1  bed raised        1 = tipper body angle switch open (bed up, dumping)
      2  ignition          1 = ACC on
    holding registers (FC 03)
      0-1  load            kg, signed 32-bit, high word first (a drifting cell reads < 0)
      2    status          bit 0 = load cell fault (open circuit / ADC error), other bits 0

A real truck reaches the module over RS-485 (Modbus RTU); the simulator serves Modbus TCP on
loopback, so both transports are supported (``transport: tcp | rtu``). `decode_io` is pure and
validates: a negative load, one above `MAX_LOAD_KG` or a faulted cell is an `IoError` with the
reason, never a reading.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

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


def decode_io(bits: Sequence[bool], registers: Sequence[int]) -> IoReading | IoError:
    """Turn one poll (discrete inputs 0-2, holding registers 0-2) into a reading or a reason."""
    if len(bits) < DI_COUNT:
        return IoError(f"got {len(bits)} discrete inputs, need {DI_COUNT}")
    if len(registers) < HR_COUNT:
        return IoError(f"got {len(registers)} holding registers, need {HR_COUNT}")
    if any(not 0 <= r <= 0xFFFF for r in registers[:HR_COUNT]):
        return IoError(f"register value out of 16-bit range: {list(registers[:HR_COUNT])}")
    if registers[HR_STATUS] & STATUS_CELL_FAULT:
        return IoError(f"load cell fault (status 0x{registers[HR_STATUS]:04X})")
    (load,) = struct.unpack(">i", struct.pack(">HH", registers[HR_LOAD], registers[HR_LOAD + 1]))
    if load < 0:
        return IoError(f"negative load {load} kg")
    if load > MAX_LOAD_KG:
        return IoError(f"load {load} kg above {MAX_LOAD_KG:.0f} kg")
    return IoReading(
        lid_closed=bool(bits[DI_LID_CLOSED]),
        bed_raised=bool(bits[DI_BED_RAISED]),
        ignition=bool(bits[DI_IGNITION]),
        load_kg=float(load),
    )


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
    ) -> None:
        self.unit_id = unit_id
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
            di = await self._client.read_discrete_inputs(0, count=DI_COUNT, device_id=self.unit_id)
            hr = await self._client.read_holding_registers(0, count=HR_COUNT, device_id=self.unit_id)
        except Exception as exc:  # pymodbus raises ModbusException and subclasses, or OSError
            self.close()
            raise IoModuleError(f"{type(exc).__name__}: {exc}") from exc
        if di.isError() or hr.isError():
            raise IoModuleError(f"Modbus exception response: {di if di.isError() else hr}")
        return decode_io(di.bits[:DI_COUNT], hr.registers)

    def close(self) -> None:
        self._client.close()
