"""`wastestream edge probe --modbus HOST:PORT --profile NAME`: read a Modbus device through a vendor
profile and print what the edge would make of it.

An installer wiring a sorting station or a truck's I/O module wants to know, before the site
config goes live, that the unit id, the line and the profile agree with the device. The probe reads
the profile's tables (`--count` times, every `--interval` s; 0: until Ctrl-C) over Modbus TCP
(`HOST:PORT`) or RTU (`--modbus /dev/ttyUSB0 --baudrate 9600`) and prints, per read, the decoded
values (a station's counter, bins, doors and the drops in its ring; a truck's switches and load)
and every reason a value was refused. `--raw` also prints each read as a register dump
(`edge/devices/profiles/dump.py`) to send to the vendor; household cards are masked in it and are
never printed decoded (a card is shown as "card" or "anonymous"). Exit 0 when every read decoded,
1 when the device did not answer or a read was refused, 2 on bad arguments or profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

import yaml
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from edge.devices.profiles import KINDS, ProfileError, load_profile, profile_names, profile_path
from edge.devices.profiles.dump import format_dump
from edge.devices.profiles.fields import Block, Image
from edge.devices.profiles.reader import Client, ModbusReadError, read_image
from edge.devices.sorting_station.registers import StationMap, StationSnapshot, station_map
from edge.devices.truck.io_module import IoError, IoMap, io_map
from wastestream.foundation.cliutil import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, parser

Decoder = StationMap | IoMap


def _args(argv: Sequence[str]) -> argparse.Namespace:
    p = parser("wastestream edge probe --modbus", "read a Modbus device through a vendor profile")
    p.add_argument("--modbus", required=True, metavar="HOST:PORT|TTY",
                   help="Modbus TCP HOST:PORT (PORT defaults to 502), or a serial port for RTU")
    p.add_argument("--profile", required=True,
                   help="a shipped profile's name or a profile file (wastestream schema --profile KIND)")
    p.add_argument("--kind", choices=sorted(KINDS), help="the profile's kind, when a name has several")
    p.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    p.add_argument("--count", type=int, default=3, help="reads to make (default 3; 0: until Ctrl-C)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reads (default 1)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer (default 2)")
    p.add_argument("--baudrate", type=int, default=9600, help="RTU line speed (default 9600)")
    p.add_argument("--parity", choices=["N", "E", "O"], default="N", help="RTU parity (default N)")
    p.add_argument("--raw", action="store_true", help="also print each read as a register dump")
    return p.parse_args(list(argv))


def resolve(profile: str, kind: str | None) -> tuple[str, Decoder]:
    """(kind, decoder) of a profile name or file; ProfileError says which kinds a name is ambiguous in."""
    if kind is None:
        if "/" in profile or profile.endswith((".yaml", ".yml")):
            try:
                text = profile_path("sorting_station", profile).read_text("utf-8")
                kind = str(yaml.safe_load(text)["kind"])
            except (OSError, yaml.YAMLError, TypeError, KeyError) as exc:
                raise ProfileError(f"{profile}: cannot tell its kind ({exc})") from None
        else:
            kinds = [k for k in KINDS if profile in profile_names(k)]
            if len(kinds) != 1:
                shipped = "; ".join(f"{k}: {', '.join(profile_names(k))}" for k in KINDS)
                raise ProfileError(f"{profile} is a profile of {' and '.join(kinds) or 'no kind'}: "
                                   f"give --kind (shipped: {shipped})")
            kind = kinds[0]
    load_profile(kind, profile)
    return kind, (station_map(profile) if kind == "sorting_station" else io_map(profile))


def make_client(target: str, args: argparse.Namespace) -> tuple[Client, str]:
    """A pymodbus client for `HOST:PORT` (TCP) or a tty path (RTU), and how to name it."""
    if target.startswith("/"):
        return AsyncModbusSerialClient(target, framer=FramerType.RTU, baudrate=args.baudrate,
                                       parity=args.parity, timeout=args.timeout, retries=0,
                                       reconnect_delay=0), f"RTU {target} {args.baudrate} 8{args.parity}1"
    host, _, port = target.rpartition(":") if ":" in target else (target, "", "502")
    return AsyncModbusTcpClient(host or "127.0.0.1", port=int(port), timeout=args.timeout, retries=0,
                                reconnect_delay=0), f"TCP {host or '127.0.0.1'}:{port}"


def describe_station(snap: StationSnapshot) -> list[str]:
    """A station poll as lines; cards are never shown (raw household ids)."""
    if not snap.usable:
        return [f"  refused: {'; '.join(snap.problems)}"]
    lines = [f"  epoch {snap.epoch}, drop counter {snap.counter} (ring of {snap.ring_size})"]
    for b in snap.bins:
        fill = "?" if b.fill_pct is None else f"{b.fill_pct:.1f} %"
        door = "-" if b.door is None else b.door.name.lower()
        total = f"{b.total_g / 1000:.3f} kg"
        lines.append(f"  bin {b.bin.value:<11} fill {fill:>8}  door {door:<6}  total {total}")
    for back in range(min(snap.ring_size, snap.counter)):
        seq = (snap.counter - back) % snap.counter_mod
        s = snap.slot_for(seq)
        if s.seq != seq:
            lines.append(f"  drop {seq}: its slot holds drop {s.seq}")
            continue
        if s.problem or s.bin is None or s.verdict is None or s.source is None:
            lines.append(f"  {s.problem}")
            continue
        who = "anonymous" if not s.card else "card"
        lines.append(f"  drop {seq}: {s.bin.value} {s.weight_g / 1000:.3f} kg, {s.verdict.value} "
                     f"({s.source.value}), {who}")
    lines += [f"  problem: {p}" for p in snap.problems]
    return lines


def _masked(decoder: Decoder, image: Image) -> Image:
    """The image with every card register that holds something replaced by `**`."""
    if not isinstance(decoder, StationMap):
        return image
    tables = {fn: list(b.values) for fn, b in image.items()}
    for fields in decoder.slots:
        p = fields.get("card")
        if p is not None:
            start = image[p.function].start
            for addr in range(p.address, p.address + p.width):
                if tables[p.function][addr - start]:
                    tables[p.function][addr - start] = 0x2A2A
    return {fn: Block(image[fn].start, v) for fn, v in tables.items()}


async def probe(args: argparse.Namespace, out: TextIO) -> int:
    """The probe itself (`main` runs it); returns the exit code."""
    try:
        kind, decoder = resolve(args.profile, args.kind)
    except ProfileError as exc:
        print(f"probe --modbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client, where = make_client(args.modbus, args)
    name = decoder.profile.profile
    reads = ", ".join(f"{fn} {s}..{s + n - 1}" for fn, (s, n) in decoder.spans.items())
    print(f"{where}, unit {args.unit}: {kind} profile {name} ({decoder.profile.vendor}, "
          f"{decoder.profile.model}); reads {reads}", file=out)
    failed = False
    try:
        if not await client.connect():
            print(f"cannot connect to {where}", file=out)
            return EXIT_FAILURE
        n = 0
        while args.count == 0 or n < args.count:
            if n:
                await asyncio.sleep(args.interval)
            n += 1
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            try:
                image = await read_image(client, args.unit, decoder.spans)
            except (ModbusReadError, ModbusException, OSError) as exc:
                hint = " (illegal data address: the device has no such registers; another model's profile?)" \
                    if "exception_code=2" in str(exc) else ""
                print(f"read {n} at {stamp}: no answer: {exc}{hint}", file=out)
                failed = True
                continue
            print(f"read {n} at {stamp}:", file=out)
            if isinstance(decoder, StationMap):
                snap = decoder.decode(image)
                failed |= not snap.usable
                print("\n".join(describe_station(snap)), file=out)
            else:
                reading = decoder.decode(image)
                if isinstance(reading, IoError):
                    failed = True
                    print(f"  refused: {reading.reason}", file=out)
                else:
                    print(f"  lid {'closed' if reading.lid_closed else 'OPEN'}, bed "
                          f"{'RAISED' if reading.bed_raised else 'down'}, ignition "
                          f"{'on' if reading.ignition else 'off'}, load {reading.load_kg:.0f} kg", file=out)
            if args.raw:
                print(format_dump(name, _masked(decoder, image)), end="", file=out)
            out.flush()
    finally:
        client.close()
    return EXIT_FAILURE if failed else EXIT_OK


def main(argv: Sequence[str]) -> int:
    args = _args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(probe(args, sys.stdout))
    return EXIT_INTERRUPTED
