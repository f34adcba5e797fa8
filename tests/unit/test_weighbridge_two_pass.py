"""Two-pass weighing (gross in, tare out), its persistence across an edge restart, its expiry,
and unregistered or unread plates: through the port's seam into a real SQLite outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import Weighing, decode
from contract.events import Direction, TareSource, WasteCategory, WeighingFlag
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.weighbridge import workflow
from edge.devices.weighbridge.frames import WeightReading
from edge.devices.weighbridge.port import WeighbridgePort
from edge.devices.weighbridge.workflow import WeighbridgeDevice, WeighbridgeWorkflow

REGISTERED = "桂B12345"  # tare 12 000 kg
NO_TARE = "桂B20000"  # registered without a tare: weighed in and out
STRANGER = "粤A00000"  # not registered
VEHICLES: list[dict[str, Any]] = [
    {"plate": REGISTERED, "tare_kg": 12000, "rated_gross_kg": 40000, "category": "kitchen", "origin": "a"},
    {"plate": NO_TARE, "rated_gross_kg": 40000, "category": "construction", "origin": "b"},
]


class Site:
    """One edge agent's weighbridge port on a real outbox; `restart` builds a new agent on the same file."""

    def __init__(self, tmp_path: Path, **device: object) -> None:
        self.tmp_path, self.device = tmp_path, device
        self.now = datetime.now(UTC)
        self.t = 0.0
        self.agent: Agent | None = None
        self.restart()

    def restart(self) -> None:
        if self.agent is not None:
            self.agent.outbox.close()
        cfg = parse_config({
            "site_id": "s1",
            "outbox": {"path": str(self.tmp_path / "o.db")},
            "vehicles": VEHICLES,
            "clock": {"max_skew_s": 86400},  # the tests move the wall clock by hours
            "devices": [{"id": "wb-1", "port": str(self.tmp_path / "none"), **self.device}],
        })
        agent, wb = Agent(cfg), cfg.devices[0]
        assert isinstance(wb, WeighbridgeDevice)
        self.agent, self.port = agent, WeighbridgePort(wb, agent.context(wb))
        self.port.workflow._wall_clock = lambda: self.now

    def tickets(self) -> list[Weighing]:
        assert self.agent is not None
        events = [decode(row.payload) for row in self.agent.outbox.pending()]
        return [e for e in events if isinstance(e, Weighing)]


def feed_visit(site: Site, plate: str | None, kg: float) -> None:
    """Through the port's own seam: the same path the serial thread takes."""
    if plate is not None:
        site.port.workflow.on_plate(site.t, plate)
    wf = site.port.workflow
    for w in [0.0] * 3 + [kg / 2] * 3 + [kg] * 20 + [0.0] * 5:
        site.t += 0.1
        with site.port._lock:
            ticket = wf.on_reading(site.t, WeightReading(weight_kg=w, motion=False))
            site.port._settle([] if ticket is None else [ticket])


def test_no_registered_tare_makes_one_ticket_at_the_second_pass(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, NO_TARE, 30000)
    assert site.tickets() == [] and set(site.port.workflow.pending) == {NO_TARE}
    feed_visit(site, NO_TARE, 11000)
    [w] = site.tickets()
    assert (w.gross_kg, w.tare_kg, w.net_kg) == (30000, 11000, 19000)
    assert (w.tare_source, w.direction, w.category, w.flags) == (
        TareSource.MEASURED, Direction.INBOUND, WasteCategory.CONSTRUCTION, ())
    assert site.port.workflow.pending == {}


def test_first_pass_survives_a_restart_and_is_not_repeated(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, NO_TARE, 30000)
    site.restart()  # a new agent and port on the same outbox file
    assert set(site.port.workflow.pending) == {NO_TARE}
    feed_visit(site, NO_TARE, 11000)
    [w] = site.tickets()
    assert w.net_kg == 19000
    site.restart()  # the ticket and the cleared first pass were one transaction
    assert site.port.workflow.pending == {}
    assert len(site.tickets()) == 1


def test_always_mode_compares_the_measured_tare_with_the_registered_one(tmp_path: Path) -> None:
    site = Site(tmp_path, two_pass="always", tare_deviation_kg=500)
    feed_visit(site, REGISTERED, 30000)
    feed_visit(site, REGISTERED, 13000)  # registered 12 000: 1 000 off
    feed_visit(site, REGISTERED, 30000)
    feed_visit(site, REGISTERED, 12200)  # 200 off: fine
    first, second = site.tickets()
    assert (first.tare_kg, first.net_kg, first.tare_source) == (13000, 17000, TareSource.MEASURED)
    assert WeighingFlag.TARE_DEVIATION in first.flags
    assert WeighingFlag.TARE_DEVIATION not in second.flags and second.net_kg == 17800


