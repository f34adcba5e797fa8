"""`wastestream edge probe --modbus`: against the station simulator (hb-sc200 over TCP) and the truck
I/O simulator (dio8-wt over RTU on a pty), what it prints is what the simulator holds; a household
card never appears; a dead port, a wrong profile and an ambiguous name give their exit codes."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

from contract.events import Verdict, VerdictSource, WasteCategory
from edge.devices.profiles.dump import format_dump
from edge.devices.sorting_station.registers import decode_dump, station_map
from edge.probe import main as dispatch
from edge.probe.modbus import _args, probe
from firmware_sim.modbus_profile import serve
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import StationSim, serve_stations
from firmware_sim.truck import IoModuleSim

CARD = "LZ-CZ-004711"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def station(profile: str = "hb-sc200") -> StationSim:
    sim = StationSim(StationSpec(id="ss-1", unit_id=2), CommunitySpec(id="c-1", name="c", district="d",
                                                                      households=9),
                     seed=1, epoch=7, profile=profile)
    sim.set_fill(WasteCategory.RESIDUAL, 62.5)
    sim.drop(WasteCategory.KITCHEN, 850, "", Verdict.UNCHECKED, VerdictSource.NONE)
    sim.drop(WasteCategory.RECYCLABLE, 1500, CARD, Verdict.INCORRECT, VerdictSource.INSPECTOR)
    return sim


def run_probe(argv: list[str], serving: object = None) -> tuple[int, str]:
    out = io.StringIO()

    async def go() -> int:
        if serving is None:
            return await probe(_args(argv), out)
        async with serving:  # type: ignore[attr-defined]
            return await probe(_args(argv), out)

    return asyncio.run(go()), out.getvalue()


def test_a_station_over_tcp(tmp_path: Path) -> None:
    sim, port = station(), free_port()
    code, text = run_probe(["--modbus", f"127.0.0.1:{port}", "--profile", "hb-sc200", "--unit", "2",
                            "--count", "2", "--interval", "0.1", "--raw"],
                           serve_stations([sim], tcp_port=port))
    assert code == 0, text
    assert "sorting_station profile hb-sc200" in text and "reads discrete 0..3, input 100..203" in text
    assert text.count("epoch 7, drop counter 2 (ring of 4)") == 2
    assert "drop 2: recyclable 1.500 kg, incorrect (inspector), card" in text
    assert "drop 1: kitchen 0.850 kg, unchecked (none), anonymous" in text
    assert "bin residual    fill   62.5 %  door closed" in text
    assert CARD not in text and "LZ-CZ" not in text  # decoded or raw, the card never leaves
    assert "0x2A2A" in text  # the dump masks it instead


def test_the_raw_dump_decodes_back_to_the_same_poll() -> None:
    sim = station()
    image = sim.map.image(sim.image.values)  # type: ignore[arg-type]
    again = decode_dump(format_dump("hb-sc200", image).encode())
    assert again.reason is None and again.snapshot == station_map("hb-sc200").decode(image)


def test_a_truck_io_module_over_rtu(tmp_path: Path) -> None:
    io_sim, link = IoModuleSim("dio8-wt"), tmp_path / "io"
    io_sim.set(lid_closed=False, bed_raised=True, ignition=True, load_kg=14_500)
    argv = ["--modbus", str(link), "--baudrate", "19200", "--profile", "dio8-wt", "--count", "1"]
    code, text = run_probe(argv, serve([io_sim.device(1)], rtu_path=link, baudrate=19_200))
    assert code == 0, text
    assert f"RTU {link} 19200 8N1, unit 1: truck_io profile dio8-wt" in text
    assert "lid OPEN, bed RAISED, ignition on, load 14500 kg" in text
    io_sim.set(lid_closed=True, bed_raised=False, ignition=True, load_kg=0, fault=True)
    code, text = run_probe(argv, serve([io_sim.device(1)], rtu_path=link, baudrate=19_200))
    assert code == 1 and "refused: load cell fault (status 0x0003)" in text


def test_failures_have_their_exit_codes(capsys: object) -> None:
    port = free_port()
    code, text = run_probe(["--modbus", f"127.0.0.1:{port}", "--profile", "dio8-wt", "--count", "1",
                            "--timeout", "0.5"])
    assert code == 1 and f"cannot connect to TCP 127.0.0.1:{port}" in text
    sim = station()  # an hb-sc200 station read as the reference map: it has no holding registers
    argv = ["--modbus", f"127.0.0.1:{port}", "--profile", "wastestream-v1", "--unit", "2", "--kind",
            "sorting_station", "--count", "1"]
    code, text = run_probe(argv, serve_stations([sim], tcp_port=port))
    assert code == 1 and "no answer" in text and "another model's profile?" in text
    assert dispatch(["--modbus", f"127.0.0.1:{port}", "--profile", "wastestream-v1"]) == 2  # both kinds
    assert dispatch(["--modbus", f"127.0.0.1:{port}", "--profile", "acme"]) == 2
