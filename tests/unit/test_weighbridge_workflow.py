"""Ticket workflow state machine: visits, plates, registry, flags; no I/O."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from contract import decode, encode
from contract.events import TareSource, WasteCategory, Weighing, WeighingFlag
from edge.devices.base import Vehicle
from edge.devices.weighbridge.anpr import AnprLineReader, parse_anpr_line
from edge.devices.weighbridge.frames import FrameError, WeightReading
from edge.devices.weighbridge.workflow import (
    UNREAD_PLATE,
    StableConfig,
    State,
    Ticket,
    WeighbridgeDevice,
    WeighbridgeWorkflow,
)

PLATE = "桂B12345"
DEVICE = WeighbridgeDevice(
    id="wb-1",
    port="/dev/null",
    division_kg=20,
    occupied_kg=500,
    stable=StableConfig(tolerance_kg=20, hold_s=1.0),
    double_weigh_window_s=600,
)
REGISTRY = {
    PLATE: Vehicle(
        plate=PLATE, tare_kg=12000, rated_gross_kg=31000, category=WasteCategory.KITCHEN, origin="chengzhong"
    ),
    "桂B99999": Vehicle(plate="桂B99999", tare_kg=6000, rated_gross_kg=18000),
}
NOW = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0


def make() -> tuple[WeighbridgeWorkflow, Clock]:
    return WeighbridgeWorkflow(DEVICE, REGISTRY, wall_clock=lambda: NOW), Clock()


def run(wf: WeighbridgeWorkflow, clock: Clock, weights: list[float], motion: bool = False) -> list[Ticket]:
    out = []
    for w in weights:
        clock.t += 0.1
        ticket = wf.on_reading(clock.t, WeightReading(weight_kg=w, motion=motion))
        if ticket is not None:
            out.append(ticket)
    return out


def visit(gross: float, hold: int = 25) -> list[float]:
    up = [gross * i / 10 for i in range(1, 10)]
    return [0.0] * 5 + up + [gross] * hold + up[::-1] + [0.0] * 5


def test_stable_visit_makes_one_ticket() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    tickets = run(wf, clock, visit(28000))
    assert len(tickets) == 1
    t = tickets[0]
    assert (t.plate, t.gross_kg, t.tare_kg, t.net_kg, t.stable, t.flags) == (
        PLATE,
        28000,
        12000,
        16000,
        True,
        (),
    )
    assert t.category is WasteCategory.KITCHEN and t.origin == "chengzhong"
    w = t.to_weighing(msg_id="wb-1:1:1", ticket_id="wb-1-1-1", device_id="wb-1", site_id="s")
    assert decode(encode(w), Weighing) == w
    assert wf.state is State.IDLE


def test_plate_during_visit_and_noise_below_threshold_does_not_split() -> None:
    wf, clock = make()
    ws = visit(28000)
    out = run(wf, clock, ws[:12])
    wf.on_plate(clock.t, PLATE)
    out += run(wf, clock, [*ws[12:20], 0.0, *ws[20:]])  # one dropout frame mid-visit
    assert len(out) == 1 and out[0].plate == PLATE and out[0].gross_kg == 28000


def test_unstable_capture_uses_max_seen() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    [t] = run(wf, clock, visit(27990, hold=3))
    assert not t.stable and t.flags == (WeighingFlag.UNSTABLE_CAPTURE,) and t.gross_kg == 28000


def test_motion_bit_blocks_a_stable_capture_and_reaches_the_ticket() -> None:
    """Weights at rest but the indicator says motion all along: not stable, flagged `motion`."""
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    [t] = run(wf, clock, visit(28000), motion=True)
    assert not t.stable
    assert t.flags == (WeighingFlag.UNSTABLE_CAPTURE, WeighingFlag.MOTION) and t.gross_kg == 28000


def test_over_rating() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    [t] = run(wf, clock, visit(33000))
    assert WeighingFlag.OVER_RATING in t.flags and t.net_kg == 21000


def test_unknown_plate_is_weighed_in_and_out_and_flagged(caplog: pytest.LogCaptureFixture) -> None:
    """Not the old silent 'tare 0, residual': the first pass waits, the second measures the tare."""
    wf, clock = make()
    wf.on_plate(clock.t, "粤A00000")
    assert run(wf, clock, visit(9000)) == [] and set(wf.pending) == {"粤A00000"}
    wf.on_plate(clock.t, "粤A00000")
    with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
        [t] = run(wf, clock, visit(4000))
    assert (t.category, t.origin) == (WasteCategory.RESIDUAL, "unknown")
    assert (t.gross_kg, t.tare_kg, t.net_kg) == (9000, 4000, 5000)
    assert t.flags == (WeighingFlag.UNREGISTERED_VEHICLE,) and t.tare_source == TareSource.MEASURED
    assert "not in the vehicle registry" in caplog.text and wf.pending == {}


def test_no_plate_read() -> None:
    """An unread plate cannot be paired: on record, net 0 (no tare known), flagged."""
    wf, clock = make()
    [t] = run(wf, clock, visit(9000))
    assert t.plate == UNREAD_PLATE
    assert (t.gross_kg, t.tare_kg, t.net_kg, t.tare_source) == (9000, 9000, 0, TareSource.NONE)
    assert t.flags == (WeighingFlag.UNREGISTERED_VEHICLE,)


def test_double_weighing_within_window() -> None:
    wf, clock = make()
    tickets = []
    for _ in range(2):
        wf.on_plate(clock.t, PLATE)
        tickets += run(wf, clock, visit(28000))
    assert tickets[0].flags == () and tickets[1].flags == (WeighingFlag.DOUBLE_WEIGHING,)
    clock.t += 601
    wf.on_plate(clock.t, PLATE)
    [late] = run(wf, clock, visit(28000))
    assert late.flags == ()


def test_gross_below_registered_tare_is_flagged_not_negative() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    [t] = run(wf, clock, visit(8000))
    assert t.net_kg == 0 and t.tare_kg == 8000 and WeighingFlag.TARE_DEVIATION in t.flags


def test_tare_deviation_hook() -> None:
    wf, _ = make()
    assert wf.tare_deviates(REGISTRY[PLATE], measured_tare_kg=13000)
    assert not wf.tare_deviates(REGISTRY[PLATE], measured_tare_kg=12100)
    assert not wf.tare_deviates(None, measured_tare_kg=1)


def test_stale_plate_is_not_used() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    clock.t += 1000
    [t] = run(wf, clock, visit(9000))
    assert t.plate == UNREAD_PLATE


def test_next_trucks_plate_while_deck_occupied() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    ws = visit(28000)
    out = run(wf, clock, ws[:30])
    wf.on_plate(clock.t, "桂B99999")
    out += run(wf, clock, ws[30:] + visit(9000))
    assert [t.plate for t in out] == [PLATE, "桂B99999"]


def test_frame_errors_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    wf, _ = make()
    with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
        wf.on_frame_error(FrameError("xk3190 checksum mismatch: got x", b"\x02"))
        wf.on_frame_error(FrameError("torn toledo frame (5 bytes)", b"\x02"))
    assert wf.frame_errors == 2 and "checksum mismatch" in caplog.text


def test_anpr_lines() -> None:
    r = AnprLineReader()
    data = f"PLATE {PLATE}\r\nHELLO\r\n\r\nPLATE 桂B9".encode() + b"9999\r\n"
    plates = []
    for i in range(len(data)):
        plates += r.feed(data[i : i + 1])
    assert plates == [PLATE, "桂B99999"] and r.errors == 1
    assert parse_anpr_line(b"PLATE \xff\xfe") is None and parse_anpr_line(b"PLATE") is None
    r.feed(b"x" * 1000)
    assert r.errors == 2


def test_remote_jump_while_the_truck_stands_is_flagged() -> None:
    """Settled at 20 000, a clean step to 22 000 with no motion: the remote-control signature."""
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    up = [20000 * i / 10 for i in range(1, 10)]
    weights = [0.0] * 5 + up + [20000.0] * 15 + [22000.0] * 15 + up[::-1] + [0.0] * 5
    [t] = run(wf, clock, weights)
    assert WeighingFlag.REMOTE_JUMP in t.flags and t.gross_kg == 22000


def test_an_ordinary_visit_has_no_remote_jump() -> None:
    wf, clock = make()
    wf.on_plate(clock.t, PLATE)
    [t] = run(wf, clock, visit(28000))
    assert WeighingFlag.REMOTE_JUMP not in t.flags


def test_plate_nearest_before_the_weight_settled_is_taken() -> None:
    """Two reads before the truck settled: the later one is this truck's; a read after settling is
    the next truck's."""
    wf, clock = make()
    wf.on_plate(clock.t, "桂B99999")
    clock.t += 5
    wf.on_plate(clock.t, PLATE)
    ws = visit(28000)
    out = run(wf, clock, ws[:35])
    wf.on_plate(clock.t, "桂B99999")
    out += run(wf, clock, ws[35:] + visit(9000))
    assert [t.plate for t in out] == [PLATE, "桂B99999"]
