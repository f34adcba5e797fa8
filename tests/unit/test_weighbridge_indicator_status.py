"""What a Mettler Toledo indicator says in its status words reaches the ticket (issue 11, finding 7).

Every frame here is written out by hand from the indicator manuals' "standard continuous output"
tables, not made by the project's simulator, so a parser and a simulator that agree on a wrong
bit cannot both pass. Layout (18 bytes)::

    STX  SWA  SWB  SWC  weight (6 ASCII digits)  tare (6 ASCII digits)  CR  CHK
    CHK = 2's complement of the 7 low bits of the sum of STX..CR

    SWA 0x31 = 0b0110001: bits 0-2 = 001 (XXXXX0: one dummy zero, x10), bits 3-4 = 0b10 -> count
             by 2 (so 20 kg divisions), bit 5 always 1, bit 6 always 0
    SWB      bit 0 net, bit 1 negative, bit 2 out of range, bit 3 motion, bit 4 kg (0 = lb),
             bit 5 always 1, bit 6 not zeroed since power-up
    SWC 0x20 bits 0-2 = 000 (unit from SWB bit 4), bit 5 always 1; 0x22: bits 0-2 = 010, tonnes
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import DeviceStatus, Weighing, decode
from contract.events import DeviceState, TareSource, WeighingFlag
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.weighbridge.frames import FrameError, WeightReading, parse_toledo, parse_xk3190
from edge.devices.weighbridge.port import WeighbridgePort
from edge.devices.weighbridge.workflow import FAULT_CLEAR_READINGS, WeighbridgeDevice
from edge.outbox import Outbox

PLATE = "桂B12345"  # registered: tare 12 000 kg, rated gross 40 000 kg

# gross mode, kg, stable, weight 000000 (0 kg): SWB 0x30 = bit 5 | bit 4 (kg)
GROSS_0 = b"\x02" b"\x31" b"\x30" b"\x20" b"000000" b"000000" b"\r" b"\x30"
# gross mode, kg, stable, 002800 x10 = 28 000 kg
GROSS_28000 = b"\x02" b"\x31" b"\x30" b"\x20" b"002800" b"000000" b"\r" b"\x26"
# gross, kg, MOTION: SWB 0x38 = bit 5 | bit 4 (kg) | bit 3 (motion); 14 000 and 28 000 kg
MOTION_14000 = b"\x02" b"\x31" b"\x38" b"\x20" b"001400" b"000000" b"\r" b"\x23"
MOTION_28000 = b"\x02" b"\x31" b"\x38" b"\x20" b"002800" b"000000" b"\r" b"\x1e"
# NET mode, kg, stable: SWB 0x31 = bit 5 | bit 4 (kg) | bit 0 (net); displayed net 002016 x10 =
# 20 160 kg, tare 001200 x10 = 12 000 kg (the case: gross 32 160)
NET_20160_TARE_12000 = b"\x02" b"\x31" b"\x31" b"\x20" b"002016" b"001200" b"\r" b"\x23"
# NET mode, kg, motion, net 8 800 kg (tare 12 000): SWB 0x39 = 0x31 | bit 3 (motion)
NET_MOTION_8800 = b"\x02" b"\x31" b"\x39" b"\x20" b"000880" b"001200" b"\r" b"\x14"
# NET mode, kg, NEGATIVE, empty deck: net -12 000, tare 12 000: SWB 0x33 = 0x31 | bit 1 (negative)
NET_EMPTY = b"\x02" b"\x31" b"\x33" b"\x20" b"001200" b"001200" b"\r" b"\x27"
# NET mode with a tare of 000900 x10 = 9 000 kg keyed into the indicator (registry says 12 000)
NET_20160_TARE_9000 = b"\x02" b"\x31" b"\x31" b"\x20" b"002016" b"000900" b"\r" b"\x1d"
NET_EMPTY_9000 = b"\x02" b"\x31" b"\x33" b"\x20" b"000900" b"000900" b"\r" b"\x1b"
# OUT OF RANGE, positive = overload: SWB 0x34 = bit 5 | bit 4 (kg) | bit 2; 006500 x10 = 65 000
OVERLOAD_65000 = b"\x02" b"\x31" b"\x34" b"\x20" b"006500" b"000000" b"\r" b"\x21"
# POUNDS: SWB 0x20 = bit 5 only (bit 4 = 0: lb); 006172 x10 = 61 720 lb (~27 996 kg), and 0 lb
LB_61720 = b"\x02" b"\x31" b"\x20" b"\x20" b"006172" b"000000" b"\r" b"\x30"
LB_0 = b"\x02" b"\x31" b"\x20" b"\x20" b"000000" b"000000" b"\r" b"\x40"
# TONNES: SWC 0x22 = bit 5 | bits 0-2 = 010 (t); SWB 0x30 kg bit is then overridden; 000028 x10
T_280 = b"\x02" b"\x31" b"\x30" b"\x22" b"000028" b"000000" b"\r" b"\x24"

ALL_FRAMES = [GROSS_0, GROSS_28000, MOTION_14000, MOTION_28000, NET_20160_TARE_12000, NET_MOTION_8800,
              NET_EMPTY, NET_20160_TARE_9000, NET_EMPTY_9000, OVERLOAD_65000, LB_61720, LB_0, T_280]


def make(tmp_path: Path, **device: object) -> tuple[WeighbridgePort, Outbox]:
    cfg = parse_config({
        "site_id": "s1",
        "outbox": {"path": str(tmp_path / "o.db")},
        "vehicles": [{"plate": PLATE, "tare_kg": 12000, "rated_gross_kg": 40000}],
        "devices": [{"id": "wb-1", "port": str(tmp_path / "none"), **device}],
    })
    agent, wb = Agent(cfg), cfg.devices[0]
    assert isinstance(wb, WeighbridgeDevice)
    return WeighbridgePort(wb, agent.context(wb)), agent.outbox


class Feeder:
    """Feeds whole frames at 10 Hz into the port's own seam (framer -> workflow -> outbox)."""

    def __init__(self, port: WeighbridgePort) -> None:
        self.port, self.t = port, 0.0

    def __call__(self, frame: bytes, n: int = 1) -> None:
        for _ in range(n):
            self.t += 0.1
            self.port.feed(self.t, frame)


