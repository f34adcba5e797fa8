"""Weighbridge simulator: an indicator's continuous serial output plus the plate camera's lines.

The sim's half of the wire is written here from the protocol specs, independently of the edge
parser (edge/devices/weighbridge/frames.py), so each checks the other. Frame formats:

- `toledo`: STX SWA SWB SWC, 6 weight digits, 6 tare digits, CR, optional checksum
  ((-sum) & 0x7F). SWA carries the count-by (dummy zeros/decimal point + x1/x2/x5), SWB the
  net, sign, out-of-range, motion and kg bits.
- `xk3190`: Yaohua XK3190-A9 tF=0: 0x02, sign, 6 digits, decimal places, XOR as 2 hex chars, 0x03.
- `st_gs`: the A&D-style ASCII line `ST,GS,+0012340kg\\r\\n` (US while in motion).

A visit: the plate line `PLATE <plate>\\r\\n` (UTF-8) on the camera port as the truck enters (or,
with `camera_url`, the camera's HTTP push: an `AlarmInfoPlate` JSON POST as the plate cameras'
push protocol writes it), a ramp up (motion bit set), `stable_s` seconds at exactly the gross
rounded to the division, a ramp down, then `gap_s` of idle (0 +/- one division). Incidents per
visit: `torn_frame` (half a frame then a whole one), `bad_checksum` (one corrupted frame),
`unstable_capture` (the truck leaves without settling), `remote_jump` (遥控作弊: after `stable_s`
at the true gross the weight steps by `remote_jump_kg` in one frame, no motion, and holds
`stable_s` more: what a remote-controlled resistor in the load-cell cable does). `run_weighbridge`
returns a ledger of what each visit should produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import termios
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from firmware_sim.pty import PtyPort

BEIJING = timezone(timedelta(hours=8))

Format = Literal["toledo", "xk3190", "st_gs"]
INCIDENTS = frozenset({"torn_frame", "bad_checksum", "unstable_capture", "remote_jump"})
REMOTE_JUMP_KG = 2000.0
"""The step a simulated remote control adds (a typical cheat: two tonnes, one frame)."""


class Writer(Protocol):
    def write(self, data: bytes) -> int: ...


class FdWriter:
    """A raw file descriptor (a pty master) as a Writer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0


class LineSpeedGate:
    """A pty that behaves like a serial line at one baud rate: while the reader's port is set to
    another speed (seen on the master: Linux ptys share the termios speeds), what it reads is
    garbage, as a UART sampling at the wrong rate sees. For `probe --serial` tests."""

    def __init__(self, port: PtyPort, baudrate: int) -> None:
        self.port, self.baudrate = port, baudrate
        self._speed = getattr(termios, f"B{baudrate}")

    def write(self, data: bytes) -> int:
        try:
            speed = termios.tcgetattr(self.port.master_fd)[5]
        except termios.error:
            speed = self._speed
        if speed != self._speed:
            data = bytes(((b * 37) ^ 0x5A) & 0xFF for b in data)
        return self.port.write(data)


# --- encoders -----------------------------------------------------------------------------

_DIVISION_STEPS = {1: 1, 2: 2, 5: 3}  # x1/x2/x5 -> SWA bits 3-4


def toledo_count_by(division_kg: float) -> tuple[int, int]:
    """(SWA decimal code, SWA increment code) for a division such as 20 kg = x2 with one dummy zero."""
    for exponent in range(2, -6, -1):
        for step, inc_code in _DIVISION_STEPS.items():
            if abs(step * 10.0**exponent - division_kg) < 1e-9:
                return 2 - exponent, inc_code
    raise ValueError(f"division {division_kg} kg is not 1, 2 or 5 times a power of ten")


