"""Plate camera (ANPR) line protocol: `PLATE <plate>\\r\\n`, UTF-8; pure, bounded, never raises.

The line protocol is the test and bench-top input; cameras in the field push HTTP
(edge/devices/weighbridge/anpr_http.py). Both hand the workflow a `PlateRead` whose plate matches
the contract's PLATE rule (contract/text.py), so a plate the bridge would refuse is refused here,
at the edge, with a logged reason, instead of making a ticket that dead-letters upstream.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from contract import text

log = logging.getLogger("edge.weighbridge")

MAX_LINE = 256
MAX_PLATE_CHARS = 16
"""The contract's plate length (contract/events.py `Plate`)."""
_PLATE = re.compile(text.PLATE)
NO_PLATE = frozenset({"_无_", "无牌", "无", "无车牌", "未识别", "UNKNOWN", "NOPLATE", "UNREAD", ""})
"""What cameras write when they saw a vehicle but no plate: no read, never a plate to pair passes by."""


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate the camera read; `frame_ts` is the camera's frame time (None: the line protocol)."""

    plate: str
    confidence: int | None = None
    color: str | None = None
    frame_ts: datetime | None = None
    source: str = "line"


def plate_problem(plate: str) -> str | None:
    """Why `plate` cannot go on a ticket (the contract's PLATE rule and length), or None."""
    if not 1 <= len(plate) <= MAX_PLATE_CHARS:
        return f"plate of {len(plate)} characters (1-{MAX_PLATE_CHARS})"
    if _PLATE.match(plate) is None:
        return "plate does not match the contract's PLATE rule (letters, digits, CJK; · - or space inside)"
    return None


class AnprLineReader:
    """Split a byte stream into plate reads; other or malformed lines are logged and counted."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line: drop to its end, not read its tail
        self.errors = 0

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        plates: list[str] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._discarding:
                        self._reject(bytes(self._buf), "line too long")
                    self._buf.clear()
                    self._discarding = True
                return plates
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            plate = parse_anpr_line(line)
            if plate is None:
                if line.strip():
                    self._reject(line, "not a PLATE line")
            elif plate.upper() in NO_PLATE:
                log.info("anpr: the camera saw no plate (%s)", plate)
            elif (problem := plate_problem(plate)) is not None:
                self._reject(line, problem)
            else:
                plates.append(plate)

    def _reject(self, raw: bytes, reason: str) -> None:
        self.errors += 1
        log.warning("anpr: %s: %r", reason, raw[:64])


def parse_anpr_line(line: bytes) -> str | None:
    """The plate in one line without its terminator, or None when it is not a plate read.

    The plate's own validity (the contract's rule) is `plate_problem`'s to judge.
    """
    try:
        decoded = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    keyword, _, plate = decoded.partition(" ")
    plate = plate.strip()
    if keyword != "PLATE" or not 1 <= len(plate) <= MAX_PLATE_CHARS or any(c.isspace() for c in plate):
        return None
    return plate
