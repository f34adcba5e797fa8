"""The sorting station register map: decoding, every bad value with a reason, word order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.events import Verdict, VerdictSource, WasteCategory
from edge.devices.sorting_station import registers as reg
from edge.devices.sorting_station.registers import decode_block


def image(counter: int = 0, epoch: int = 7) -> list[int]:
    regs = [0] * reg.BLOCK_LEN
    regs[reg.ADDR_MAP_VERSION] = reg.MAP_VERSION
    regs[reg.ADDR_RING_SIZE] = reg.RING_SIZE
    regs[reg.ADDR_EPOCH] = epoch
    regs[reg.ADDR_DROP_COUNTER] = counter
    return regs


def put_drop(regs: list[int], seq: int, *, bin_code: int = 0, grams: int = 1234, verdict: int = 1,
             source: int = 1, card: list[int] | None = None) -> None:
    base = reg.slot_addr(seq)
    regs[base : base + reg.SLOT_LEN] = [seq, bin_code, grams, verdict, source,
                                         *(card if card is not None else reg.encode_card("LZ-CZ-000123"))]


def test_block_fits_one_read_request() -> None:
    assert reg.BLOCK_LEN <= 125
    assert reg.RING_BASE + reg.RING_SIZE * reg.SLOT_LEN == reg.BLOCK_LEN
    assert 65536 % reg.RING_SIZE == 0


def test_decodes_bins_and_a_drop() -> None:
    regs = image(counter=3)
    base = reg.bin_addr(reg.BIN_CODE[WasteCategory.RECYCLABLE])
    regs[base : base + 4] = [425, 1, 0x0001, 0x86A0]  # 42.5 %, open, 100000 g
    put_drop(regs, 3, bin_code=2, grams=850, verdict=2, source=2)
    snap = decode_block(regs)
    assert snap.usable and snap.problems == ()
    assert snap.counter == 3 and snap.epoch == 7
    recyclable = snap.bins[1]
    assert (recyclable.bin, recyclable.fill_pct, recyclable.door, recyclable.total_g) == (
        WasteCategory.RECYCLABLE, 42.5, reg.Door.OPEN, 100_000)
    slot = snap.slot_for(3)
    assert (slot.seq, slot.bin, slot.weight_g, slot.card, slot.verdict, slot.source, slot.problem) == (
        3, WasteCategory.HAZARDOUS, 850, "LZ-CZ-000123", Verdict.INCORRECT, VerdictSource.INSPECTOR, None)


def test_u32_word_order_is_high_word_first() -> None:
    assert reg.split_u32(0x12345678) == (0x1234, 0x5678)
    assert reg.join_u32(0x1234, 0x5678) == 0x12345678
    regs = image()
    base = reg.bin_addr(0)
    regs[base + 2], regs[base + 3] = 0x0000, 0xFFFF
    assert decode_block(regs).bins[0].total_g == 65535
    regs[base + 2], regs[base + 3] = 0x0001, 0x0000
    assert decode_block(regs).bins[0].total_g == 65536


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_u32_round_trip(value: int) -> None:
    assert reg.join_u32(*reg.split_u32(value)) == value


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16))
def test_card_round_trip(card: str) -> None:
    assert reg.decode_card(reg.encode_card(card)) == (card, None)


def test_card_all_nul_is_anonymous() -> None:
    assert reg.decode_card([0] * 8) == ("", None)


def test_encode_card_rejects_long_or_non_ascii() -> None:
    with pytest.raises(ValueError):
        reg.encode_card("X" * 17)
    with pytest.raises(ValueError):
        reg.encode_card("卡号")
    with pytest.raises(ValueError):
        reg.encode_card("A\tB")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.__setitem__(reg.bin_addr(1), 1500),
         "bin recyclable: fill register 1500 (150.0 %) out of range"),
        (lambda r: r.__setitem__(reg.bin_addr(3), 1001), "bin residual: fill register 1001"),
        (lambda r: r.__setitem__(reg.bin_addr(0) + 1, 9), "bin kitchen: unknown door state 9"),
    ],
)
def test_bad_bin_values_have_reasons(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    regs = image()
    change(regs)
    snap = decode_block(regs)
    assert snap.usable
    assert any(reason in p for p in snap.problems), snap.problems


def test_out_of_range_fill_is_none_but_other_bins_survive() -> None:
    regs = image()
    regs[reg.bin_addr(0)] = 1500
    regs[reg.bin_addr(1)] = 1000
    snap = decode_block(regs)
    assert snap.bins[0].fill_pct is None
    assert snap.bins[1].fill_pct == 100.0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"bin_code": 4}, "unknown bin code 4"),
        ({"verdict": 3}, "unknown verdict code 3"),
        ({"source": 7}, "unknown verdict source code 7"),
        ({"card": [0x4C5A, 0xFF41, 0, 0, 0, 0, 0, 0]}, "registers 38..45 has a non-ASCII/control"),
        ({"card": [0x4C5A, 0x0A41, 0, 0, 0, 0, 0, 0]}, "non-ASCII/control byte (at byte 2 of 4)"),
        ({"card": [0x4C00, 0x4141, 0, 0, 0, 0, 0, 0]}, "has a NUL inside (at byte 1 of 4"),
    ],
)
def test_bad_slot_values_have_reasons(kwargs: dict[str, object], reason: str) -> None:
    regs = image(counter=1)
    put_drop(regs, 1, **kwargs)  # type: ignore[arg-type]
    slot = decode_block(regs).slot_for(1)
    assert slot.problem is not None and reason in slot.problem
    assert slot.problem.startswith("drop 1: ")


@pytest.mark.parametrize(
    ("regs", "reason"),
    [
        ([0] * 10, "read 10 registers, expected 124"),
        ([*image()[:-1], 70000], "not a 16-bit unsigned int"),
        ([2, *image()[1:]], "map version 2 is not 1"),
        ([*image()[:3], 4, *image()[4:]], "ring size 4 is not 8"),
    ],
)
def test_unusable_blocks(regs: list[int], reason: str) -> None:
    snap = decode_block(regs)
    assert not snap.usable
    assert any(reason in p for p in snap.problems)


@given(st.lists(st.integers(min_value=-5, max_value=70000), min_size=0, max_size=130))
def test_decode_never_raises(regs: list[int]) -> None:
    decode_block(regs)


BODY = reg.BLOCK_LEN - 4


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=BODY, max_size=BODY))
def test_decode_never_raises_on_any_valid_header(body: list[int]) -> None:
    snap = decode_block(image()[:4] + body)
    assert snap.usable
