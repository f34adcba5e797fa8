"""NMEA 0183 GPS sentences: a line framer for serial chunks and an RMC/GGA parser (no I/O).

A GPS receiver on a truck terminal writes ``$TTSSS,f1,f2,...*HH<CR><LF>`` lines at 1 Hz; the
serial port hands them to us in arbitrary chunks, sometimes cut (power dip, buffer overrun,
a second writer on the line). The framer keeps at most one sentence in its buffer; bytes that
cannot belong to a sentence are reported as an `NmeaError` with the reason and it resyncs on
the next ``$``. Nothing here raises on bad input.

Checksum: XOR of every byte between ``$`` and ``*``, written as two hex digits.

Sentences parsed (talker GP = GPS, GN = multi-constellation, BD/GB = BeiDou, GL, GA)::

    RMC  time, status A|V, lat ddmm.mmmm, N|S, lon dddmm.mmmm, E|W, speed kn, course deg,
         date ddmmyy, [magvar, E|W], [mode A|D|E|M|S|N], [nav status]
    GGA  time, lat, N|S, lon, E|W, quality 0-8, satellites, HDOP, altitude, M, ...

A void fix (RMC status V or mode N, GGA quality 0) is a `GpsFix` with ``valid=False``, not an
error: the receiver is working, it just has no position. Other sentences (GSV, VTG, TXT, ...)
are skipped and counted by the reader, they are not errors.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

START = ord("$")
MAX_SENTENCE = 120
"""NMEA allows 82 characters; longer runs without an end of line are garbage (some vendors
exceed 82, hence the margin)."""
MAX_RAW_IN_ERROR = 64
KNOT_KMH = 1.852
KNOWN_TALKERS = frozenset({"GP", "GN", "BD", "GB", "GL", "GA"})
PARSED = frozenset({"RMC", "GGA"})

_HEX2 = re.compile(rb"^[0-9A-Fa-f]{2}$")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
_TIME = re.compile(r"^(\d{2})(\d{2})(\d{2})(\.\d+)?$")
_DATE = re.compile(r"^(\d{2})(\d{2})(\d{2})$")


@dataclass(frozen=True, slots=True)
class GpsFix:
    """One RMC or GGA sentence. Fields a sentence does not carry, or leaves empty, are None."""

    sentence: Literal["RMC", "GGA"]
    talker: str
    valid: bool
    lat: float | None
    lon: float | None
    time_utc: time | None
    date_utc: date | None = None  # RMC only
    speed_kmh: float | None = None  # RMC only
    course_deg: float | None = None  # RMC only
    quality: int | None = None  # GGA only
    satellites: int | None = None  # GGA only
    hdop: float | None = None  # GGA only
    altitude_m: float | None = None  # GGA only
    raw: bytes = b""

    @property
    def timestamp(self) -> datetime | None:
        """UTC date and time; only an RMC sentence carries both."""
        if self.date_utc is None or self.time_utc is None:
            return None
        return datetime.combine(self.date_utc, self.time_utc, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NmeaError:
    """Bytes that did not make a usable sentence; `kind` is the reason without its detail."""

    reason: str
    raw: bytes

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0]


Item = GpsFix | NmeaError


class _FieldError(ValueError):
    pass


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between `$` and `*`."""
    x = 0
    for b in body:
        x ^= b
    return x


def parse_sentence(line: bytes) -> Item | None:
    """Parse one sentence (``$`` .. ``*HH``, line end optional); None for a sentence we skip."""
    line = line.rstrip(b"\r\n")
    raw = line[:MAX_RAW_IN_ERROR]
    if not line.startswith(b"$"):
        return NmeaError("torn sentence: no $ at the start", raw)
    star = line.rfind(b"*")
    if star < 0:
        return NmeaError("missing checksum", raw)
    body, given = line[1:star], line[star + 1 :]
    if not _HEX2.match(given):
        return NmeaError(f"missing checksum: {given[:8]!r} after * is not two hex digits", raw)
    want = nmea_checksum(body)
    if int(given, 16) != want:
        return NmeaError(f"bad checksum: got {given.decode().upper()}, computed {want:02X}", raw)
    if not body.isascii():
        return NmeaError("invalid field: non-ASCII byte in sentence", raw)
    fields = body.decode("ascii").split(",")
    address = fields[0]
    if len(address) != 5 or address[:2] not in KNOWN_TALKERS or address[2:] not in PARSED:
        return None
    try:
        if address[2:] == "RMC":
            return _rmc(address[:2], fields[1:], line)
        return _gga(address[:2], fields[1:], line)
    except _FieldError as exc:
        return NmeaError(f"invalid field: {address} {exc}", raw)


def _rmc(talker: str, f: list[str], raw: bytes) -> GpsFix:
    if len(f) < 9:
        raise _FieldError(f"has {len(f)} fields, RMC needs at least 9")
    status = f[1]
    if status not in ("A", "V"):
        raise _FieldError(f"status {status!r} is not A or V")
    mode = f[11] if len(f) > 11 else ""
    valid = status == "A" and mode != "N"
    lat, lon = _position(f[2], f[3], f[4], f[5], required=valid)
    speed = _number(f[6], "speed")
    course = _number(f[7], "course")
    if course is not None:
        if course > 360.0:
            raise _FieldError(f"course {course} above 360")
        course %= 360.0
    return GpsFix(
        sentence="RMC",
        talker=talker,
        valid=valid,
        lat=lat,
        lon=lon,
        time_utc=_time(f[0], required=valid),
        date_utc=_date(f[8], required=valid),
        speed_kmh=None if speed is None else speed * KNOT_KMH,
        course_deg=course,
        raw=raw,
    )


