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

`st_gs`: the comma-separated ASCII line of A&D indicators (AD-4403 manual, 8-6 "Data Transmitting
Format") that many Chinese indicators copy in their "ST,GS" stream mode (18 bytes)::

    H1 H1 , H2 H2 , D D D D D D D D U U CR LF          e.g.  ST,GS,+0012340kg\r\n
    H1 = ST stable | US unstable (motion) | OL overload (data then blank-filled)
    H2 = GS gross | NT net | TR tare ("G "/"N "/"T " on some models)
    D  = 8 characters: polarity (+/-), digits, and the decimal point if the display has one
    U  = unit: "kg", " t", " g", "lb", "  " (no unit)

A net line carries no tare: the reading says net without a tare and the workflow refuses it (the
site must send gross); a tare line (TR) is no weight on the deck and is reported as such.

`custom`: a fixed-length frame described by a `FrameSpec` in the site config (start and end
bytes, the weight field's position, a sign byte, decimal places fixed or read from a digit,
digits sent lowest first, a checksum none/xor/sum as a raw byte or two ASCII hex digits), for an
indicator of none of the formats above. The spec is checked when the config loads (a field
outside the frame or over its start/end bytes, a checksum without its position) with the
offending key named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Literal, Protocol

import msgspec

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

LF = 0x0A
FrameFormat = Literal["toledo", "xk3190", "st_gs", "custom"]
KNOWN_FORMATS: tuple[FrameFormat, ...] = ("toledo", "xk3190", "st_gs")
"""The formats a probe can recognise without a spec."""


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


class FrameReader(Protocol):
    """What every format's framer offers: bytes in, readings and errors out, bounded."""

    errors: int

    def feed(self, chunk: bytes) -> list[Item]: ...

    @property
    def buffered(self) -> int: ...


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
        start: int = STX,
    ) -> None:
        self._start = start
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
            start = self._buf.find(self._start)
            if start < 0:
                out.append(self._error(f"{len(self._buf)} bytes of garbage between frames", bytes(self._buf)))
                self._buf.clear()
                break
            if start > 0:
                out.append(self._error(f"{start} bytes of garbage between frames", bytes(self._buf[:start])))
                del self._buf[:start]
            # a start byte inside the fixed part means the frame before it was torn
            body_end = min(len(self._buf), self._length - self._free_tail)
            restart = self._buf.find(self._start, 1, body_end)
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
    fmt: FrameFormat, *, checksum: bool = True, max_buffer: int = 4096, unit: str = "kg",
    spec: FrameSpec | None = None,
) -> FrameReader:
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
    if fmt == "st_gs":
        return LineFramer(parse=parse_st_gs, name="st_gs", max_line=ST_GS_LEN * 4)
    if fmt == "custom":
        if spec is None:
            raise ValueError("format custom needs its frame spec (`frame`)")
        return Framer(
            length=spec.length,
            end_index=spec.length - 1,
            end_byte=spec.end_bytes[-1],
            parse=lambda f: parse_custom(f, spec, unit=unit),
            name="custom",
            free_tail=len(spec.end_bytes) - 1 if spec.checksum_at is None else spec.length - spec.checksum_at,
            max_buffer=max_buffer,
            start=spec.start_bytes[0],
        )
    raise ValueError(f"unknown frame format {fmt!r}")


# --- A&D-style "ST,GS" ASCII lines ----------------------------------------------------------

ST_GS_LEN = 18
ST_GS_UNITS: dict[bytes, str] = {b"kg": "kg", b" t": "t", b" g": "g", b"lb": "lb", b"  ": NO_UNIT}