def outbox_events(outbox: Outbox) -> list[Weighing | DeviceStatus]:
    events = [decode(row.payload) for row in outbox.pending()]
    assert all(isinstance(e, Weighing | DeviceStatus) for e in events)
    return events  # type: ignore[return-value]


def tickets(outbox: Outbox) -> list[Weighing]:
    return [e for e in outbox_events(outbox) if isinstance(e, Weighing)]


def statuses(outbox: Outbox) -> list[DeviceStatus]:
    return [e for e in outbox_events(outbox) if isinstance(e, DeviceStatus)]


def test_hand_built_frames_carry_the_manuals_checksum() -> None:
    """The checksum byte written above is the manual's; one bit off is a checksum error."""
    for frame in ALL_FRAMES:
        assert len(frame) == 18 and frame[0] == 0x02 and frame[16] == 0x0D
        assert frame[17] == (0x80 - (sum(frame[:17]) & 0x7F)) & 0x7F
        assert isinstance(parse_toledo(frame), WeightReading), frame
        bad = parse_toledo(frame[:17] + bytes([frame[17] ^ 0x01]))
        assert isinstance(bad, FrameError) and "checksum" in bad.reason


def test_status_words_are_read_as_the_manual_says() -> None:
    net = parse_toledo(NET_20160_TARE_12000)
    assert isinstance(net, WeightReading)
    assert (net.net, net.weight_kg, net.tare_kg, net.gross_kg, net.unit) == (True, 20160, 12000, 32160, "kg")
    empty = parse_toledo(NET_EMPTY)
    assert isinstance(empty, WeightReading) and (empty.weight_kg, empty.gross_kg) == (-12000, 0)
    over = parse_toledo(OVERLOAD_65000)
    assert isinstance(over, WeightReading) and over.overload and not over.underrange
    moving = parse_toledo(MOTION_28000)
    assert isinstance(moving, WeightReading) and moving.motion
    lb = parse_toledo(LB_61720)
    assert isinstance(lb, WeightReading) and lb.unit == "lb"
    tonnes = parse_toledo(T_280)  # SWC bits 0-2 = 010 is tonnes, not the kg of SWB bit 4
    assert isinstance(tonnes, WeightReading) and (tonnes.unit, tonnes.weight_kg) == ("t", 280_000)


def test_net_mode_ticket_carries_the_indicators_gross_tare_and_net(tmp_path: Path) -> None:
    """Net 20 160 shown, tare 12 000: the ticket says net 20 160, never 20 160 - 12 000."""
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(NET_EMPTY, 5)
    feed(NET_MOTION_8800, 5)
    feed(NET_20160_TARE_12000, 25)
    feed(NET_MOTION_8800, 5)
    feed(NET_EMPTY, 5)
    [w] = tickets(outbox)
    assert (w.gross_kg, w.tare_kg, w.net_kg, w.stable) == (32160, 12000, 20160, True)
    assert w.flags == (WeighingFlag.NET_MODE,) and w.tare_source == TareSource.MEASURED