def _gga(talker: str, f: list[str], raw: bytes) -> GpsFix:
    if len(f) < 9:
        raise _FieldError(f"has {len(f)} fields, GGA needs at least 9")
    quality = _integer(f[5], "fix quality")
    if quality is not None and quality > 8:
        raise _FieldError(f"fix quality {quality} above 8")
    valid = bool(quality)
    lat, lon = _position(f[1], f[2], f[3], f[4], required=valid)
    return GpsFix(
        sentence="GGA",
        talker=talker,
        valid=valid,
        lat=lat,
        lon=lon,
        time_utc=_time(f[0], required=False),
        quality=quality,
        satellites=_integer(f[6], "satellites"),
        hdop=_number(f[7], "HDOP"),
        altitude_m=_signed(f[8], "altitude"),
        raw=raw,
    )


def _position(lat: str, ns: str, lon: str, ew: str, *, required: bool) -> tuple[float | None, float | None]:
    if not (lat or lon) and not required:
        return None, None
    if ns not in ("N", "S") or ew not in ("E", "W"):
        raise _FieldError(f"hemisphere {ns!r}/{ew!r} is not N|S and E|W")
    return _degrees(lat, 90, ns == "S", "latitude"), _degrees(lon, 180, ew == "W", "longitude")


def _degrees(text: str, limit: int, negative: bool, name: str) -> float:
    whole = text.split(".")[0]
    if not _NUMBER.match(text) or len(whole) < 3:
        raise _FieldError(f"{name} {text!r} is not ddmm.mmmm")
    degrees, minutes = int(whole[:-2]), float(text[len(whole) - 2 :])
    if minutes >= 60.0:
        raise _FieldError(f"{name} {text!r} has {minutes} minutes")
    value = degrees + minutes / 60.0
    if value > limit:
        raise _FieldError(f"{name} {value:.6f} beyond {limit} degrees")
    return -value if negative else value


def _time(text: str, *, required: bool) -> time | None:
    if not text and not required:
        return None
    m = _TIME.match(text)
    if not m:
        raise _FieldError(f"time {text!r} is not hhmmss.ss")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    if hh > 23 or mm > 59 or ss > 59:
        raise _FieldError(f"time {text!r} out of range")
    micro = round(float(m[4]) * 1_000_000) if m[4] else 0
    return time(hh, mm, ss, min(micro, 999_999))


def _date(text: str, *, required: bool) -> date | None:
    if not text and not required:
        return None
    m = _DATE.match(text)
    if not m:
        raise _FieldError(f"date {text!r} is not ddmmyy")
    try:
        yy = int(m[3])  # no century on the wire: GPS time starts in 1980, so 80-99 are 19xx
        return date((1900 if yy >= 80 else 2000) + yy, int(m[2]), int(m[1]))
    except ValueError:
        raise _FieldError(f"date {text!r} out of range") from None


def _number(text: str, name: str) -> float | None:
    if not text:
        return None
    if not _NUMBER.match(text):
        raise _FieldError(f"{name} {text!r} is not a non-negative number")
    return float(text)


def _signed(text: str, name: str) -> float | None:
    value = _number(text.removeprefix("-"), name)
    return None if value is None else (-value if text.startswith("-") else value)


def _integer(text: str, name: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not text.isascii() or len(text) > 3:
        raise _FieldError(f"{name} {text!r} is not a small integer")
    return int(text)


class NmeaReader:
    """Feed serial chunks, get fixes and errors. The buffer never holds more than one sentence.

    `stats` counts fixes, skipped sentences (``skipped:GSV``) and errors by kind.
    """

    def __init__(self, *, max_sentence: int = MAX_SENTENCE) -> None:
        self._buf = bytearray()
        self._max = max_sentence
        self._discarding = False  # inside an over-long line: drop to its end
        self.stats: Counter[str] = Counter()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        for b in chunk:
            if b == START:
                if self._buf:
                    self._error(out, "torn sentence: new $ before the end of line", bytes(self._buf))
                self._buf = bytearray(b"$")
                self._discarding = False
            elif b in (0x0D, 0x0A):
                if self._buf:
                    self._line(out, bytes(self._buf))
                    self._buf.clear()
                self._discarding = False
            elif self._discarding:
                continue
            else:
                self._buf.append(b)
                if len(self._buf) > self._max:
                    self._error(
                        out, f"torn sentence: over {self._max} bytes without end of line", bytes(self._buf)
                    )
                    self._buf.clear()
                    self._discarding = True
        return out

    def _line(self, out: list[Item], line: bytes) -> None:
        item = parse_sentence(line)
        if item is None:
            self.stats[f"skipped:{line[3:6].decode('ascii', 'replace')}"] += 1
        elif isinstance(item, NmeaError):
            self.stats[f"error:{item.kind}"] += 1
            out.append(item)
        else:
            self.stats[f"fix:{item.sentence}"] += 1
            out.append(item)

    def _error(self, out: list[Item], reason: str, raw: bytes) -> None:
        err = NmeaError(reason, raw[:MAX_RAW_IN_ERROR])
        self.stats[f"error:{err.kind}"] += 1
        out.append(err)
