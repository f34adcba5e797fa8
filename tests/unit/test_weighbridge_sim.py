"""The sim's encoders against the edge's parsers, and a whole sim run through the workflow."""

from __future__ import annotations

import asyncio

import pytest

from edge.devices.base import Vehicle
from edge.devices.weighbridge.frames import (
    FrameFormat,
    WeightReading,
    make_framer,
    parse_st_gs,
    parse_toledo,
    parse_xk3190,
)
from edge.devices.weighbridge.workflow import StableConfig, WeighbridgeDevice, WeighbridgeWorkflow
from firmware_sim.weighbridge import TruckVisit, WeighbridgeSim, encode_st_gs, encode_toledo, encode_xk3190


@pytest.mark.parametrize("division", [0.01, 0.5, 1, 2, 5, 10, 20, 50, 100])
@pytest.mark.parametrize("weight_steps", [0, 1, 7, 1234])
def test_toledo_roundtrip(division: float, weight_steps: int) -> None:
    w = weight_steps * division
    for sign in (1, -1):
        r = parse_toledo(encode_toledo(sign * w, division_kg=division, motion=sign < 0))
        assert isinstance(r, WeightReading)
        assert r.weight_kg == pytest.approx(sign * w) and r.division_kg == pytest.approx(division)
        assert r.motion is (sign < 0)


def test_toledo_known_bytes() -> None:
    assert encode_toledo(31000, division_kg=20) == b"\x0210 003100000000\r,"


@pytest.mark.parametrize("w", [0, 20, -40, 31200, 999999])
def test_xk3190_roundtrip(w: int) -> None:
    r = parse_xk3190(encode_xk3190(w))
    assert isinstance(r, WeightReading) and r.weight_kg == w
    assert encode_xk3190(31200) == b"\x02+03120001B\x03"


class Capture:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(data)
        return len(data)


@pytest.mark.parametrize("fmt", ["toledo", "xk3190"])
def test_sim_visits_make_the_ledgers_tickets(fmt: FrameFormat, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    indicator, camera = Capture(), Capture()
    sim = WeighbridgeSim(indicator, camera, fmt)  # type: ignore[arg-type]
    visits = [
        TruckVisit(
            "桂B12345", 28010, tare_kg=12000, rated_gross_kg=31000, incidents=("torn_frame", "bad_checksum")
        ),
        TruckVisit("桂B12345", 33000, tare_kg=12000, rated_gross_kg=31000),
        TruckVisit("桂B23456", 20000, tare_kg=9800, incidents=("unstable_capture",)),
    ]

    async def play() -> list:
        await sim.idle(1.0)
        out = []
        for v in visits:
            n = len(indicator.chunks)
            out.append(await sim.visit(v))
            assert len(camera.chunks) == len(out) and n < len(indicator.chunks)
        return out

    ledger = asyncio.run(play())
    device = WeighbridgeDevice(
        id="wb-1", port="-", format=fmt, stable=StableConfig(tolerance_kg=20, hold_s=1.0)
    )  # type: ignore[arg-type]
    registry = {
        "桂B12345": Vehicle(plate="桂B12345", tare_kg=12000, rated_gross_kg=31000),
        "桂B23456": Vehicle(plate="桂B23456", tare_kg=9800, rated_gross_kg=40000),
    }
    wf = WeighbridgeWorkflow(device, registry)
    framer = make_framer(fmt)  # type: ignore[arg-type]
    tickets = []
    for i, chunk in enumerate(indicator.chunks):
        t = i / 10
        for item in framer.feed(chunk):
            if isinstance(item, WeightReading):
                ticket = wf.on_reading(t, item)
                if ticket:
                    tickets.append(ticket)
            else:
                wf.on_frame_error(item)
    assert wf.frame_errors == 2
    assert len(tickets) == 3
    # plates reach the workflow from the camera; here we check weights and flags only
    for ticket, entry in zip(tickets, ledger, strict=True):
        assert ticket.gross_kg == entry.gross_kg and ticket.stable == entry.stable
    assert [e.flags for e in ledger] == [(), ("over_rating", "double_weighing"), ("unstable_capture",)]
    assert ledger[0].net_kg == 16000 and ledger[0].bad_frames == 2
    assert camera.chunks[0] == "PLATE 桂B12345\r\n".encode()


@pytest.mark.parametrize("w", [0, 20, -40, 31200, 9999999])
def test_st_gs_roundtrip(w: int) -> None:
    for motion in (False, True):
        r = parse_st_gs(encode_st_gs(w, motion=motion))
        assert isinstance(r, WeightReading) and r.weight_kg == w and r.motion is motion


@pytest.mark.parametrize("fmt", ["toledo", "xk3190", "st_gs"])
def test_a_simulated_remote_jump_is_flagged_by_the_edge(
    fmt: FrameFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sim's remote control (a one-frame step while the truck stands) against the edge's
    StepDetector; an ordinary visit before it must not be flagged."""
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    indicator = Capture()
    sim = WeighbridgeSim(indicator, None, fmt)  # type: ignore[arg-type]
    visits = [TruckVisit("桂B12345", 20000, tare_kg=12000, rated_gross_kg=31000),
              TruckVisit("桂B12345", 20000, tare_kg=12000, rated_gross_kg=31000, incidents=("remote_jump",))]

    async def play() -> list:
        await sim.idle(1.0)
        return [await sim.visit(v) for v in visits]

    ledger = asyncio.run(play())
    assert [e.gross_kg for e in ledger] == [20000, 22000]
    assert [e.flags for e in ledger] == [(), ("remote_jump", "double_weighing")]
    device = WeighbridgeDevice(
        id="wb-1", port="-", format=fmt, stable=StableConfig(tolerance_kg=20, hold_s=1.0)
    )
    registry = {"桂B12345": Vehicle(plate="桂B12345", tare_kg=12000, rated_gross_kg=31000)}
    wf, framer, tickets = WeighbridgeWorkflow(device, registry), make_framer(fmt), []
    for i, chunk in enumerate(indicator.chunks):
        wf.on_plate(i / 10, "桂B12345")
        for item in framer.feed(chunk):
            assert isinstance(item, WeightReading)
            ticket = wf.on_reading(i / 10, item)
            if ticket:
                tickets.append(ticket)
    assert [t.gross_kg for t in tickets] == [20000, 22000]
    assert [tuple(f.value for f in t.flags) for t in tickets] == [e.flags for e in ledger]
