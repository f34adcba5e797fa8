"""Weighbridge simulator: an indicator's continuous serial output plus the plate camera's lines.

The sim's half of the wire is written here from the protocol specs, independently of the edge
parser (edge/devices/weighbridge/frames.py), so each checks the other. Frame formats:

- `toledo`: STX SWA SWB SWC, 6 weight digits, 6 tare digits, CR, optional checksum
  ((-sum) & 0x7F). SWA carries the count-by (dummy zeros/decimal point + x1/x2/x5), SWB the
  net, sign, out-of-range, motion and kg bits.
- `xk3190`: Yaohua XK3190-A9 tF=0: 0x02, sign, 6 digits, decimal places, XOR as 2 hex chars, 0x03.

A visit: the plate line `PLATE <plate>\\r\\n` (UTF-8) on the camera port as the truck enters, a
ramp up (motion bit set), `stable_s` seconds at exactly the gross rounded to the division, a
ramp down, then `gap_s` of idle (0 +/- one division). Incidents per visit: `torn_frame` (half a
frame then a whole one), `bad_checksum` (one corrupted frame), `unstable_capture` (the truck
leaves without settling). `run_weighbridge` returns a ledger of what each visit should produce.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from firmware_sim.pty import PtyPort

Format = Literal["toledo", "xk3190"]
INCIDENTS = frozenset({"torn_frame", "bad_checksum", "unstable_capture"})


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


def corrupt_checksum(frame: bytes, fmt: Format) -> bytes:
    """The same frame with a wrong checksum (Toledo without a checksum byte: a non-digit weight)."""
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
    _rng: random.Random = field(init=False)
    _last_seen: dict[str, float] = field(init=False, default_factory=dict)
    _frames: int = field(init=False, default=0)
    _bad: int = field(init=False, default=0)

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
        if self.anpr is not None:
            assert not isinstance(self.anpr, int)
            self.anpr.write(f"PLATE {v.plate}\r\n".encode())
        steps = max(2, round(self.ramp_s * self.hz))
        ramp = [self._round(gross * i / steps) for i in range(1, steps + 1)]
        for w in ramp[:-1]:
            await self._tick(self.frame(w, motion=True))
        unstable = "unstable_capture" in v.incidents
        hold = 1 if unstable else max(1, round(self.stable_s * self.hz))
        for i in range(hold):
            data = self.frame(gross)
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
        return self._ledger(v, gross, unstable, started, finished)

    def _ledger(
        self, v: TruckVisit, gross: float, unstable: bool, started: datetime, finished: datetime
    ) -> LedgerEntry:
        flags = ["unstable_capture"] if unstable else []
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
) -> list[LedgerEntry]:
    """Create the ptys at `dev_path` (and `anpr_path`), idle `lead_s`, play `visits`, idle until
    `hold` is set (if given: the edge is stopped before the device vanishes), clean up.

    Returns the ledger, one entry per visit; `on_sent` is called as each visit finishes and
    `on_ready` once the ports exist (start the edge agent there, or before: it retries).
    """
    ledger: list[LedgerEntry] = []
    indicator = PtyPort(Path(dev_path))
    camera = PtyPort(Path(anpr_path)) if anpr_path is not None else None
    try:
        sim = WeighbridgeSim(
            indicator,
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
