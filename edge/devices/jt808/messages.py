"""JT/T 808 message bodies the gateway reads and writes (big-endian; STRING is GBK).

Terminal -> platform:
- 0x0002 heartbeat: empty body. 0x0003 logout: empty body.
- 0x0100 register: province WORD, city WORD, maker BYTE[5], model BYTE[20], terminal id BYTE[7]
  (2019: BYTE[11], BYTE[30], BYTE[30]), plate colour BYTE, plate STRING (the rest).
- 0x0102 authenticate: 2013 the auth code STRING (the whole body); 2019 code length BYTE, code,
  IMEI BYTE[15], software version BYTE[20].
- 0x0200 location: alarm DWORD, status DWORD, latitude DWORD, longitude DWORD (degrees x 10^6,
  south / west by status bits 2 / 3), altitude WORD m, speed WORD 0.1 km/h, direction WORD 0-359,
  time BCD[6] YYMMDDhhmmss in GMT+8, then additional items (id BYTE, length BYTE, value).
- 0x0704 batch: count WORD, type BYTE (0 normal, 1 blind-area back-fill 盲区补报), then count x
  (length WORD, a 0x0200 body).

Platform -> terminal: 0x8001 general reply (reply serial WORD, reply id WORD, result BYTE:
0 ok, 1 fail, 2 bad message, 3 unsupported) and 0x8100 register reply (reply serial WORD,
result BYTE: 0 ok, 1 vehicle registered, 2 no such vehicle, 3 terminal registered, 4 no such
terminal; the auth code STRING only on 0).

Decoders return a `BodyError` with the reason instead of raising, like every edge parser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

HEARTBEAT, LOGOUT, REGISTER, AUTHENTICATE, LOCATION, BATCH = 0x0002, 0x0003, 0x0100, 0x0102, 0x0200, 0x0704
TERMINAL_REPLY = 0x0001
GENERAL_REPLY, REGISTER_REPLY = 0x8001, 0x8100

OK, FAIL, BAD_MESSAGE, UNSUPPORTED = 0, 1, 2, 3
REG_OK, REG_NO_VEHICLE, REG_NO_TERMINAL = 0, 2, 4

# status word bits (JT/T 808 table 25)
ST_ACC, ST_POSITIONED, ST_SOUTH, ST_WEST = 1 << 0, 1 << 1, 1 << 2, 1 << 3

# additional items the gateway reads (table 27) and their lengths
ITEM_MILEAGE, ITEM_EXT_SIGNAL, ITEM_IO, ITEM_SIGNAL, ITEM_SATELLITES = 0x01, 0x25, 0x2A, 0x30, 0x31
ITEM_SIZES = {ITEM_MILEAGE: 4, ITEM_EXT_SIGNAL: 4, ITEM_IO: 2, ITEM_SIGNAL: 1, ITEM_SATELLITES: 1}

GMT8 = timezone(timedelta(hours=8))
_LOC = struct.Struct(">IIIIHHH6s")
_REPLY = struct.Struct(">HHB")
_WORD = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class BodyError:
    reason: str


@dataclass(frozen=True, slots=True)
class Location:
    """One 0x0200 body, in the standard's units turned into SI-ish ones."""

    alarm: int
    status: int
    lat: float
    lon: float
    altitude_m: int
    speed_kmh: float
    direction_deg: int
    ts: datetime
    """UTC (the body's time is GMT+8)."""
    items: dict[int, bytes] = field(default_factory=dict)
    """Every additional item, raw, by id (known ids checked for length)."""

    @property
    def positioned(self) -> bool:
        return bool(self.status & ST_POSITIONED)

    @property
    def acc_on(self) -> bool:
        return bool(self.status & ST_ACC)

    def dword(self, item: int) -> int | None:
        raw = self.items.get(item)
        return None if raw is None else int.from_bytes(raw, "big")

    @property
    def mileage_km(self) -> float | None:
        raw = self.dword(ITEM_MILEAGE)
        return None if raw is None else raw / 10


@dataclass(frozen=True, slots=True)
class Batch:
    backfill: bool
    """Type 1: blind-area back-fill (points stored while the terminal had no network)."""
    locations: list[Location]
    errors: list[str]
    """Items that could not be decoded, with the reason (the good ones are kept)."""


@dataclass(frozen=True, slots=True)
class Registration:
    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str


@dataclass(frozen=True, slots=True)
class Authentication:
    code: str
    imei: str = ""
    software: str = ""


def bcd_time(raw: bytes) -> datetime | BodyError:
    """BCD[6] YYMMDDhhmmss in GMT+8 as UTC."""
    text = raw.hex()
    if not text.isdigit():
        return BodyError(f"time is not BCD: {text}")
    try:
        local = datetime(2000 + int(text[0:2]), int(text[2:4]), int(text[4:6]), int(text[6:8]),
                         int(text[8:10]), int(text[10:12]), tzinfo=GMT8)
    except ValueError as exc:
        return BodyError(f"time {text}: {exc}")
    return local.astimezone(UTC)


def to_bcd_time(ts: datetime) -> bytes:
    return bytes.fromhex(ts.astimezone(GMT8).strftime("%y%m%d%H%M%S"))