def parse_st_gs(line: bytes, *, unit: str | None = None) -> Item:
    """Parse one `ST,GS,+0012340kg` line (with its CR LF, or without: both are accepted)."""
    body = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\r\n")
    if len(body) != ST_GS_LEN - 2:
        return FrameError(f"st_gs line of {len(body)} bytes before CR LF, expected {ST_GS_LEN - 2}", line)
    if body[2:3] != b"," or body[5:6] != b",":
        return FrameError("st_gs line without its commas at 3 and 6", line)
    h1, h2, data, unit_field = body[0:2], body[3:5], body[6:14], body[14:16]
    if h1 not in (b"ST", b"US", b"OL"):
        return FrameError(f"st_gs header 1 is not ST/US/OL: {h1!r}", line)
    if h2 in (b"TR", b"T "):
        return FrameError("st_gs tare line (TR), not the weight on the deck", line)
    if h2 not in (b"GS", b"NT", b"G ", b"N "):
        return FrameError(f"st_gs header 2 is not GS/NT/TR: {h2!r}", line)
    if unit_field not in ST_GS_UNITS:
        return FrameError(f"st_gs unit is not kg/t/g/lb: {unit_field!r}", line)
    got_unit = ST_GS_UNITS[unit_field]
    to_kg = UNIT_KG.get(got_unit, 1.0)
    net = h2 in (b"NT", b"N ")
    if h1 == b"OL":
        sign = data[:1]
        return WeightReading(weight_kg=0.0, motion=None, overload=sign != b"-", underrange=sign == b"-",
                             net=net, unit=got_unit, raw=line)
    value = _signed_decimal(data)
    if value is None:
        return FrameError(f"st_gs weight is not a signed decimal: {data!r}", line)
    return WeightReading(weight_kg=round(value * to_kg, 6), motion=h1 == b"US", net=net, unit=got_unit,
                         raw=line)


def _signed_decimal(field: bytes) -> float | None:
    """`+0012340`, `-  12.34`, ` 0012340`: a sign (or blank), digits, at most one point."""
    text = field.decode("ascii", "replace")
    sign, digits = text[:1], text[1:].replace(" ", "0")
    if sign not in "+- " or digits.count(".") > 1 or not digits.replace(".", "").isdigit():
        return None
    if not digits.replace(".", "").isascii():
        return None
    value = float(digits)
    return -value if sign == "-" else value


class LineFramer:
    """Incremental framer for LF-terminated ASCII lines; bounded, `feed` never raises."""

    def __init__(self, *, parse: Callable[[bytes], Item], name: str, max_line: int = 128) -> None:
        self._parse, self._name, self._max_line = parse, name, max_line
        self._buf = bytearray()
        self._discarding = False
        self.errors = 0

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        self._buf += chunk
        while True:
            end = self._buf.find(LF)
            if end < 0:
                if len(self._buf) > self._max_line:
                    if not self._discarding:
                        reason = f"{self._name} line over {self._max_line} bytes"
                        out.append(self._error(reason, bytes(self._buf)))
                    self._buf.clear()
                    self._discarding = True
                return out
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if not line.strip():
                continue
            if len(line) > self._max_line:
                out.append(self._error(f"{self._name} line over {self._max_line} bytes", line))
                continue
            item = self._parse(line)
            if isinstance(item, FrameError):
                self.errors += 1
            out.append(item)

    def _error(self, reason: str, raw: bytes) -> FrameError:
        self.errors += 1
        return FrameError(reason, raw[:MAX_RAW_IN_ERROR])

    @property
    def buffered(self) -> int:
        return len(self._buf)


# --- a configurable fixed frame -------------------------------------------------------------

Offset = Annotated[int, msgspec.Meta(ge=0, le=255)]
HexBytes = Annotated[str, msgspec.Meta(pattern="^(?:[0-9A-Fa-f]{2}){1,2}$")]


