"""Weighbridge indicator continuous-output framers: bytes in, readings or errors out (no I/O).

A serial port hands us arbitrary chunks: half frames, several frames, line noise. A framer
buffers only from the latest start byte onward, so its buffer never exceeds one frame; any
byte it throws away is reported as a `FrameError` with the reason. It never raises.

Mettler Toledo continuous output (17 bytes, 18 with the checksum)::

    STX SWA SWB SWC  D D D D D D  T T T T T T  CR  [CHK]
    CHK = (-(sum of STX..CR)) & 0x7F   (2's complement of the 7-bit sum)

Status bits (bit 7 is parity on 7-bit lines, so every byte is masked to 7 bits), from the
indicator manuals' "standard continuous output" tables (status bytes A, B and C)::

    SWA bits 0-2  decimal point / dummy zeros: 0 XXXX00, 1 XXXXX0, 2 XXXXXX, 3 XXXXX.X,
                  4 XXXX.XX, 5 XXX.XXX, 6 XX.XXXX, 7 X.XXXXX
    SWA bits 3-4  increment size: 1 -> x1, 2 -> x2, 3 -> x5 (0 is invalid)
    SWA bit 5     always 1; bit 6 always 0
    SWB bit 0     net (1) / gross (0): in net mode the weight field is the NET (gross - tare)
    SWB bit 1     negative (1)
    SWB bit 2     out of range (1): with the sign bit it is an under-range, else an overload
    SWB bit 3     motion (1)
    SWB bit 4     kg (1) / lb (0), when SWC bits 0-2 are 000
    SWB bit 5     always 1
    SWB bit 6     powered up, not zeroed (1)
    SWC bits 0-2  unit: 000 lb or kg (SWB bit 4), 001 g, 010 t, 011 oz, others: no weight unit
    SWC bit 3     print request; SWC bit 4 expanded display (x10); SWC bit 5 always 1

The parser reports what the frame says (net, overload, motion, unit, expanded) and converts
to kg; whether such a reading may make a ticket is the workflow's decision
(edge/devices/weighbridge/workflow.py), against the unit the site pinned.

Leading spaces in the weight/tare fields are read as zeros (some indicators blank them).

Yaohua XK3190-A9 `tF=0` continuous frame (12 bytes)::

    0x02  sign('+'|'-')  D D D D D D  P  XH XL  0x03
    P = number of decimal places ('0'..'4'); XH XL = XOR of sign..P as two ASCII hex nibbles
    (0-9 -> '0'-'9', 10-15 -> 'A'-'F'). The weight is what the indicator displays, gross or net
    ("当前称量(或净)"): the frame says neither which, nor the unit (kg or t, set on the
    indicator), nor motion or range. So the site pins the unit (config `unit`, applied here)
    and must run the indicator in gross mode: the edge cannot tell a net display apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

STX = 0x02
ETX = 0x03
CR = 0x0D
LB_KG = 0.45359237
UNIT_KG: dict[str, float] = {"kg": 1.0, "lb": LB_KG, "g": 0.001, "t": 1000.0, "oz": LB_KG / 16}
"""kg per unit an indicator can report (avoirdupois pound and ounce)."""
NO_UNIT = "none"
"""`unit` of a Toledo reading whose SWC unit code names no weight unit (its weight_kg is unscaled)."""
SWC_UNITS: dict[int, str] = {0b001: "g", 0b010: "t", 0b011: "oz"}
MAX_RAW_IN_ERROR = 64
"""Dropped runs are summarised: the error carries at most this many of the dropped bytes."""

FrameFormat = Literal["toledo", "xk3190"]


@dataclass(frozen=True, slots=True)
class WeightReading:
    """One displayed weight, in kg, with what the indicator said about it.

    `motion` is None when the format has no motion bit. `net`: the weight is the net the
    indicator displays and `tare_kg` its tare (gross = weight + tare). `unit` is the unit the
    indicator reported (or, for a format without one, the unit the site pinned).
    """

    weight_kg: float
    motion: bool | None
    overload: bool = False
    underrange: bool = False
    net: bool = False
    tare_kg: float | None = None
    division_kg: float | None = None
    unit: str = "kg"
    expanded: bool = False
    raw: bytes = b""

    @property
    def gross_kg(self) -> float:
        """The load on the deck: the displayed weight, plus the indicator's tare in net mode."""
        if self.net and self.tare_kg is not None:
            return round(self.weight_kg + self.tare_kg, 6)
        return self.weight_kg


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that did not make a valid frame, and why."""

    reason: str
    raw: bytes


Item = WeightReading | FrameError


def toledo_checksum(data: bytes) -> int:
    return (-sum(data)) & 0x7F


def xk3190_checksum(body: bytes) -> bytes:
    x = 0
    for b in body:
        x ^= b
    return bytes((_hex_nibble(x >> 4), _hex_nibble(x & 0x0F)))


def _hex_nibble(n: int) -> int:
    return 0x30 + n if n < 10 else 0x41 + n - 10


def _digits(field: bytes) -> int | None:
    text = field.decode("ascii", "replace").lstrip(" ")
    if not text:
        return 0
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def parse_toledo(frame: bytes, *, checksum: bool = True) -> Item:
    """Parse one complete Toledo frame (STX..CR[CHK])."""
    size = 18 if checksum else 17
    if len(frame) != size:
        return FrameError(f"toledo frame of {len(frame)} bytes, expected {size}", frame)
    if frame[0] != STX or frame[16] != CR:
        return FrameError("toledo frame without STX/CR at its ends", frame)
    if checksum and toledo_checksum(frame[:17]) != frame[17] & 0x7F:
        return FrameError(
            f"toledo checksum mismatch: got 0x{frame[17]:02X}, want 0x{toledo_checksum(frame[:17]):02X}",
            frame,
        )
    swa, swb, swc = (b & 0x7F for b in frame[1:4])
    if not swa & 0x20 or not swb & 0x20 or not swc & 0x20:
        return FrameError("toledo status word without its always-1 bit 5", frame)
    inc_code = (swa >> 3) & 0x03
    if inc_code == 0:
        return FrameError("toledo status word A has no increment size", frame)
    weight, tare = (
        _digits(bytes(b & 0x7F for b in frame[4:10])),
        _digits(bytes(b & 0x7F for b in frame[10:16])),
    )
    if weight is None:
        return FrameError(f"toledo weight field is not digits: {frame[4:10]!r}", frame)
    if tare is None:
        return FrameError(f"toledo tare field is not digits: {frame[10:16]!r}", frame)
    exponent = 2 - (swa & 0x07)  # code 0 -> x100 ... code 7 -> x1e-5
    scale = 10.0**exponent
    unit_code = swc & 0x07  # 000: lb or kg by SWB bit 4
    unit = ("kg" if swb & 0x10 else "lb") if unit_code == 0 else SWC_UNITS.get(unit_code, NO_UNIT)
    to_kg = UNIT_KG.get(unit, 1.0)
    negative = bool(swb & 0x02)
    out_of_range = bool(swb & 0x04)
    value = weight * scale * to_kg
    return WeightReading(
        weight_kg=round(-value if negative else value, 6),
        motion=bool(swb & 0x08),
        overload=out_of_range and not negative,
        underrange=out_of_range and negative,
        net=bool(swb & 0x01),
        tare_kg=round(tare * scale * to_kg, 6),
        division_kg=round((1, 2, 5)[inc_code - 1] * scale * to_kg, 6),
        unit=unit,
        expanded=bool(swc & 0x10),
        raw=frame,
    )


def parse_xk3190(frame: bytes, *, unit: str = "kg") -> Item:
    """Parse one complete XK3190-A9 tF=0 frame (12 bytes); `unit` is the one the site pinned."""
    if len(frame) != 12:
        return FrameError(f"xk3190 frame of {len(frame)} bytes, expected 12", frame)
    if frame[0] != STX or frame[11] != ETX:
        return FrameError("xk3190 frame without STX/ETX at its ends", frame)
    body = frame[1:9]
    if xk3190_checksum(body) != frame[9:11]:
        return FrameError(
            f"xk3190 checksum mismatch: got {frame[9:11]!r}, want {xk3190_checksum(body)!r}", frame
        )
    sign = frame[1:2]
    if sign not in (b"+", b"-"):
        return FrameError(f"xk3190 sign is not +/-: {sign!r}", frame)
    weight = _digits(frame[2:8])
    if weight is None or b" " in frame[2:8]:
        return FrameError(f"xk3190 weight field is not digits: {frame[2:8]!r}", frame)
    places = frame[8] - 0x30
    if not 0 <= places <= 4:
        return FrameError(f"xk3190 decimal places is not 0-4: {frame[8:9]!r}", frame)
    value = weight / 10**places * UNIT_KG[unit]
    return WeightReading(
        weight_kg=round(-value if sign == b"-" else value, 6), motion=None, unit=unit, raw=frame
    )


class Framer:
    """Incremental framer for fixed-length STX-started frames; `feed` never raises."""

    def __init__(
        self,
        *,
        length: int,
        end_index: int,
        end_byte: int,
        parse: Callable[[bytes], Item],
        name: str,
        free_tail: int = 0,
        max_buffer: int = 4096,
    ) -> None:
        self._length = length
        self._end_index = end_index
        self._end_byte = end_byte
        self._parse = parse
        self._name = name
        self._free_tail = free_tail  # trailing bytes that may hold any value (a checksum)
        self._max_buffer = max(max_buffer, 2 * length)
        self._buf = bytearray()
        self.errors = 0

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        self._buf += chunk
        if len(self._buf) > self._max_buffer:  # only reachable with a huge chunk: drop oldest
            cut = len(self._buf) - self._max_buffer
            out.append(
                self._error(f"buffer over {self._max_buffer} bytes, dropped {cut}", bytes(self._buf[:cut]))
            )
            del self._buf[:cut]
        while self._buf:
            start = self._buf.find(STX)
            if start < 0:
                out.append(self._error(f"{len(self._buf)} bytes of garbage between frames", bytes(self._buf)))
                self._buf.clear()
                break
            if start > 0:
                out.append(self._error(f"{start} bytes of garbage between frames", bytes(self._buf[:start])))
                del self._buf[:start]
            # a start byte inside the fixed part means the frame before it was torn
            body_end = min(len(self._buf), self._length - self._free_tail)
            restart = self._buf.find(STX, 1, body_end)
            if restart > 0:
                out.append(
                    self._error(f"torn {self._name} frame ({restart} bytes)", bytes(self._buf[:restart]))
                )
                del self._buf[:restart]
                continue
            if len(self._buf) < self._length:
                break
            frame = bytes(self._buf[: self._length])
            if frame[self._end_index] != self._end_byte:
                out.append(
                    self._error(f"{self._name} frame without its end byte", frame[: self._end_index + 1])
                )
                del self._buf[:1]
                continue
            del self._buf[: self._length]
            item = self._parse(frame)
            if isinstance(item, FrameError):
                self.errors += 1
            out.append(item)
        return out

    def _error(self, reason: str, raw: bytes) -> FrameError:
        self.errors += 1
        return FrameError(reason, raw[:MAX_RAW_IN_ERROR])

    @property
    def buffered(self) -> int:
        return len(self._buf)


def make_framer(
    fmt: FrameFormat, *, checksum: bool = True, max_buffer: int = 4096, unit: str = "kg"
) -> Framer:
    """The framer for a device's configured `format` (`checksum` applies to Toledo only, `unit`
    to XK3190 only: its frame carries none; a Toledo frame says its unit itself)."""
    if fmt == "toledo":
        return Framer(
            length=18 if checksum else 17,
            end_index=16,
            end_byte=CR,
            parse=lambda f: parse_toledo(f, checksum=checksum),
            name="toledo",
            free_tail=1 if checksum else 0,
            max_buffer=max_buffer,
        )
    if fmt == "xk3190":
        return Framer(
            length=12,
            end_index=11,
            end_byte=ETX,
            parse=lambda f: parse_xk3190(f, unit=unit),
            name="xk3190",
            max_buffer=max_buffer,
        )
    raise ValueError(f"unknown frame format {fmt!r}")
