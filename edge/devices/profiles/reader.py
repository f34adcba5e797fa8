"""Read a profile's tables from a pymodbus client: one request per table, so each table is one
instant (a station's counter and ring never come from two moments)."""

from __future__ import annotations

from collections.abc import Mapping

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge.devices.profiles.fields import Block, Image

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusReadError(Exception):
    """A read that returned nothing usable (an exception response, a dead link); `str()` is why."""


async def read_image(client: Client, unit_id: int, spans: Mapping[str, tuple[int, int]]) -> Image:
    """Each table's (first address, count) from `spans`, read in one request each."""
    image: dict[str, Block] = {}
    for function, (start, count) in spans.items():
        call = {
            "holding": client.read_holding_registers, "input": client.read_input_registers,
            "coil": client.read_coils, "discrete": client.read_discrete_inputs,
        }[function]
        try:
            response = await call(start, count=count, device_id=unit_id)
        except ModbusException as exc:
            raise ModbusReadError(f"{function} {start}..{start + count - 1}: read failed: {exc}") from None
        if response.isError():
            raise ModbusReadError(f"{function} {start}..{start + count - 1}: the device answered "
                                  f"with an exception: {response}")
        values = list(response.bits[:count]) if function in ("coil", "discrete") else list(response.registers)
        image[function] = Block(start, values)
    return image
