"""Properties of the Modbus decoders: the sorting station block and the truck I/O poll, for the
reference map and the vendor profiles (hb-sc200, dio8-wt), and the profile value codec.

Valid blocks come from the station simulator (it writes drops as a PLC should), so "nothing valid
rejected" is checked against the other side of the wire, not against the decoder's own helpers.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contract.events import Verdict, VerdictSource
from edge.devices.profiles.fields import Block, Defaults, Field, encode, place, raw
from edge.devices.sorting_station import registers as reg
from edge.devices.sorting_station.registers import station_map
from edge.devices.truck.io_module import MAX_LOAD_KG, IoError, IoReading, decode_io, encode_load, io_map
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import StationSim

FAST = settings(max_examples=150, deadline=None)
u16 = st.integers(0, 0xFFFF)


def station() -> StationSim:
    return StationSim(StationSpec(id="ss-1"), CommunitySpec(id="c-1", name="c", district="d", households=99),
                      seed=1, epoch=7)


# cards the way households present them: printable ASCII without surrounding blanks (the decoder
# strips blanks some vendors pad with), at most 16 characters
cards = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16).map(str.strip)
drops = st.tuples(
    st.sampled_from(reg.BINS), st.integers(0, 0xFFFF), cards,
    st.sampled_from(list(Verdict)), st.sampled_from(list(VerdictSource)),
)


@FAST
@given(st.lists(drops, max_size=12), st.integers(0, 0xFFFF))
def test_every_block_the_simulator_writes_decodes_cleanly_and_exactly(
    ds: list[tuple[Any, int, str, Verdict, VerdictSource]], start: int
) -> None:
    sim = station()
    sim.registers[reg.ADDR_DROP_COUNTER] = start  # any counter, including just before the wrap
    for category, grams, card, verdict, source in ds:
        sim.drop(category, grams, card, verdict, source)
    snap = reg.decode_block(sim.registers)
    assert snap.usable and snap.problems == (), snap.problems
    assert all(s.problem is None for s in snap.slots)
    assert snap.epoch == 7 and snap.counter == (start + len(ds)) % reg.COUNTER_MOD
    for d in sim.ledger[-reg.RING_SIZE :]:
        slot = snap.slot_for(d.seq)
        assert (slot.seq, slot.bin, slot.weight_g, slot.card, slot.verdict, slot.source) == (
            d.seq, d.bin, d.grams, d.household, d.verdict, d.verdict_source,
        )
    for b in snap.bins:
        assert b.total_g == sim.total_g[b.bin] and b.fill_pct == round(sim.fill_pct(b.bin) * 10) / 10


@FAST
@given(st.lists(st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=2)), max_size=130))
def test_any_register_list_never_raises_and_an_unusable_block_says_why(regs: list[Any]) -> None:
    snap = reg.decode_block(regs)
    if not snap.usable:
        assert snap.problems and all(p.strip() for p in snap.problems)


@FAST
@given(st.lists(u16, min_size=reg.BLOCK_LEN - 4, max_size=reg.BLOCK_LEN - 4), u16, u16)
def test_every_bad_value_in_a_well_formed_block_has_its_reason(
    body: list[int], epoch: int, counter: int
) -> None:
    regs = [reg.MAP_VERSION, epoch, counter, reg.RING_SIZE, *body]
    snap = reg.decode_block(regs)
    assert snap.usable
    for code, b in enumerate(snap.bins):
        permille, door = regs[reg.bin_addr(code)], regs[reg.bin_addr(code) + 1]
        assert (b.fill_pct is None) == (permille > reg.MAX_FILL_PERMILLE)
        assert (b.fill_pct is None or b.door is None) == any(b.bin.value in p for p in snap.problems)
        assert (b.door is None) == (door > 2)
    for slot in snap.slots:
        bad = slot.bin is None or slot.verdict is None or slot.source is None or slot.card is None
        assert bad == (slot.problem is not None)
        assert slot.problem is None or slot.problem.startswith(f"drop {slot.seq}: ")


@FAST
@given(st.lists(st.booleans(), min_size=3, max_size=3), st.integers(0, int(MAX_LOAD_KG)))
def test_every_valid_truck_poll_round_trips(bits: list[bool], load: int) -> None:
    result = decode_io(bits, [*encode_load(load), 0])
    assert result == IoReading(lid_closed=bits[0], bed_raised=bits[1], ignition=bits[2], load_kg=float(load))


@FAST
@given(st.lists(st.booleans(), max_size=5), st.lists(st.integers(-(2**33), 2**33), max_size=5))
def test_any_truck_poll_gives_a_reading_or_a_reason(bits: list[bool], registers: list[int]) -> None:
    result = decode_io(bits, registers)
    if isinstance(result, IoError):
        assert result.reason.strip()
    else:
        assert 0 <= result.load_kg <= MAX_LOAD_KG


@FAST
@given(st.integers(-(2**31), 2**31 - 1), u16)
def test_truck_load_is_accepted_exactly_when_in_range_and_the_cell_is_healthy(load: int, status: int) -> None:
    result = decode_io([True, False, True], [*encode_load(load), status])
    healthy = not status & 1 and 0 <= load <= MAX_LOAD_KG
    assert isinstance(result, IoReading) is healthy, result


# ----------------------------------------------------------------------- vendor profiles

HB = station_map("hb-sc200")
DIO8 = io_map("dio8-wt")
orders = st.sampled_from(["big", "little"])


@FAST
@given(st.sampled_from(["u16", "i16", "u32", "i32", "f32"]), orders, orders, st.data())
def test_every_type_in_every_order_reads_back_what_was_written(kind: str, word: str, byte: str,
                                                             data: st.DataObject) -> None:
    p = place("x", Field(address=3, type=kind, word_order=word, byte_order=byte), Defaults())  # type: ignore[arg-type]
    bits = {"u16": 16, "i16": 16, "u32": 32, "i32": 32, "f32": 32}[kind]
    if kind == "f32":
        number: float = data.draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    elif kind.startswith("u"):
        number = data.draw(st.integers(0, 2**bits - 1))
    else:
        number = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    regs = encode(p, number)
    assert len(regs) == p.width and all(0 <= r <= 0xFFFF for r in regs)  # type: ignore[operator]
    assert raw({"holding": Block(3, regs)}, p) == number


@FAST
@given(st.lists(u16, min_size=104, max_size=104), st.lists(st.booleans(), min_size=4, max_size=4))
def test_any_hb_registers_decode_without_raising_and_every_bad_value_says_why(
    regs: list[int], doors: list[bool]
) -> None:
    regs[0] = 200  # the model code, so the rest is looked at
    snap = HB.decode({"input": Block(100, regs), "discrete": Block(0, doors)})
    assert snap.usable
    assert all(p.strip() for p in snap.problems)
    for b in snap.bins:
        assert b.fill_pct is None or 0 <= b.fill_pct <= 100
    for s in snap.slots:
        bad = s.bin is None or s.verdict is None or s.source is None or s.card is None
        assert bad <= (s.problem is not None)
        assert s.problem is None or s.problem.startswith(f"drop {s.seq}: ")


@FAST
@given(st.lists(st.one_of(st.booleans(), st.integers(-2, 3)), max_size=6),
       st.lists(st.integers(-(2**17), 2**17), max_size=18))
def test_any_dio8_poll_gives_a_reading_or_a_reason(bits: list[Any], regs: list[int]) -> None:
    result = DIO8.decode({"discrete": Block(0, bits), "input": Block(16, regs)})
    if isinstance(result, IoError):
        assert result.reason.strip()
    else:
        assert 0 <= result.load_kg <= MAX_LOAD_KG