def decode_location(body: bytes) -> Location | BodyError:
    if len(body) < _LOC.size:
        return BodyError(f"location body of {len(body)} bytes, need at least {_LOC.size}")
    alarm, status, lat_raw, lon_raw, alt, speed, direction, raw_time = _LOC.unpack_from(body)
    if lat_raw > 90_000_000 or lon_raw > 180_000_000:
        return BodyError(f"latitude {lat_raw} / longitude {lon_raw} out of range (x 10^6 degrees)")
    if direction > 359:
        return BodyError(f"direction {direction} out of 0-359")
    ts = bcd_time(raw_time)
    if isinstance(ts, BodyError):
        return ts
    items: dict[int, bytes] = {}
    off, end = _LOC.size, len(body)
    while off < end:
        if off + 2 > end:
            return BodyError(f"additional item header torn at byte {off}")
        item, size = body[off], body[off + 1]
        off += 2
        if off + size > end:
            return BodyError(f"additional item 0x{item:02x} of {size} bytes runs past the body")
        want = ITEM_SIZES.get(item)
        if want is not None and size != want:
            return BodyError(f"additional item 0x{item:02x} has {size} bytes, the standard says {want}")
        items[item] = body[off : off + size]
        off += size
    lat, lon = lat_raw / 1e6, lon_raw / 1e6
    return Location(alarm, status, -lat if status & ST_SOUTH else lat, -lon if status & ST_WEST else lon,
                    alt, speed / 10, direction, ts, items)


def decode_batch(body: bytes) -> Batch | BodyError:
    if len(body) < 3:
        return BodyError(f"batch body of {len(body)} bytes, need at least 3")
    count, kind = _WORD.unpack_from(body)[0], body[2]
    if kind not in (0, 1):
        return BodyError(f"batch type {kind} (0 normal, 1 blind-area back-fill)")
    locations: list[Location] = []
    errors: list[str] = []
    off = 3
    for i in range(count):
        if off + 2 > len(body):
            return BodyError(f"batch says {count} items, the body ends after {i}")
        size = _WORD.unpack_from(body, off)[0]
        off += 2
        if off + size > len(body):
            return BodyError(f"batch item {i} of {size} bytes runs past the body")
        loc = decode_location(body[off : off + size])
        off += size
        if isinstance(loc, BodyError):
            errors.append(f"item {i}: {loc.reason}")
        else:
            locations.append(loc)
    if off != len(body):
        return BodyError(f"batch of {count} items leaves {len(body) - off} bytes over")
    return Batch(kind == 1, locations, errors)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("gbk", errors="replace").strip()


def decode_register(body: bytes, is_2019: bool) -> Registration | BodyError:
    sizes = (11, 30, 30) if is_2019 else (5, 20, 7)
    fixed = 4 + sum(sizes) + 1
    if len(body) < fixed:
        return BodyError(f"register body of {len(body)} bytes, need at least {fixed}")
    province, city = struct.unpack_from(">HH", body)
    a, b = 4 + sizes[0], 4 + sizes[0] + sizes[1]
    c = b + sizes[2]
    return Registration(province, city, _text(body[4:a]), _text(body[a:b]), _text(body[b:c]), body[c],
                        _text(body[c + 1 :]))


def decode_auth(body: bytes, is_2019: bool) -> Authentication | BodyError:
    if not is_2019:
        if not body:
            return BodyError("empty auth code")
        return Authentication(_text(body))
    if not body or len(body) < 1 + body[0] + 35:
        return BodyError(f"2019 auth body of {len(body)} bytes: code length, code, IMEI[15], version[20]")
    n = body[0]
    return Authentication(_text(body[1 : 1 + n]), _text(body[1 + n : 16 + n]), _text(body[16 + n : 36 + n]))


def general_reply(serial: int, msg_id: int, result: int) -> bytes:
    return _REPLY.pack(serial, msg_id, result)


def register_reply(serial: int, result: int, code: str = "") -> bytes:
    body = _WORD.pack(serial) + bytes([result])
    return body + code.encode("gbk") if result == REG_OK else body


# ---- the terminal side (the simulator's twin and the probe's tests use these)


def encode_location(loc: Location) -> bytes:
    lat, lon = round(abs(loc.lat) * 1e6), round(abs(loc.lon) * 1e6)
    status = loc.status | (ST_SOUTH if loc.lat < 0 else 0) | (ST_WEST if loc.lon < 0 else 0)
    body = _LOC.pack(loc.alarm, status, lat, lon, loc.altitude_m, round(loc.speed_kmh * 10),
                     loc.direction_deg % 360, to_bcd_time(loc.ts))
    return body + b"".join(bytes([k, len(v)]) + v for k, v in loc.items.items())


def encode_batch(bodies: list[bytes], backfill: bool) -> bytes:
    return _WORD.pack(len(bodies)) + bytes([1 if backfill else 0]) + b"".join(
        _WORD.pack(len(b)) + b for b in bodies)


def encode_register(plate: str, *, is_2019: bool, maker: str = "WSSIM", model: str = "ws-twin",
                    terminal_id: str = "0000001", colour: int = 2, province: int = 45,
                    city: int = 200) -> bytes:
    sizes = (11, 30, 30) if is_2019 else (5, 20, 7)
    texts = (maker, model, terminal_id)
    fields = [s.encode("ascii")[:n].ljust(n, b"\x00") for s, n in zip(texts, sizes, strict=True)]
    return struct.pack(">HH", province, city) + b"".join(fields) + bytes([colour]) + plate.encode("gbk")


def encode_auth(code: str, *, is_2019: bool, imei: str = "860000000000000", software: str = "1.0") -> bytes:
    raw = code.encode("gbk")
    if not is_2019:
        return raw
    return bytes([len(raw)]) + raw + imei.encode("ascii")[:15].ljust(15, b"\x00") + software.encode(
        "ascii")[:20].ljust(20, b"\x00")