def test_a_truck_leaving_loaded_is_outbound(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, NO_TARE, 11000)
    feed_visit(site, NO_TARE, 30000)
    [w] = site.tickets()
    assert (w.direction, w.gross_kg, w.tare_kg) == (Direction.OUTBOUND, 30000, 11000)


def test_a_first_pass_never_weighed_out_expires_with_a_flag_and_counts_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, pass_expiry_s=3600)
    feed_visit(site, NO_TARE, 30000)
    site.now += timedelta(seconds=3599)
    site.port.feed(site.t + 20, b"")
    assert site.tickets() == []
    site.now += timedelta(seconds=2)
    site.restart()  # expiry also works from the stored first pass
    site.port.feed(site.t + 40, b"")
    [w] = site.tickets()
    assert (w.gross_kg, w.tare_kg, w.net_kg, w.tare_source) == (30000, 30000, 0, TareSource.NONE)
    assert w.flags == (WeighingFlag.PASS_EXPIRED,)
    site.restart()
    assert site.port.workflow.pending == {}


def test_an_unregistered_plate_is_measured_and_flagged_not_silently_residual(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, STRANGER, 9000)
    feed_visit(site, STRANGER, 4000)
    [w] = site.tickets()
    assert (w.net_kg, w.tare_source, w.origin) == (5000, TareSource.MEASURED, "unknown")
    assert w.flags == (WeighingFlag.UNREGISTERED_VEHICLE,)


def test_an_unread_plate_is_on_record_with_net_zero_and_flagged(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, None, 9000)
    [w] = site.tickets()
    assert (w.plate, w.gross_kg, w.net_kg, w.tare_source) == ("UNREAD", 9000, 0, TareSource.NONE)
    assert w.flags == (WeighingFlag.UNREGISTERED_VEHICLE,)


def test_never_mode_keeps_single_pass_but_still_flags(tmp_path: Path) -> None:
    site = Site(tmp_path, two_pass="never")
    feed_visit(site, STRANGER, 9000)
    [w] = site.tickets()
    assert (w.net_kg, w.tare_source, w.flags) == (0, TareSource.NONE, (WeighingFlag.UNREGISTERED_VEHICLE,))


def test_registered_trucks_stay_single_pass(tmp_path: Path) -> None:
    site = Site(tmp_path)
    feed_visit(site, REGISTERED, 30000)
    [w] = site.tickets()
    assert (w.net_kg, w.tare_source, w.flags) == (18000, TareSource.REGISTERED, ())


def test_unreadable_stored_first_passes_are_logged_not_fatal() -> None:
    wf = WeighbridgeWorkflow(WeighbridgeDevice(id="wb-1", port="/dev/null"), {})
    wf.load_pending("{not json")
    assert wf.pending == {}


def test_a_pass_after_an_expired_one_expires_it_and_starts_a_new_pair(tmp_path: Path) -> None:
    """Weighed in, gone for longer than the expiry, back: the old pass is a pass_expired ticket
    and this pass is a new first pass (not the tare of the old one)."""
    site = Site(tmp_path, pass_expiry_s=3600)
    feed_visit(site, NO_TARE, 30000)
    site.now += timedelta(seconds=4000)
    site.port._next_expiry = site.t + 1e9  # the periodic expiry does not run: the pass itself decides
    feed_visit(site, NO_TARE, 29000)
    [expired] = site.tickets()
    assert (expired.gross_kg, expired.net_kg, expired.flags) == (30000, 0, (WeighingFlag.PASS_EXPIRED,))
    assert site.port.workflow.pending[NO_TARE].weight_kg == 29000
    feed_visit(site, NO_TARE, 11000)
    assert [w.net_kg for w in site.tickets()] == [0, 18000]


def test_first_passes_are_bounded_the_oldest_expire_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "MAX_PENDING", 2)
    site = Site(tmp_path)
    for i, plate in enumerate(["粤A00001", "粤A00002", "粤A00003"]):
        site.now += timedelta(seconds=1)
        feed_visit(site, plate, 9000 + i * 1000)
    site.port.feed(site.t + 20, b"")
    [w] = site.tickets()
    assert (w.plate, w.net_kg) == ("粤A00001", 0)
    assert WeighingFlag.PASS_EXPIRED in w.flags
    assert set(site.port.workflow.pending) == {"粤A00002", "粤A00003"}