class FieldPos(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    offset: Offset
    length: Annotated[int, msgspec.Meta(ge=1, le=16)]


class FrameSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fixed-length indicator frame (config `frame` with `format: custom`); offsets count from
    the start byte (0)."""

    start: HexBytes = "02"
    """The start byte, hex (one byte)."""
    end: HexBytes = "03"
    """The end byte(s), hex (one or two: "03", "0D0A"); they close the frame."""
    length: Annotated[int, msgspec.Meta(ge=3, le=64)]
    """The whole frame, start and end bytes included."""
    weight: FieldPos
    """ASCII digits (a '.' and leading blanks allowed)."""
    sign_at: Offset | None = None
    """A byte '-' (negative) or '+', ' ', '0' (positive); None: always positive."""
    decimals: Annotated[int, msgspec.Meta(ge=0, le=6)] = 0
    """Decimal places when the weight has no '.' and no `decimals_at`."""
    decimals_at: Offset | None = None
    """An ASCII digit with the decimal places (XK3190's P)."""
    digits_reversed: bool = False
    """Digits sent lowest first (Yaohua's tF=1 style)."""
    checksum: Literal["none", "xor", "sum"] = "none"
    checksum_over: FieldPos | None = None
    checksum_at: Offset | None = None
    checksum_encoding: Literal["byte", "hex"] = "byte"
    """`byte`: one raw byte (sum modulo 256); `hex`: two ASCII hex digits, upper case."""

    def __post_init__(self) -> None:
        if len(self.start) != 2:
            raise ValueError("frame.start: one byte (two hex digits)")
        end_at = self.length - len(self.end_bytes)
        fields: dict[str, tuple[int, int]] = {"weight": (self.weight.offset, self.weight.length)}
        if self.sign_at is not None:
            fields["sign_at"] = (self.sign_at, 1)
        if self.decimals_at is not None:
            fields["decimals_at"] = (self.decimals_at, 1)
        if self.checksum != "none":
            if self.checksum_at is None or self.checksum_over is None:
                raise ValueError(f"frame: checksum {self.checksum} needs checksum_at and checksum_over")
            fields["checksum_at"] = (self.checksum_at, 2 if self.checksum_encoding == "hex" else 1)
            over = self.checksum_over
            if over.offset + over.length > self.length:
                raise ValueError(f"frame.checksum_over ends at {over.offset + over.length}, past the frame"
                                 f" of {self.length} bytes")
        elif self.checksum_at is not None or self.checksum_over is not None:
            raise ValueError("frame: checksum_at/checksum_over given but checksum is none")
        for name, (offset, size) in fields.items():
            if offset < 1 or offset + size > end_at:
                raise ValueError(f"frame.{name}: bytes {offset}..{offset + size - 1} are not between the"
                                 f" start byte (0) and the end byte(s) ({end_at}..{self.length - 1})")
        spans = sorted((o, o + n, name) for name, (o, n) in fields.items())
        for (_, a_end, a), (b_start, _, b) in pairwise(spans):
            if b_start < a_end:
                raise ValueError(f"frame: {a} and {b} overlap")

    @property
    def start_bytes(self) -> bytes:
        return bytes.fromhex(self.start)

    @property
    def end_bytes(self) -> bytes:
        return bytes.fromhex(self.end)


def spec_checksum(spec: FrameSpec, frame: bytes) -> bytes:
    """The checksum the spec says `frame` must carry, as it appears in the frame."""
    assert spec.checksum_over is not None
    data = frame[spec.checksum_over.offset : spec.checksum_over.offset + spec.checksum_over.length]
    value = 0
    if spec.checksum == "xor":
        for b in data:
            value ^= b
    else:
        value = sum(data) & 0xFF
    if spec.checksum_encoding == "hex":
        return bytes((_hex_nibble(value >> 4), _hex_nibble(value & 0x0F)))
    return bytes((value,))


def parse_custom(frame: bytes, spec: FrameSpec, *, unit: str = "kg") -> Item:
    """Parse one complete frame of a configured fixed format; `unit` is the one the site pinned."""
    if len(frame) != spec.length:
        return FrameError(f"custom frame of {len(frame)} bytes, expected {spec.length}", frame)
    if frame[:1] != spec.start_bytes or not frame.endswith(spec.end_bytes):
        return FrameError("custom frame without its start/end bytes", frame)
    if spec.checksum != "none":
        assert spec.checksum_at is not None
        want = spec_checksum(spec, frame)
        got = frame[spec.checksum_at : spec.checksum_at + len(want)]
        if got != want:
            return FrameError(f"custom checksum mismatch: got {got!r}, want {want!r}", frame)
    field = frame[spec.weight.offset : spec.weight.offset + spec.weight.length]
    if spec.digits_reversed:
        field = field[::-1]
    text = field.decode("ascii", "replace").lstrip(" ")
    if not text or text.count(".") > 1 or not text.replace(".", "").isdigit() or not text.isascii():
        return FrameError(f"custom weight field is not digits: {field!r}", frame)
    value = float(text)
    if "." not in text:
        places = spec.decimals
        if spec.decimals_at is not None:
            places = frame[spec.decimals_at] - 0x30
            if not 0 <= places <= 6:
                at = spec.decimals_at
                return FrameError(f"custom decimal places is not 0-6: {frame[at : at + 1]!r}", frame)
        value /= 10**places
    negative = False
    if spec.sign_at is not None:
        sign = frame[spec.sign_at : spec.sign_at + 1]
        if sign not in (b"+", b"-", b" ", b"0"):
            return FrameError(f"custom sign is not +/-: {sign!r}", frame)
        negative = sign == b"-"
    value *= UNIT_KG[unit]
    return WeightReading(weight_kg=round(-value if negative else value, 6), motion=None, unit=unit, raw=frame)