def encode_toledo(
    weight_kg: float,
    *,
    division_kg: float = 20.0,
    motion: bool = False,
    net: bool = False,
    tare_kg: float = 0.0,
    overload: bool = False,
    checksum: bool = True,
) -> bytes:
    dec_code, inc_code = toledo_count_by(division_kg)
    unit = 10.0 ** (2 - dec_code)
    swa = 0x20 | (inc_code << 3) | dec_code
    swb = 0x20 | 0x10 | (0x01 if net else 0) | (0x02 if weight_kg < 0 else 0)
    swb |= (0x04 if overload else 0) | (0x08 if motion else 0)
    swc = 0x20
    digits = f"{round(abs(weight_kg) / unit):06d}"[-6:]
    tare = f"{round(abs(tare_kg) / unit):06d}"[-6:]
    frame = bytes([0x02, swa, swb, swc]) + digits.encode() + tare.encode() + b"\r"
    if checksum:
        frame += bytes([(0x80 - (sum(frame) & 0x7F)) & 0x7F])
    return frame


def encode_xk3190(weight_kg: float, *, decimals: int = 0) -> bytes:
    sign = "-" if weight_kg < 0 else "+"
    body = f"{sign}{round(abs(weight_kg) * 10**decimals):06d}{decimals}".encode()
    xor = 0
    for b in body:
        xor ^= b
    hexchars = "0123456789ABCDEF"
    return b"\x02" + body + (hexchars[xor >> 4] + hexchars[xor & 0xF]).encode() + b"\x03"


def encode_st_gs(weight_kg: float, *, motion: bool = False) -> bytes:
    """`ST,GS,+0012340kg\\r\\n`: stability, gross, polarity and 7 digits, kg, CR LF."""
    sign = "-" if weight_kg < 0 else "+"
    return f"{'US' if motion else 'ST'},GS,{sign}{round(abs(weight_kg)):07d}kg\r\n".encode()


def alarm_info_plate(
    plate: str, at: datetime, plateid: int, *, color: int = 2, confidence: int = 95
) -> bytes:
    """One plate camera push body (`AlarmInfoPlate.result.PlateResult`), written from the push
    protocol's field table: `license`, `colorType` (2 yellow: trucks), `confidence`, the frame
    time as `timeStamp.Timeval` (Unix `sec`/`usec`, `dec*` in Beijing time), `plateid`."""
    local = at.astimezone(BEIJING)
    timeval = {"decyear": local.year, "decmon": local.month, "decday": local.day, "dechour": local.hour,
               "decmin": local.minute, "decsec": local.second, "sec": int(at.timestamp()),
               "usec": at.microsecond}
    result = {"license": plate, "colorType": color, "confidence": confidence, "triggerType": 1, "type": 4,
              "plateid": plateid, "isoffline": 0, "timeStamp": {"Timeval": timeval}}
    return json.dumps({"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "ipaddr": "127.0.0.1",
                                          "serialno": "sim-00000001", "result": {"PlateResult": result}}},
                      ensure_ascii=False).encode()


async def post_plate(url: str, body: bytes, timeout_s: float = 5.0) -> int:
    """POST one push body to the edge as a camera does; the HTTP status (0: no answer)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head + body)
            await writer.drain()
            status = await reader.readline()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return 0
    fields = status.split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def corrupt_checksum(frame: bytes, fmt: Format) -> bytes:
    """The same frame with a wrong checksum (Toledo without a checksum byte, or an st_gs line that
    has none: a non-digit weight)."""
    if fmt == "st_gs":
        return frame[:8] + b"?" + frame[9:]
    if fmt == "xk3190":
        wrong = b"00" if frame[9:11] != b"00" else b"11"
        return frame[:9] + wrong + frame[11:]
    if len(frame) == 18:
        return frame[:17] + bytes([(frame[17] + 1) & 0x7F])
    return frame[:6] + b"?" + frame[7:]


# --- visits and ledger --------------------------------------------------------------------


@dataclass(frozen=True)
class TruckVisit:
    """One truck crossing the bridge; `tare_kg`/`rated_gross_kg` mirror the site's vehicle registry."""

    plate: str
    gross_kg: float
    tare_kg: float = 0.0
    rated_gross_kg: float | None = None
    incidents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.incidents) - INCIDENTS
        if unknown:
            raise ValueError(f"unknown incidents {sorted(unknown)}; known: {sorted(INCIDENTS)}")