def test_net_mode_tare_far_from_the_registry_is_flagged(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(NET_EMPTY_9000, 5)
    feed(NET_20160_TARE_9000, 25)
    feed(NET_EMPTY_9000, 5)
    [w] = tickets(outbox)
    assert (w.gross_kg, w.tare_kg, w.net_kg) == (29160, 9000, 20160)
    assert w.flags == (WeighingFlag.NET_MODE, WeighingFlag.TARE_DEVIATION)


def test_overload_never_makes_a_stable_ticket(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(GROSS_0, 5)
    feed(MOTION_28000, 5)
    feed(OVERLOAD_65000, 30)
    feed(GROSS_0, 5)
    [w] = tickets(outbox)
    assert not w.stable and WeighingFlag.OVERLOAD in w.flags and w.gross_kg == 65000


def test_motion_bit_reaches_stability_and_the_ticket(tmp_path: Path) -> None:
    """Weights steady at 28 000 but the indicator says motion throughout: no stable weight."""
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(GROSS_0, 5)
    feed(MOTION_14000, 5)
    feed(MOTION_28000, 30)
    feed(GROSS_0, 5)
    [w] = tickets(outbox)
    assert not w.stable and w.flags == (WeighingFlag.UNSTABLE_CAPTURE, WeighingFlag.MOTION)


def test_a_settled_indicator_after_motion_gives_a_stable_ticket(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(GROSS_0, 5)
    feed(MOTION_28000, 10)
    feed(GROSS_28000, 15)
    feed(GROSS_0, 5)
    [w] = tickets(outbox)
    assert (w.stable, w.gross_kg, w.net_kg, w.flags) == (True, 28000, 16000, ())


def test_pounds_at_a_kg_site_are_a_device_error_not_a_rescaled_ticket(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)  # unit defaults to kg
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(GROSS_0, 5)
    feed(LB_0, 5)
    feed(LB_61720, 30)
    feed(LB_0, 5)
    assert tickets(outbox) == []
    [down] = statuses(outbox)
    assert down.state == DeviceState.OFFLINE and down.last_error
    assert "lb" in down.last_error and "kg" in down.last_error
    feed(GROSS_0, FAULT_CLEAR_READINGS)  # the indicator is back in kg: usable again
    [_, up] = statuses(outbox)
    assert up.state == DeviceState.ONLINE and up.last_error is None
    feed(GROSS_28000, 25)
    feed(GROSS_0, 5)
    [w] = tickets(outbox)
    assert (w.gross_kg, w.net_kg, w.stable) == (28000, 16000, True)


def test_a_unit_change_mid_visit_drops_the_visit_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(GROSS_28000, 25)  # a stable 28 000 kg ...
    feed(LB_61720, 3)  # ... then someone presses the unit key
    feed(GROSS_0, FAULT_CLEAR_READINGS + 5)
    assert tickets(outbox) == []
    assert "dropped, no ticket" in caplog.text and "indicator reports lb" in caplog.text


def test_tonnes_at_a_kg_site_are_refused(tmp_path: Path) -> None:
    port, outbox = make(tmp_path)
    feed = Feeder(port)
    feed(T_280, 30)
    feed(GROSS_0, 3)
    assert tickets(outbox) == []
    [down] = statuses(outbox)
    assert down.state == DeviceState.OFFLINE and down.last_error and "reports t," in down.last_error


def test_a_site_that_pins_lb_gets_kg_tickets(tmp_path: Path) -> None:
    port, outbox = make(tmp_path, unit="lb")
    feed = Feeder(port)
    port.workflow.on_plate(0.0, PLATE)
    feed(LB_0, 5)
    feed(LB_61720, 25)
    feed(LB_0, 5)
    [w] = tickets(outbox)
    assert statuses(outbox) == []
    assert w.gross_kg == pytest.approx(61720 * 0.45359237, abs=20)  # rounded to the 20 kg division


def test_xk3190_weights_are_in_the_pinned_unit() -> None:
    """XK3190-A9 tF=0: STX, sign, 6 digits, decimals, XOR(sign..decimals) as 2 hex chars, ETX.

    `+003216` with 2 decimals is 32.16 on the display; a site whose indicator shows tonnes pins
    `unit: t` and gets 32 160 kg, not 32.16 kg. XOR of b"+0032162" is 0x1F.
    """
    frame = b"\x02" b"+" b"003216" b"2" b"1F" b"\x03"
    tonnes = parse_xk3190(frame, unit="t")
    kilos = parse_xk3190(frame)
    assert isinstance(tonnes, WeightReading) and isinstance(kilos, WeightReading)
    assert (tonnes.weight_kg, tonnes.unit) == (32160, "t")
    assert (kilos.weight_kg, kilos.unit) == (32.16, "kg")
