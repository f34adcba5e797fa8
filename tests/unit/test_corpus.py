"""Every case of the bad-input corpus (tests/corpus/) through its parser.

The corpus is data so that a device vendor or a future engineer can read and extend it without
reading Python; this file only knows how to feed each kind of case. A new device kind's corpus
needs no change here: `parser: package.module:function` names a parser that takes the case's
bytes and returns an object with a `reason` for a rejection (anything else is a reading). A case
passes when its parser rejects it with the expected reason and does not raise (a `valid: true`
control must be accepted).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.codec import ContractError, decode
from edge.devices.sorting_station import registers as reg
from edge.devices.truck.io_module import IoError, decode_io
from edge.devices.truck.nmea import GpsFix, NmeaError, NmeaReader
from edge.devices.weighbridge.anpr import AnprLineReader
from edge.devices.weighbridge.frames import (
    FrameError,
    WeightReading,
    make_framer,
    parse_toledo,
    parse_xk3190,
)
from stream.validation import Rejection, Routed, validate

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
Case = dict[str, Any]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


BASES: dict[str, dict[str, Any]] = _load(CORPUS / "contract" / "decode.yaml")["bases"]


def _files() -> list[Path]:
    return sorted(CORPUS.glob("*/*.yaml"))


def _cases() -> list[Any]:
    out = []
    for path in _files():
        doc = _load(path)
        for i, case in enumerate(doc["cases"]):
            name = f"{path.parent.name}/{path.stem}[{i}]"
            out.append(pytest.param(doc["parser"], case, id=name))
    return out


def _bytes(case: Case) -> bytes:
    """The case's raw input: hex, text, or a contract payload built from a base message."""
    if "hex" in case:
        return bytes.fromhex(case["hex"])
    if "text" in case:
        return str(case["text"]).encode("utf-8")
    message = dict(BASES[case["base"]])
    message.update(case.get("set", {}))
    for field in case.get("unset", []):
        message.pop(field)
    payload = json.dumps(message, ensure_ascii=False).encode("utf-8")
    return payload.ljust(case.get("pad_to", 0), b" ")


def _expect_reason(case: Case, reasons: list[str]) -> None:
    assert reasons, "rejected without any reason"
    assert all(r.strip() for r in reasons), f"an empty reason among {reasons}"
    if not case.get("any_error"):
        assert any(case["reason"] in r for r in reasons), f"{case['reason']!r} not in {reasons}"


def _framer_case(fmt: str) -> Callable[[Case], None]:
    def run(case: Case) -> None:
        data = _bytes(case)
        checksum = case.get("checksum", True)
        if case.get("via") == "parse":
            item = parse_toledo(data, checksum=checksum) if fmt == "toledo" else parse_xk3190(data)
            if case.get("valid"):
                assert isinstance(item, WeightReading), item
                return
            assert isinstance(item, FrameError), item
            _expect_reason(case, [item.reason])
            return
        framer = make_framer(fmt, checksum=checksum)  # type: ignore[arg-type]
        items = framer.feed(data)
        readings = [i for i in items if isinstance(i, WeightReading)]
        assert len(readings) == case.get("readings", 0), items
        _expect_reason(case, [i.reason for i in items if isinstance(i, FrameError)])

    return run


def _nmea_case(case: Case) -> None:
    items = NmeaReader().feed(_bytes(case))
    assert sum(isinstance(i, GpsFix) for i in items) == case.get("readings", 0), items
    _expect_reason(case, [i.reason for i in items if isinstance(i, NmeaError)])


def _anpr_case(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    data = _bytes(case)
    step = case.get("chunk") or len(data) or 1
    reader = AnprLineReader()
    plates: list[str] = []
    with caplog.at_level(logging.WARNING, logger="edge.weighbridge"):
        for i in range(0, len(data), step):
            plates += reader.feed(data[i : i + step])
    assert len(plates) == case.get("readings", 0), plates
    assert reader.errors >= 1
    _expect_reason(case, [r.getMessage() for r in caplog.records if r.name == "edge.weighbridge"])


def _registers_case(case: Case) -> None:
    regs: list[Any] = [0] * reg.BLOCK_LEN
    regs[reg.ADDR_MAP_VERSION] = reg.MAP_VERSION
    regs[reg.ADDR_RING_SIZE] = reg.RING_SIZE
    if "length" in case:
        regs = (regs * 2)[: case["length"]]
    for addr, value in case.get("set", {}).items():
        regs[int(addr)] = value
    snap = reg.decode_block(regs)
    assert snap.usable is case["usable"], snap
    _expect_reason(case, [*snap.problems, *(s.problem for s in snap.slots if s.problem)])


def _truck_io_case(case: Case) -> None:
    result = decode_io(case["bits"], case["registers"])
    assert isinstance(result, IoError), result
    _expect_reason(case, [result.reason])


def _decode_case(case: Case) -> None:
    with pytest.raises(ContractError) as info:
        decode(_bytes(case))
    _expect_reason(case, [str(info.value)])


def _bridge_case(case: Case) -> None:
    result = validate(case["topic"], _bytes(case))
    if case.get("valid"):
        assert isinstance(result, Routed), result
        return
    assert isinstance(result, Rejection), result
    _expect_reason(case, [result.reason])


def _named_case(parser: str) -> Callable[[Case], None]:
    """A parser named by its path: rejected cases give an object with `reason`, controls do not."""
    module, _, name = parser.partition(":")
    parse = getattr(importlib.import_module(module), name)

    def run(case: Case) -> None:
        result = parse(_bytes(case))
        reason = getattr(result, "reason", None)
        if case.get("valid"):
            assert reason is None, result
            return
        assert isinstance(reason, str), result
        _expect_reason(case, [reason])

    return run


RUNNERS: dict[str, Callable[[Case], None]] = {
    "weighbridge_toledo": _framer_case("toledo"),
    "weighbridge_xk3190": _framer_case("xk3190"),
    "nmea": _nmea_case,
    "sorting_registers": _registers_case,
    "truck_io": _truck_io_case,
    "contract_decode": _decode_case,
    "bridge_validate": _bridge_case,
}


@pytest.mark.parametrize(("parser", "case"), _cases())
def test_corpus_case(parser: str, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    if parser == "anpr":
        _anpr_case(case, caplog)
    elif ":" in parser:
        _named_case(parser)(case)
    else:
        RUNNERS[parser](case)


def test_corpus_is_complete_and_documented() -> None:
    """Every parser has cases; every case says what is wrong and what reason to expect."""
    seen: dict[str, int] = {}
    for path in _files():
        doc = _load(path)
        assert doc["parser"] in {*RUNNERS, "anpr"} or ":" in doc["parser"], path
        seen[doc["parser"]] = seen.get(doc["parser"], 0) + len(doc["cases"])
        for case in doc["cases"]:
            assert case.get("note"), (path, case)
            assert case.get("reason") or case.get("any_error") or case.get("valid"), (path, case)
    assert {*RUNNERS, "anpr"} <= set(seen)
    assert all(n >= 9 for n in seen.values()), seen


def test_bases_are_valid_and_routed() -> None:
    """The corpus's base messages are what a vendor copies: each must decode and route as is."""
    kinds = {"weighing": "weighbridge", "device_status": "weighbridge", "deposit": "sorting_station",
             "bin_level": "sorting_station", "truck_telemetry": "truck"}
    for event, message in BASES.items():
        payload = json.dumps(message, ensure_ascii=False).encode()
        assert decode(payload).event == event
        topic = f"ws/v1/{message['site_id']}/{kinds[event]}/{message['device_id']}/{event}"
        assert isinstance(validate(topic, payload), Routed), event
