"""NMEA 0183 RMC/GGA sentence encoding for the truck simulator.

Written without importing the edge parser, so that each checks the other in the tests.
Positions are ddmm.mmmm / dddmm.mmmm with hemisphere letters, speed in knots.
"""

from __future__ import annotations

from datetime import datetime
from functools import reduce

KMH_PER_KNOT = 1.852


def checksum(body: str) -> str:
    """Two upper-case hex digits: XOR of the body's bytes (between `$` and `*`)."""
    return f"{reduce(lambda acc, ch: acc ^ ch, body.encode('ascii'), 0):02X}"


def sentence(body: str) -> bytes:
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def _lat(lat: float) -> tuple[str, str]:
    deg = int(abs(lat))
    minutes = (abs(lat) - deg) * 60.0
    if round(minutes, 4) >= 60.0:  # rounding would print 60.0000 minutes
        deg, minutes = deg + 1, 0.0
    return f"{deg:02d}{minutes:07.4f}", "N" if lat >= 0 else "S"


def _lon(lon: float) -> tuple[str, str]:
    deg = int(abs(lon))
    minutes = (abs(lon) - deg) * 60.0
    if round(minutes, 4) >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f"{deg:03d}{minutes:07.4f}", "E" if lon >= 0 else "W"


def rmc(
    ts: datetime, lat: float | None, lon: float | None, speed_kmh: float, course_deg: float,
    *, valid: bool = True, talker: str = "GN",
) -> bytes:
    """An RMC sentence (NMEA 2.3, with mode); a void one has status V and empty fields."""
    hms, dmy = ts.strftime("%H%M%S") + f".{ts.microsecond // 10000:02d}", ts.strftime("%d%m%y")
    if not valid or lat is None or lon is None:
        return sentence(f"{talker}RMC,{hms},V,,,,,,,{dmy},,,N")
    la, ns = _lat(lat)
    lo, ew = _lon(lon)
    knots = speed_kmh / KMH_PER_KNOT
    return sentence(f"{talker}RMC,{hms},A,{la},{ns},{lo},{ew},{knots:.2f},{course_deg % 360:.1f},{dmy},,,A")


def gga(
    ts: datetime, lat: float | None, lon: float | None, *, valid: bool = True, satellites: int = 9,
    hdop: float = 0.9, altitude_m: float = 95.0, talker: str = "GN",
) -> bytes:
    """A GGA sentence; quality 1 (GPS fix) or 0 (no fix, empty position)."""
    hms = ts.strftime("%H%M%S") + f".{ts.microsecond // 10000:02d}"
    if not valid or lat is None or lon is None:
        return sentence(f"{talker}GGA,{hms},,,,,0,00,99.9,,M,,M,,")
    la, ns = _lat(lat)
    lo, ew = _lon(lon)
    return sentence(
        f"{talker}GGA,{hms},{la},{ns},{lo},{ew},1,{satellites:02d},{hdop:.1f},{altitude_m:.1f},M,-5.2,M,,"
    )


def corrupt_checksum(line: bytes) -> bytes:
    """The same sentence with a wrong checksum (the last hex digit changed)."""
    star = line.rindex(b"*")
    digit = line[star + 2 : star + 3]
    return line[: star + 2] + (b"0" if digit != b"0" else b"1") + line[star + 3 :]


def torn(line: bytes, keep: int) -> bytes:
    """The first `keep` bytes of a sentence and no line end, as when a write is cut short."""
    return line[: max(1, min(keep, len(line) - 3))]
