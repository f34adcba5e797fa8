"""A device's Modbus tables laid out by a vendor profile, served by pymodbus over TCP or RTU on a pty.

`ProfileImage` holds, per table the profile reads, the values from the span's first address; the
simulators write a role's value through the profile's own encoding (`edge.devices.profiles.fields
.encode`) and pymodbus answers every read from the image (`device()`: its action mirrors the image
into pymodbus' store before each answer, so a read is one instant of the image).

RTU over a pty: pymodbus' serial server opens a tty by path, and so does the edge, so we make two
raw pty pairs and pump bytes between their masters (what `socat pty pty` does); the edge opens the
symlink `rtu_path` -> the second slave. Both slaves stay open so a client closing its end never
makes the masters return EIO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from edge.devices.profiles.fields import BIT_TABLES, FUNCTION_CODE, Placed, encode, encode_bit

log = logging.getLogger(__name__)

TABLE_OF_CODE = {code: name for name, code in FUNCTION_CODE.items()}


class ProfileImage:
    """The tables of one device: `values[table]` from address `spans[table][0]`."""

    def __init__(self, spans: Mapping[str, tuple[int, int]],
                 initial: Mapping[str, Sequence[int] | Sequence[bool]] | None = None) -> None:
        self.spans = dict(spans)
        start = initial or {}
        self.values: dict[str, list[int]] = {
            fn: [int(v) for v in start.get(fn, [0] * count)] for fn, (_, count) in self.spans.items()}

    def write(self, p: Placed, data: float | str | bool) -> None:
        """Set the field `p` so that the edge decodes `data` from it."""
        regs = self.values[p.function]
        i = p.address - self.spans[p.function][0]
        if p.type == "bool" and p.function not in BIT_TABLES:
            regs[i] = encode_bit(regs[i], p, bool(data))
            return
        regs[i : i + p.width] = [int(v) for v in encode(p, data)]

    def device(self, unit_id: int) -> SimDevice:
        """A pymodbus device with one block per table; every read is answered from the image."""
        blocks: list[list[SimData]] = []
        for name in FUNCTION_CODE:  # coils, discrete inputs, holding, input: pymodbus' tuple order
            start, count = self.spans.get(name, (0, 1))
            if name in BIT_TABLES:  # one register per 16 bits, plus room for the bit offset of a read
                blocks.append([SimData(start, values=[False] * (16 * (count + 2)), datatype=DataType.BITS)])
            else:
                blocks.append([SimData(start, count=count, values=0, datatype=DataType.REGISTERS)])

        async def action(fc: int, block_start: int, address: int, count: int, current: list[int],
                         _values: list[int] | list[bool] | None) -> ExcCodes | None:
            table = TABLE_OF_CODE.get(fc)
            if table not in self.spans:
                return None
            mine, first = self.values[table], self.spans[table][0]
            if table in BIT_TABLES:
                # pymodbus packs bits 16 to a register: a read at `address` is register (address - start),
                # bits from address % 16, and `count` here is the number of those registers
                offset, bit = address - block_start, address % 16
                bits = SimUtils.registersToBits(current[offset : offset + count])
                fresh = [bool(v) for v in mine[address - first :]][: 16 * count - bit]
                bits[bit : bit + len(fresh)] = fresh
                current[offset : offset + count] = SimUtils.bitsToRegisters(bits)
            else:
                current[address - block_start : address - block_start + count] = \
                    mine[address - first : address - first + count]
            return None

        c, d, h, i = blocks
        return SimDevice(id=unit_id, simdata=(c, d, h, i), action=action)


@contextlib.asynccontextmanager
async def serve(devices: Sequence[SimDevice], *, tcp_port: int | None = None, host: str = "127.0.0.1",
                rtu_path: str | Path | None = None, baudrate: int = 9600) -> AsyncIterator[None]:
    """Serve `devices` (distinct unit ids) on Modbus TCP `host`:`tcp_port` or RTU at `rtu_path`."""
    if (tcp_port is None) == (rtu_path is None):
        raise ValueError("give exactly one of tcp_port and rtu_path")
    async with contextlib.AsyncExitStack() as stack:
        server: ModbusTcpServer | ModbusSerialServer
        if tcp_port is not None:
            server = ModbusTcpServer(list(devices), address=(host, tcp_port))
        else:
            server_tty = await stack.enter_async_context(pty_link(Path(str(rtu_path))))
            server = ModbusSerialServer(list(devices), port=server_tty, baudrate=baudrate)
        await server.serve_forever(background=True)
        stack.push_async_callback(server.shutdown)
        yield


@contextlib.asynccontextmanager
async def pty_link(link: Path) -> AsyncIterator[str]:
    """Two raw pty pairs with their masters pumped together; `link` -> the client's slave."""
    loop = asyncio.get_running_loop()
    master_a, slave_a = os.openpty()
    master_b, slave_b = os.openpty()
    fds = (master_a, slave_a, master_b, slave_b)
    try:
        for fd in (slave_a, slave_b):
            tty.setraw(fd)
        for fd in (master_a, master_b):
            os.set_blocking(fd, False)
        loop.add_reader(master_a, _pump, master_a, master_b)
        loop.add_reader(master_b, _pump, master_b, master_a)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(slave_b))
        yield os.ttyname(slave_a)
    finally:
        for fd in (master_a, master_b):
            loop.remove_reader(fd)
        with contextlib.suppress(FileNotFoundError):
            if link.is_symlink():
                link.unlink()
        for fd in fds:
            os.close(fd)


def _pump(src: int, dst: int) -> None:
    try:
        data = os.read(src, 4096)
        while data:
            data = data[os.write(dst, data):]
    except (BlockingIOError, InterruptedError):
        pass
    except OSError as exc:
        log.warning("pty pump %d -> %d: %s", src, dst, exc)
