"""No raw household card id leaves the edge, not even in an error text (issue 11, finding 8).

A bad card's reason goes from the register decoder to the driver's log, from the log to the
agent's `last_error`, from there into device_status (so InfluxDB and device_offline alerts):
each hop is checked here for every 4-char piece of the card and every 4-byte piece of its hex.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import decode
from contract.events import Deposit, DeviceStatus
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.sorting_station import registers as reg
from edge.devices.sorting_station.pseudonym import Pseudonymiser, generate_key
from edge.devices.sorting_station.registers import decode_block
from edge.devices.sorting_station.station import (
    SortingStationConfig,
    SortingStationDriver,
    StoredTracker,
    _log_new_problems,
)
from edge.health import ErrorCapture

GOOD_CARD = b"LZ-CZ-000123"
BAD_CARD = b"LZ-CZ-00\x000123"  # a NUL inside: the decoder refuses it with a reason
[DRIVER_LOG] = SortingStationDriver.loggers


def pieces(card: bytes) -> set[str]:
    """Every 4-char piece of the card's text and every 8-hex-digit piece of its bytes."""
    padded = card.ljust(reg.CARD_CHARS, b"\0")
    text = "".join(chr(b) for b in card if b)
    hexes = [padded.hex(), card.hex(), padded.hex().upper()]
    return {text[i : i + 4] for i in range(len(text) - 3)} | {
        h[i : i + 8] for h in hexes for i in range(0, len(h) - 7, 2)
    } | {repr(card)[2:-1]}


def card_registers(card: bytes) -> list[int]:
    raw = card.ljust(reg.CARD_CHARS, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, reg.CARD_CHARS, 2)]


def station_image(counter: int, drops: dict[int, bytes]) -> list[int]:
    regs = [0] * reg.BLOCK_LEN
    regs[reg.ADDR_MAP_VERSION], regs[reg.ADDR_RING_SIZE] = reg.MAP_VERSION, reg.RING_SIZE
    regs[reg.ADDR_EPOCH], regs[reg.ADDR_DROP_COUNTER] = 3, counter
    for seq, card in drops.items():
        base = reg.slot_addr(seq)
        regs[base : base + reg.SLOT_LEN] = [seq, 0, 850, 1, 1, *card_registers(card)]
    return regs


def test_a_bad_card_reaches_log_status_and_outbox_without_its_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate_key()
    (tmp_path / "k").write_text(key)
    cfg = parse_config({
        "site_id": "s1", "outbox": {"path": str(tmp_path / "o.db")},
        "household_key_file": str(tmp_path / "k"),
        "devices": [{"id": "ss-1", "kind": "sorting_station", "community_id": "c1", "port": 1502}],
    })
    [device] = cfg.devices
    assert isinstance(device, SortingStationConfig)
    agent = Agent(cfg)
    capture = ErrorCapture(agent.health, agent.note_error)  # what Agent.run attaches to the driver loggers
    logging.getLogger(DRIVER_LOG).addHandler(capture)
    try:
        tracker = StoredTracker(agent.context(device), device, Pseudonymiser(key.encode()))
        with caplog.at_level(logging.DEBUG):
            tracker.update(decode_block(station_image(0, {})), datetime.now(UTC))  # baseline
            tracker.update(decode_block(station_image(2, {1: GOOD_CARD, 2: BAD_CARD})), datetime.now(UTC))
            _log_new_problems(device.id, tracker.problems, set())  # the driver's own logging
            statuses = [decode(build("ss-1:1:9", 9)) for _, _, build in agent.status_batch(heartbeat=True)]
    finally:
        logging.getLogger(DRIVER_LOG).removeHandler(capture)

    [status] = [s for s in statuses if isinstance(s, DeviceStatus) and s.device_id == "ss-1"]
    assert status.last_error and "has a NUL inside" in status.last_error  # the fault is on record
    payloads = [row.payload.decode() for row in agent.outbox.pending(limit=1000)]
    [deposit] = [d for d in map(decode, payloads) if isinstance(d, Deposit)]
    assert re.fullmatch(r"[0-9a-f]{16}", deposit.household)  # the good card's pseudonym only
    assert deposit.household == Pseudonymiser(key.encode())(GOOD_CARD.decode())
    everything = "\n".join([caplog.text, *tracker.problems, status.last_error, *payloads])
    for card in (GOOD_CARD, BAD_CARD):
        leaked = sorted(p for p in pieces(card) if p in everything)
        assert not leaked, f"raw card pieces {leaked} left the decoder"
    card_addr = reg.slot_addr(2) + 5  # the reason says where the fault is: slot 2's card registers
    assert f"registers {card_addr}..{card_addr + reg.CARD_REGS - 1}" in status.last_error


def test_decoder_reasons_never_quote_the_card() -> None:
    for card in (BAD_CARD, b"LZ-CZ-0001\x07", "沪A-0001".encode()[:16]):
        _, reason = reg.decode_card(card_registers(card), 46)
        assert reason is not None and reason.startswith("card id in registers 46..53 has a")
        assert not [p for p in pieces(card) if p in reason], reason


def test_encode_card_error_never_quotes_the_card() -> None:
    with pytest.raises(ValueError) as info:
        reg.encode_card("LZ-CZ-000123\tX")
    assert "000123" not in str(info.value)


def test_a_slot_repr_hides_the_card() -> None:
    slot = decode_block(station_image(1, {1: GOOD_CARD})).slot_for(1)
    assert slot.card == GOOD_CARD.decode()
    assert "000123" not in repr(slot) and "<12 chars>" in repr(slot)
