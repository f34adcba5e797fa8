"""`wastestream edge probe --serial`: the simulator's indicator on a pty at 4800 baud (a reader at
any other speed reads garbage: firmware_sim.weighbridge.LineSpeedGate), the probe through its
dispatcher (edge/probe/); and its format decision on frames written by hand from the manuals."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest

from edge.probe import main as probe_main
from edge.probe.serial import classify, probe
from firmware_sim.pty import PtyPort
from firmware_sim.weighbridge import Format, LineSpeedGate, TruckVisit, WeighbridgeSim

# Toledo, gross, kg, stable, 28 000 kg (x10, count by 2), checksum: the manual's layout (see
# test_weighbridge_indicator_status.py for the bits)
TOLEDO_28000 = b"\x02" b"\x31" b"\x30" b"\x20" b"002800" b"000000" b"\r" b"\x26"
XK3190_28000 = b"\x02" b"+028000" b"0" b"11" b"\x03"  # 2B^30^32^38^30^30^30 ^30 (P) = 0x11
ST_GS_28000 = b"ST,GS,+0028000kg\r\n"


@pytest.mark.parametrize(("frame", "name"), [
    (TOLEDO_28000, "toledo"),
    (TOLEDO_28000[:17], "toledo (no checksum byte)"),
    (XK3190_28000, "xk3190"),
    (ST_GS_28000, "st_gs"),
])
def test_each_known_format_is_told_apart(frame: bytes, name: str) -> None:
    best = classify(b"\x00garbage" + frame * 10)[0]
    assert best.name == name and best.recognised and best.readings[-1].weight_kg == 28000


def test_garbage_is_no_format() -> None:
    noise = bytes((i * 37 ^ 0x5A) & 0xFF for i in range(2000))
    assert not classify(noise)[0].recognised
    assert not classify(b"")[0].recognised


@contextmanager
def indicator(path: Path, fmt: Format, baud: int) -> Iterator[None]:
    """The simulator's indicator sending trucks continuously on a pty at `baud`."""
    port = PtyPort(path)
    stop = threading.Event()
    sim = WeighbridgeSim(LineSpeedGate(port, baud), None, fmt, stable_s=1.5, ramp_s=0.5, gap_s=0.5)

    async def play() -> None:
        while not stop.is_set():
            await sim.visit(TruckVisit("桂B12345", 28000))

    thread = threading.Thread(target=asyncio.run, args=(play(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        port.close()


@pytest.mark.parametrize("fmt", ["xk3190", "st_gs", "toledo"])
def test_probe_finds_the_baud_and_format_and_prints_weights(tmp_path: Path, fmt: Format) -> None:
    dev = tmp_path / "ttyUSB0"
    out = io.StringIO()
    with indicator(dev, fmt, 4800), redirect_stdout(out):
        code = probe_main(["--serial", str(dev), "--baud", "9600", "--baud", "4800", "--listen", "1",
                           "--watch", "2.5"])
    text = out.getvalue()
    assert code == 0, text
    assert "9600 8N1:" in text and "no known format" in text.split("4800 8N1")[0]
    assert f"4800 8N1: recognised {fmt}" in text
    assert "site config: baudrate: 4800" in text
    assert "     28000 kg  " in text  # a live weight of the truck on the deck


def test_probe_without_data_says_so(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "silent")
    try:
        out = io.StringIO()
        code = probe(str(port.link), [9600], 0.3, 0, out)
    finally:
        port.close()
    assert code == 1 and "no data" in out.getvalue()


def test_probe_of_a_missing_port_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_main(["--serial", str(tmp_path / "none"), "--listen", "0.1"]) == 2
    assert "cannot open" in capsys.readouterr().err
