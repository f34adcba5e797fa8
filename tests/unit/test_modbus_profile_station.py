"""The hb-sc200 station profile (input registers, CDAB floats and counters, a result-code verdict table,
doors on discrete inputs), decoded from register values written by hand from the profile's tables
(edge/devices/profiles/vendors/sorting_station/hb-sc200.yaml), then tracked across a 32-bit wrap and
round-tripped through the simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contract.events import Deposit, Verdict, VerdictSource, WasteCategory
from edge.devices.profiles.fields import Block
from edge.devices.sorting_station.registers import Door, station_map
from edge.devices.sorting_station.station import SortingStationTracker
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import StationSim

HB = station_map("hb-sc200")
FIRST = 100  # the first input register the profile reads: 100..203, one function-04 request
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def cdab(bits: int) -> list[int]:
    """A 32-bit value as the profile's two registers: low word at the lower address."""
    return [bits & 0xFFFF, bits >> 16]


def card_le(text: str, regs: int = 10) -> list[int]:
    """A card as the profile stores it: two ASCII characters per register, the first in the LOW byte."""
    raw = text.encode("ascii").ljust(2 * regs, b"\0")
    return [raw[i] | raw[i + 1] << 8 for i in range(0, 2 * regs, 2)]


def image(counter: int = 0, epoch: int = 5, doors: tuple[int, int, int, int] = (0, 0, 0, 0),
          at: dict[int, list[int]] | None = None) -> dict[str, Block]:
    regs = [0] * 104
    regs[100 - FIRST] = 200  # model code
    regs[101 - FIRST] = epoch
    regs[102 - FIRST : 104 - FIRST] = cdab(counter)
    for addr, values in (at or {}).items():
        regs[addr - FIRST : addr - FIRST + len(values)] = values
    return {"input": Block(FIRST, regs), "discrete": Block(0, list(doors))}


def slot(seq: int, bin_code: int, result: int, weight_bits: int, card: str) -> dict[int, list[int]]:
    base = 140 + 16 * (seq % 4)
    return {base: [*cdab(seq), bin_code, result, *cdab(weight_bits), *card_le(card)]}


def test_reads_one_input_block_and_the_doors() -> None:
    assert HB.spans == {"discrete": (0, 4), "input": (100, 104)}


def test_a_hand_written_poll_decodes_to_the_vendors_meaning() -> None:
    at = {
        110: cdab(0x42160000),  # kitchen fill 37.5 %
        112: cdab(0x41440000),  # kitchen total 12.25 kg
        114: cdab(0x42C80000),  # residual fill 100 %
        **slot(3, 3, 18, 0x3FC00000, "AB12"),  # recyclable, 督导员确认错误, 1.5 kg
        **slot(2, 1, 1, 0x41680000, ""),  # kitchen, AI correct, 14.5 kg, no card
    }
    snap = HB.decode(image(counter=3, doors=(0, 1, 0, 0), at=at))
    assert snap.usable and snap.problems == (), snap.problems
    assert (snap.epoch, snap.counter, snap.ring_size, snap.counter_mod) == (5, 3, 4, 2**32)
    kitchen, residual, recyclable, hazardous = snap.bins
    assert (kitchen.bin, kitchen.fill_pct, kitchen.total_g, kitchen.door) == (
        WasteCategory.KITCHEN, 37.5, 12_250, Door.CLOSED)
    assert (residual.bin, residual.fill_pct, residual.door) == (WasteCategory.RESIDUAL, 100.0, Door.OPEN)
    assert (recyclable.bin, hazardous.bin, hazardous.fill_pct) == (
        WasteCategory.RECYCLABLE, WasteCategory.HAZARDOUS, 0.0)
    s3, s2 = snap.slot_for(3), snap.slot_for(2)
    assert (s3.seq, s3.bin, s3.weight_g, s3.card, s3.verdict, s3.source) == (
        3, WasteCategory.RECYCLABLE, 1500, "AB12", Verdict.INCORRECT, VerdictSource.INSPECTOR)
    assert (s2.seq, s2.bin, s2.weight_g, s2.card, s2.verdict, s2.source) == (
        2, WasteCategory.KITCHEN, 14_500, "", Verdict.CORRECT, VerdictSource.CAMERA)


