"""I/O module decode: the reference map and the dio8-wt profile from values written by hand, their
validation, and the client over Modbus RTU on a pty against the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from contract.events import Envelope, TruckTelemetry
from edge.devices.profiles.fields import Block
from edge.devices.truck.io_module import (
    MAX_LOAD_KG,
    IoError,
    IoModuleError,
    IoReading,
    TruckIoClient,
    decode_io,
    encode_load,
    io_map,
)
from edge.devices.truck.terminal import TruckTerminalConfig, run_truck_terminal
from firmware_sim.modbus_profile import serve
from firmware_sim.scenario import TruckSpec
from firmware_sim.truck import IoModuleSim, TruckLedger, run_truck_sim


def regs(load: int, status: int = 0) -> list[int]:
    return [*encode_load(load), status]


def test_decodes_switches_and_32_bit_load() -> None:
    r = decode_io([True, False, True, False], regs(14_500))
    assert r == IoReading(lid_closed=True, bed_raised=False, ignition=True, load_kg=14_500.0)
    big = decode_io([False, True, False], regs(59_999))
    assert isinstance(big, IoReading) and big.load_kg == 59_999.0 and big.bed_raised
    assert encode_load(70_000) == [1, 70_000 - 65_536]  # high word first


@pytest.mark.parametrize(
    ("bits", "registers", "reason"),
    [
        ([True, False, True], regs(-5), "negative load"),
        ([True, False, True], regs(int(MAX_LOAD_KG) + 1), "above"),
        ([True, False, True], regs(1000, status=1), "load cell fault"),
        ([True, False], regs(1000), "discrete inputs"),
        ([True, False, True], [0, 1000], "holding registers"),
        ([True, False, True], [0, 70_000, 0], "16-bit"),
    ],
)
def test_rejections(bits: list[bool], registers: list[int], reason: str) -> None:
    r = decode_io(bits, registers)
    assert isinstance(r, IoError) and reason in r.reason


# ------------------------------------------------------------------ the dio8-wt profile, by hand

DIO8 = io_map("dio8-wt")


def dio8(di: list[int], load_bits: int, status: int = 0) -> IoReading | IoError:
    """A poll as the DI8-WT's manual lays it out: DI 0 ACC, 3 tarp (NC: 1 = open), 4 body up; input
    registers 16-17 the load in tonnes as an IEEE-754 float, low word first (CDAB); 32 status."""
    regs = [0] * 17
    regs[0:2] = [load_bits & 0xFFFF, load_bits >> 16]
    regs[16] = status
    return DIO8.decode({"discrete": Block(0, [bool(b) for b in di]), "input": Block(16, regs)})


def test_dio8_reads_what_its_manual_says() -> None:
    assert DIO8.spans == {"discrete": (0, 5), "input": (16, 17)}
    # 14.5 t = 0x41680000; the tarp input reads 0 (switch closed: covered); ACC on; body down
    assert dio8([1, 0, 0, 0, 0], 0x41680000) == IoReading(
        lid_closed=True, bed_raised=False, ignition=True, load_kg=14_500.0)
    # 0.25 t = 0x3E800000 while tipping: tarp open (1), body up (1), ACC on
    assert dio8([1, 0, 0, 1, 1], 0x3E800000) == IoReading(
        lid_closed=False, bed_raised=True, ignition=True, load_kg=250.0)


@pytest.mark.parametrize(
    ("load_bits", "status", "reason"),
    [
        (0xBE4CCCCD, 0, "negative load -200 kg"),  # -0.2 t
        (0x42700000, 0, "load 60000.0 kg"),  # 60 t is allowed ...
        (0x42740000, 0, "load 61000 kg above 60000 kg"),  # ... 61 t is not
        (0x41680000, 0x0002, "load cell fault (status 0x0002)"),  # overload bit
        (0x41680000, 0x0001, "load cell fault (status 0x0001)"),  # ADC fault bit
        (0x7FC00000, 0, "not a finite number"),  # NaN: a transmitter's "no value"
    ],
)
def test_dio8_rejections(load_bits: int, status: int, reason: str) -> None:
    r = dio8([1, 0, 0, 0, 0], load_bits, status)
    if reason.startswith("load 60000.0"):
        assert isinstance(r, IoReading) and r.load_kg == 60_000.0
        return
    assert isinstance(r, IoError) and reason in r.reason, r


# ------------------------------------------------------------------- over Modbus RTU on a pty


def test_the_io_module_over_rtu_on_a_pty(tmp_path: Path) -> None:
    """The client over RTU (a real serial framing on a pty pair) against the simulator, per profile."""

    async def poll(profile: str) -> list[IoReading | IoError]:
        io, link = IoModuleSim(profile), tmp_path / f"io-{profile}"
        states = [(True, False, True, 14_500), (False, True, True, 320), (True, False, False, 0)]
        out: list[IoReading | IoError] = []
        async with serve([io.device(3)], rtu_path=link, baudrate=19_200):
            client = TruckIoClient("rtu", serial_port=str(link), baudrate=19_200, unit_id=3, timeout=2.0,
                                   profile=profile)
            try:
                for lid, bed, ign, kg in states:
                    io.set(lid_closed=lid, bed_raised=bed, ignition=ign, load_kg=kg)
                    out.append(await client.read())
                io.set(lid_closed=True, bed_raised=False, ignition=True, load_kg=100, fault=True)
                out.append(await client.read())
            finally:
                client.close()
        return out

    for profile in ("wastestream-v1", "dio8-wt"):
        got = asyncio.run(poll(profile))
        assert got[:3] == [
            IoReading(lid_closed=True, bed_raised=False, ignition=True, load_kg=14_500.0),
            IoReading(lid_closed=False, bed_raised=True, ignition=True, load_kg=320.0),
            IoReading(lid_closed=True, bed_raised=False, ignition=False, load_kg=0.0)], profile
        assert isinstance(got[3], IoError) and "load cell fault" in got[3].reason, got[3]


def test_a_wrong_unit_id_over_rtu_is_a_module_error(tmp_path: Path) -> None:
    async def poll() -> str:
        link = tmp_path / "io-x"
        async with serve([IoModuleSim().device(3)], rtu_path=link):
            client = TruckIoClient("rtu", serial_port=str(link), unit_id=4, timeout=0.5)
            try:
                await client.read()
            except IoModuleError as exc:
                return str(exc)
            finally:
                client.close()
        return "no error"

    assert asyncio.run(poll()) != "no error"


def test_a_trip_over_rtu_with_a_vendor_module(tmp_path: Path) -> None:
    """The whole terminal (NMEA on one pty, the DI8-WT module over RTU on another) through a round
    trip: the dump is reported with the bed up, and every load is the simulator's within its noise."""
    spec = msgspec.convert({
        "id": "trk-rtu", "plate": "桂BZ8802", "origin": "liubei", "disposal_site": "xn-liubei",
        "tare_kg": 15500, "load_kg": 14500,
        "route": [[24.3660, 109.4050], [24.3750, 109.4010]],
    }, TruckSpec)
    gps, io_tty = tmp_path / "gps", tmp_path / "io"
    cfg = TruckTerminalConfig(
        id=spec.id, site_id="fleet-liubei", plate=spec.plate, gps_port=str(gps), io_transport="rtu",
        io_serial_port=str(io_tty), io_baudrate=38_400, io_profile="dio8-wt", io_poll_s=0.05,
        report_interval_s=0.2, load_step_kg=500, fix_stale_s=0.5)
    events: list[TruckTelemetry] = []

    async def emit(event: Envelope) -> None:
        assert isinstance(event, TruckTelemetry)
        events.append(event)

    async def drive() -> TruckLedger:
        stop = asyncio.Event()
        terminal = asyncio.create_task(run_truck_terminal(cfg, emit, stop))
        ledger = await run_truck_sim(spec, gps_path=gps, io_rtu_path=io_tty, io_profile="dio8-wt", seed=3,
                                     time_scale=40, baudrate=38_400)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(terminal, 5)
        return ledger

    ledger = asyncio.run(drive())
    assert len(events) > 20
    assert any(e.bed_raised for e in events) and any(not e.bed_raised for e in events)
    assert any(not e.lid_closed for e in events) == any(not p.lid_closed for p in ledger.points)
    truth = [p.load_kg for p in ledger.points]
    for e in events:  # the sim adds up to 10 kg of noise and writes whole kg, in tonnes, as f32
        assert min(abs(e.load_kg - kg) for kg in truth) <= 10.5, e.load_kg
