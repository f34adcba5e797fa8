"""Plate camera (ANPR) line protocol: `PLATE <plate>\\r\\n`, UTF-8; pure, bounded, never raises."""

from __future__ import annotations

import logging

log = logging.getLogger("edge.weighbridge")

MAX_LINE = 256


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
            else:
                plates.append(plate)

    def _reject(self, raw: bytes, reason: str) -> None:
        self.errors += 1
        log.warning("anpr: %s: %r", reason, raw[:64])


def parse_anpr_line(line: bytes) -> str | None:
    """The plate in one line without its terminator, or None when it is not a plate read."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    keyword, _, plate = text.partition(" ")
    plate = plate.strip()
    if keyword != "PLATE" or not 1 <= len(plate) <= 16 or any(c.isspace() for c in plate):
        return None
    return plate