@dataclass(frozen=True)
class LedgerEntry:
    """What the sim sent for one visit and the ticket the edge should make of it."""

    visit: TruckVisit
    gross_kg: float
    tare_kg: float
    net_kg: float
    stable: bool
    flags: tuple[str, ...]
    started: datetime
    finished: datetime
    frames: int = 0
    bad_frames: int = 0


@dataclass
class WeighbridgeSim:
    """Writes continuous frames to `indicator` and plate lines to `anpr` (writers or raw fds)."""

    indicator: Writer | int
    anpr: Writer | int | None
    fmt: Format = "toledo"
    division_kg: float = 20.0
    checksum: bool = True
    hz: float = 10.0
    stable_s: float = 2.5
    ramp_s: float = 2.0
    gap_s: float = 1.0
    double_weigh_window_s: float = 600.0
    seed: int = 0
    camera_url: str | None = None
    """Push plates to this URL (the edge's anpr_http) instead of writing lines to `anpr`."""
    remote_jump_kg: float = REMOTE_JUMP_KG
    _rng: random.Random = field(init=False)
    _last_seen: dict[str, float] = field(init=False, default_factory=dict)
    _frames: int = field(init=False, default=0)
    _bad: int = field(init=False, default=0)
    _plateid: int = field(init=False, default=0)
    _posts: set[asyncio.Task[int]] = field(init=False, default_factory=set)
    posted: list[int] = field(init=False, default_factory=list)
    """HTTP statuses of the plate pushes, in order."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if isinstance(self.indicator, int):
            self.indicator = FdWriter(self.indicator)
        if isinstance(self.anpr, int):
            self.anpr = FdWriter(self.anpr)

    def frame(self, weight_kg: float, motion: bool = False) -> bytes:
        if self.fmt == "toledo":
            return encode_toledo(
                weight_kg, division_kg=self.division_kg, motion=motion, checksum=self.checksum
            )
        if self.fmt == "st_gs":
            return encode_st_gs(weight_kg, motion=motion)
        return encode_xk3190(weight_kg)

    def _round(self, w: float) -> float:
        return round(w / self.division_kg) * self.division_kg

    async def _tick(self, data: bytes) -> None:
        assert not isinstance(self.indicator, int)
        self.indicator.write(data)
        self._frames += 1
        await asyncio.sleep(1.0 / self.hz)

    async def idle(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds * self.hz))):
            noise = self._rng.choice((-self.division_kg, 0.0, 0.0, self.division_kg))
            await self._tick(self.frame(noise))

    async def visit(self, v: TruckVisit) -> LedgerEntry:
        started = datetime.now(UTC)
        self._frames = self._bad = 0
        gross = self._round(v.gross_kg)
        self._announce(v.plate)
        steps = max(2, round(self.ramp_s * self.hz))
        ramp = [self._round(gross * i / steps) for i in range(1, steps + 1)]
        for w in ramp[:-1]:
            await self._tick(self.frame(w, motion=True))
        unstable = "unstable_capture" in v.incidents
        hold = 1 if unstable else max(1, round(self.stable_s * self.hz))
        jump_at = hold if "remote_jump" in v.incidents and not unstable else None
        if jump_at is not None:
            hold *= 2  # the true gross for stable_s, then the jumped weight for stable_s
        shown = gross
        for i in range(hold):
            if i == jump_at:
                shown = self._round(gross + self.remote_jump_kg)
            data = self.frame(shown)
            if i == hold // 3 and "torn_frame" in v.incidents:
                data = data[: len(data) // 2] + data
                self._bad += 1
            if i == hold // 2 and "bad_checksum" in v.incidents:
                data = corrupt_checksum(data, self.fmt)
                self._bad += 1
            await self._tick(data)
        for w in reversed(ramp[:-1]):
            await self._tick(self.frame(w, motion=True))
        await self.idle(self.gap_s)
        finished = datetime.now(UTC)
        return self._ledger(v, shown, unstable, started, finished)

    def _announce(self, plate: str) -> None:
        """The camera reads the plate as the truck drives on: a line, or an HTTP push in the background."""
        if self.camera_url is not None:
            self._plateid += 1
            body = alarm_info_plate(plate, datetime.now(UTC), self._plateid)
            task = asyncio.get_running_loop().create_task(post_plate(self.camera_url, body))
            self._posts.add(task)
            task.add_done_callback(self._posted)
        elif self.anpr is not None:
            assert not isinstance(self.anpr, int)
            self.anpr.write(f"PLATE {plate}\r\n".encode())

    def _posted(self, task: asyncio.Task[int]) -> None:
        self._posts.discard(task)
        if not task.cancelled():
            self.posted.append(task.result())

    def _ledger(
        self, v: TruckVisit, gross: float, unstable: bool, started: datetime, finished: datetime
    ) -> LedgerEntry:
        flags = ["unstable_capture"] if unstable else []
        if "remote_jump" in v.incidents and not unstable:
            flags.append("remote_jump")
        if v.rated_gross_kg is not None and gross > v.rated_gross_kg:
            flags.append("over_rating")
        tare = v.tare_kg
        if tare > gross:
            flags.append("tare_deviation")
            tare = gross
        now = finished.timestamp()
        last = self._last_seen.get(v.plate)
        if last is not None and now - last <= self.double_weigh_window_s:
            flags.append("double_weighing")
        self._last_seen[v.plate] = now
        return LedgerEntry(
            visit=v,
            gross_kg=gross,
            tare_kg=tare,
            net_kg=gross - tare,
            stable=not unstable,
            flags=tuple(flags),
            started=started,
            finished=finished,
            frames=self._frames,
            bad_frames=self._bad,
        )


async def run_weighbridge(
    dev_path: str | os.PathLike[str],
    anpr_path: str | os.PathLike[str] | None,
    fmt: Format,
    visits: Sequence[TruckVisit],
    *,
    hz: float = 10.0,
    stable_s: float = 2.5,
    gap_s: float = 1.0,
    ramp_s: float = 2.0,
    lead_s: float = 1.0,
    division_kg: float = 20.0,
    checksum: bool = True,
    double_weigh_window_s: float = 600.0,
    seed: int = 0,
    on_sent: Callable[[LedgerEntry], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    hold: asyncio.Event | None = None,
    camera_url: str | None = None,
    line_baudrate: int | None = None,
) -> list[LedgerEntry]:
    """Create the ptys at `dev_path` (and `anpr_path`), idle `lead_s`, play `visits`, idle until
    `hold` is set (if given: the edge is stopped before the device vanishes), clean up.

    Returns the ledger, one entry per visit; `on_sent` is called as each visit finishes and
    `on_ready` once the ports exist (start the edge agent there, or before: it retries).
    `camera_url`: the plate camera pushes HTTP there instead of a line pty (no `anpr_path` needed).
    `line_baudrate`: the indicator's line speed; a reader at another speed reads garbage.
    """
    ledger: list[LedgerEntry] = []
    indicator = PtyPort(Path(dev_path))
    camera = PtyPort(Path(anpr_path)) if anpr_path is not None else None
    try:
        sim = WeighbridgeSim(
            indicator if line_baudrate is None else LineSpeedGate(indicator, line_baudrate),
            camera,
            fmt,
            division_kg=division_kg,
            checksum=checksum,
            hz=hz,
            stable_s=stable_s,
            ramp_s=ramp_s,
            gap_s=gap_s,
            double_weigh_window_s=double_weigh_window_s,
            seed=seed,
            camera_url=camera_url,
        )
        if on_ready is not None:
            on_ready()
        await sim.idle(lead_s)
        for v in visits:
            entry = await sim.visit(v)
            ledger.append(entry)
            if on_sent is not None:
                on_sent(entry)
        while hold is not None and not hold.is_set():
            await sim.idle(0.5)
    finally:
        indicator.close()
        if camera is not None:
            camera.close()
    return ledger
