"""I/O module decode: the register map and its validation."""

from __future__ import annotations

import pytest

from edge.devices.truck.io_module import MAX_LOAD_KG, IoError, IoReading, decode_io, encode_load


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