def test_each_bad_value_has_its_reason() -> None:
    assert HB.decode(image(at={100: [300]})).problems == ("model code 300 is not 200",)
    short = {"input": Block(FIRST, [0] * 103), "discrete": Block(0, [0] * 4)}
    assert HB.decode(short).problems == ("read 103 input registers, expected 104",)
    snap = HB.decode(image(at={118: cdab(0x42CB0000), 122: cdab(0x7FC00000)}))  # 101.5 %, NaN
    assert snap.usable
    assert "bin recyclable: fill register 101.5 (101.5 %) out of range 0..100 %" in snap.problems
    assert any(p.startswith("bin hazardous: bins[hazardous].fill") and "not a finite number" in p
               for p in snap.problems), snap.problems
    bad = HB.decode(image(counter=1, at={**slot(1, 5, 4, 0xBF800000, "A\tB")})).slot_for(1)
    assert bad.problem == ("drop 1: unknown bin code 5; weight -1 kg out of range 0..500 kg; "
                           "unknown verdict code 4; card id in registers 162..171 has a non-ASCII/control "
                           "byte (at byte 1 of 3)")


def tracker() -> SortingStationTracker:
    return SortingStationTracker(device_id="ss-hb", site_id="c-1", community_id="c-1",
                                 pseudonymise=lambda card: f"p-{len(card)}")


def test_the_32_bit_counter_wraps_without_a_gap() -> None:
    t = tracker()
    top = 2**32 - 1
    t.update(HB.decode(image(counter=top)), NOW)  # the baseline: no deposits yet
    at = {**slot(0, 1, 1, 0x3F800000, "C1"), **slot(1, 4, 0, 0x40000000, "C2")}  # seq 0 and 1 after the wrap
    events = t.update(HB.decode(image(counter=1, at=at)), NOW)
    deposits = [e for e in events if isinstance(e, Deposit)]
    assert [(d.bin, d.kg, d.verdict, d.verdict_source) for d in deposits] == [
        (WasteCategory.KITCHEN, 1.0, Verdict.CORRECT, VerdictSource.CAMERA),
        (WasteCategory.HAZARDOUS, 2.0, Verdict.UNCHECKED, VerdictSource.NONE)]
    assert t.missed == 0 and not any("gap" in p for p in t.problems)


def test_more_drops_than_the_ring_holds_is_a_gap_of_the_right_size() -> None:
    t = tracker()
    t.update(HB.decode(image(counter=10)), NOW)
    at = {k: v for seq in range(13, 17) for k, v in slot(seq, 1, 1, 0x3F800000, "C").items()}
    events = t.update(HB.decode(image(counter=16, at=at)), NOW)
    assert sum(isinstance(e, Deposit) for e in events) == 4  # 13..16 are in the ring, 11 and 12 are gone
    assert t.missed == 2


VERDICTS = [(Verdict.UNCHECKED, VerdictSource.NONE), (Verdict.CORRECT, VerdictSource.CAMERA),
            (Verdict.INCORRECT, VerdictSource.CAMERA), (Verdict.CORRECT, VerdictSource.INSPECTOR),
            (Verdict.INCORRECT, VerdictSource.INSPECTOR)]
cards = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(WasteCategory)[:4]), st.integers(0, 65_535), cards,
                          st.sampled_from(VERDICTS)), max_size=7), st.integers(0, 2**32 - 1))
def test_what_the_simulator_writes_decodes_exactly(ds: list[tuple[Any, int, str, Any]], start: int) -> None:
    sim = StationSim(StationSpec(id="ss-hb"), CommunitySpec(id="c-1", name="c", district="d", households=9),
                     seed=1, epoch=9, profile="hb-sc200")
    sim.image.write(HB.counter, start)
    for category, grams, card, (verdict, source) in ds:
        sim.drop(category, grams, card, verdict, source)
    snap = HB.decode(HB.image(sim.image.values))  # type: ignore[arg-type]
    assert snap.usable and snap.problems == (), snap.problems
    assert snap.counter == (start + len(ds)) % 2**32 and snap.epoch == 9
    for d in sim.ledger[-4:]:
        s = snap.slot_for(d.seq)
        assert (s.seq, s.bin, s.weight_g, s.card, s.verdict, s.source) == (
            d.seq, d.bin, d.grams, d.household, d.verdict, d.verdict_source)
