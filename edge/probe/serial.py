"""`wastestream edge probe --serial /dev/ttyUSB0`: find a weighbridge indicator's line settings and
format, then print its live weights.

An installer seldom knows how the scale house set the indicator. The probe listens at each usual
baud rate (9600, 4800, 2400, 1200, 19200, or `--baud`), in 8N1 and then 7E1 (the other common
framing; a port that cannot be set so, such as a pty, is skipped for it), for `--listen` seconds,
and feeds what it hears to every known continuous format's framer (edge/devices/weighbridge/frames.py:
Toledo with and without its checksum byte, Yaohua XK3190-A9, the A&D-style `ST,GS` line). A
format is recognised when it decodes at least `MIN_READINGS` weights and far more weights than
errors; the best score wins. Then the probe prints the weights as they come (on change, and once
a second while steady) for `--watch` seconds (0: until Ctrl-C), with the format and line
settings to put into the site config. Exit 0 when recognised, 1 when nothing was, 2 on a bad
port or arguments. A custom frame (format custom) cannot be guessed: the probe says so.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import serial

from edge.devices.weighbridge.frames import FrameError, FrameReader, WeightReading, make_framer

BAUDS = (9600, 4800, 2400, 1200, 19200)
FRAMINGS: tuple[tuple[int, str, int], ...] = ((8, "N", 1), (7, "E", 1))
MIN_READINGS = 3
CANDIDATES: dict[str, Callable[[], FrameReader]] = {
    "toledo": lambda: make_framer("toledo", checksum=True),
    "toledo (no checksum byte)": lambda: make_framer("toledo", checksum=False),
    "xk3190": lambda: make_framer("xk3190"),
    "st_gs": lambda: make_framer("st_gs"),
}
CONFIG_OF: dict[str, str] = {
    "toledo": "format: toledo, checksum: true",
    "toledo (no checksum byte)": "format: toledo, checksum: false",
    "xk3190": "format: xk3190",
    "st_gs": "format: st_gs",
}


@dataclass
class Score:
    name: str
    readings: list[WeightReading] = field(default_factory=list)
    errors: int = 0

    @property
    def recognised(self) -> bool:
        return len(self.readings) >= MIN_READINGS and self.errors * 4 <= len(self.readings)

    @property
    def value(self) -> int:
        return len(self.readings) - 2 * self.errors


def classify(data: bytes) -> list[Score]:
    """How well each known format reads `data`, best first (pure: the probe's decision)."""
    scores = []
    for name, make in CANDIDATES.items():
        framer = make()
        score = Score(name)
        for item in framer.feed(data):
            if isinstance(item, FrameError):
                score.errors += 1
            else:
                score.readings.append(item)
        scores.append(score)
    return sorted(scores, key=lambda s: s.value, reverse=True)


def _open(port: str, baud: int, framing: tuple[int, str, int]) -> serial.Serial:
    bytesize, parity, stopbits = framing
    return serial.Serial(port, baud, bytesize=bytesize, parity=parity, stopbits=stopbits, timeout=0.1)


def listen(ser: serial.Serial, seconds: float) -> bytes:
    ser.reset_input_buffer()
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(data) < 1_000_000:
        data += ser.read(max(1, ser.in_waiting))
    return bytes(data)


def describe(r: WeightReading) -> str:
    state = "overload" if r.overload else "underrange" if r.underrange else (
        "motion" if r.motion else "stable" if r.motion is False else "-")
    mode = "net" if r.net else "gross"
    tare = f" tare {r.tare_kg:g}" if r.net and r.tare_kg is not None else ""
    return f"{r.weight_kg:>10g} kg  {state:<8} {mode}{tare}  (indicator unit {r.unit})"


def watch(ser: serial.Serial, fmt: str, seconds: float, out: TextIO) -> int:
    """Print live weights: on every change, and once a second while steady; the readings printed."""
    framer = CANDIDATES[fmt]()
    deadline = None if seconds <= 0 else time.monotonic() + seconds
    last: tuple[float, bool | None] | None = None
    last_print, printed, errors = 0.0, 0, 0
    while deadline is None or time.monotonic() < deadline:
        chunk = ser.read(max(1, ser.in_waiting))
        for item in framer.feed(chunk):
            if isinstance(item, FrameError):
                errors += 1
                print(f"  frame error: {item.reason}", file=out)
                continue
            now = time.monotonic()
            key = (item.weight_kg, item.motion)
            if key != last or now - last_print >= 1.0:
                print(f"  {time.strftime('%H:%M:%S')} {describe(item)}", file=out, flush=True)
                last, last_print, printed = key, now, printed + 1
    print(f"{printed} weights shown, {errors} frame errors", file=out)
    return printed


def probe(port: str, bauds: Sequence[int], listen_s: float, watch_s: float, out: TextIO) -> int:
    heard_any = False
    for baud in bauds:
        for framing in FRAMINGS:
            setting = f"{baud} {framing[0]}{framing[1]}{framing[2]}"
            try:
                ser = _open(port, baud, framing)
            except (serial.SerialException, OSError, ValueError, termios.error) as exc:
                if framing == FRAMINGS[0]:
                    print(f"cannot open {port}: {exc}", file=sys.stderr)
                    return 2
                print(f"{setting}: the port cannot be set so ({exc}); skipped", file=out)
                continue
            with ser:
                data = listen(ser, listen_s)
                heard_any |= bool(data)
                best = classify(data)[0]
                if not best.recognised:
                    seen = f"{len(data)} bytes" if data else "nothing"
                    print(f"{setting}: {seen}; no known format (best {best.name}: {len(best.readings)} "
                          f"weights, {best.errors} errors)", file=out, flush=True)
                    continue
                print(f"{setting}: recognised {best.name}: {len(best.readings)} weights, {best.errors}"
                      f" errors in {listen_s:g} s", file=out)
                print(f"site config: baudrate: {baud}, bytesize: {framing[0]}, parity: {framing[1]}, "
                      f"stopbits: {framing[2]}, {CONFIG_OF[best.name]}", file=out)
                print(f"latest: {describe(best.readings[-1])}", file=out, flush=True)
                with contextlib.suppress(KeyboardInterrupt):  # the installer has seen enough
                    watch(ser, best.name, watch_s, out)
                return 0
    if not heard_any:
        print(f"no data on {port} at any speed: check the cable, the port and that the indicator's "
              "continuous output (连续发送) is on", file=out)
    else:
        print("data heard but no known format: a custom frame? describe it with `format: custom` and "
              "`frame:` (edge/devices/weighbridge/frames.py FrameSpec)", file=out)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wastestream edge probe --serial",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--serial", required=True, metavar="PORT",
                        help="the indicator's port, e.g. /dev/ttyUSB0")
    parser.add_argument("--baud", type=int, action="append", help=f"try only these (default {BAUDS})")
    parser.add_argument("--listen", type=float, default=2.0, help="seconds per setting (default 2)")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds of live weights, 0: until Ctrl-C")
    args = parser.parse_args(argv)
    if args.listen <= 0:
        parser.error("--listen must be positive")
    return probe(args.serial, args.baud or BAUDS, args.listen, args.watch, sys.stdout)
