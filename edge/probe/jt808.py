"""`wastestream edge probe --jt808 :PORT`: accept JT/T 808 terminals and print what they say.

For the installer pointing a truck's terminal at the edge box: every terminal that dials in is
printed (phone, header edition, peer, what it registered as: maker, model, terminal id, plate),
then each location it reports decoded through a vendor profile (`--profile`), and every packet
the gateway discards with its reason. Any phone number is accepted and any auth code taken
(the probe has no registry). Reports are answered "fail" (result 1) unless `--ack`: a terminal
then keeps them and back-fills them to the real platform later, so probing loses no data.
Nothing is stored. Stops after `--seconds` (default: at Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from contract.events import TruckTelemetry
from edge.devices.jt808 import gateway as gw
from edge.devices.jt808 import messages as m
from edge.devices.jt808.driver import parse_listen
from edge.devices.jt808.profile import Profile, ProfileError, load_profile

Say = Callable[[str], None]


class ProbeTerminal(gw.Terminal):
    """A terminal the probe met: prints its reports, takes any auth code, stores nothing."""

    def __init__(self, phone: str, profile: Profile, say: Say, ack: bool) -> None:
        super().__init__(device_id=f"probe-{phone}", site_id="probe", phone=phone, plate="?",
                         profile=profile, full_load_kg=1.0)
        self.say, self.ack = say, ack
        self.code: str | None = None
        self.locations = 0
        self._extras: list[str] = []

    def telemetry(self, loc: m.Location) -> TruckTelemetry:
        """Also note what the contract has no field for: mileage, signal strength, satellites."""
        mileage, sats = loc.mileage_km, loc.items.get(m.ITEM_SATELLITES)
        signal_ = loc.items.get(m.ITEM_SIGNAL)
        self._extras.append(" ".join(part for part in (
            f"alarm=0x{loc.alarm:08x}" if loc.alarm else "",
            f"mileage={mileage:.1f}km" if mileage is not None else "",
            f"signal={signal_[0]}" if signal_ else "", f"satellites={sats[0]}" if sats else "",
            f"items={','.join(f'0x{k:02x}' for k in sorted(loc.items))}" if loc.items else "") if part))
        return super().telemetry(loc)

    async def store(self, events: list[TruckTelemetry]) -> bool:
        self.locations += len(events)
        extras, self._extras = self._extras, []
        for i, e in enumerate(events):  # telemetry() made them in this order
            extra = extras[i] if i < len(extras) else ""
            load = "full" if e.load_kg >= 1 else "half" if e.load_kg > 0 else "empty"
            self.say(f"{self.phone}: location {e.ts.isoformat()} {e.lat:.6f},{e.lon:.6f} "
                     f"{e.speed_kmh:.1f} km/h {e.heading_deg:.0f}° fix={'yes' if e.gps_fix else 'no'} "
                     f"acc={'on' if e.ignition else 'off'} load={load} "
                     f"cover={'closed' if e.lid_closed else 'open'} "
                     f"bed={'raised' if e.bed_raised else 'down'} {extra} "
                     f"({'acked' if self.ack else 'answered fail: the terminal keeps it'})")
        return self.ack

    def auth_code(self, *, create: bool) -> str | None:
        if self.code is None and create:
            self.code = f"probe{self.phone[-6:]}"
        return self.code

    def is_plate(self, plate: str) -> bool:
        return True  # printed, not checked

    def check_code(self, code: str) -> str | None:
        return None  # the probe has no registry: any code is taken (and printed)

    def forget_auth(self) -> None:
        self.code = None


def observer(say: Say) -> gw.Observer:
    def seen(what: str, term: gw.Terminal, conn: gw.Connection, detail: object) -> None:
        if isinstance(detail, m.Registration):
            say(f"{term.phone}: registered from {conn.peer[6:]}: maker {detail.maker!r} "
                f"model {detail.model!r} terminal id {detail.terminal_id!r} plate {detail.plate!r} "
                f"(colour {detail.plate_colour}), "
                f"province {detail.province} city {detail.city}")
        elif isinstance(detail, m.Authentication):
            extra = f" IMEI {detail.imei} software {detail.software!r}" if detail.imei else ""
            say(f"{term.phone}: authenticated with code {detail.code!r}{extra}")
        else:
            say(f"{term.phone}: {what}")

    return seen


class _Say(logging.Handler):
    """The gateway's own lines (connections, discarded packets with their reasons) to the output."""

    def __init__(self, say: Say) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(record.getMessage().replace("probe-", ""))


async def probe(listen: str, profile: Profile, *, seconds: float | None, ack: bool, say: Say) -> gw.Stats:
    host, port = parse_listen(listen)
    terminals: dict[str, gw.Terminal] = {}

    def lookup(phone: str) -> gw.Terminal:
        return terminals.setdefault(phone, ProbeTerminal(phone, profile, say, ack))

    gateway = gw.Gateway(host, port, lookup, observer=observer(say))
    handler = _Say(say)
    logger = logging.getLogger(gw.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, on the probe's own output
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        say(f"probe: JT/T 808 on {host}:{gateway.bound_port}, profile {profile.name}; "
            f"reports {'acked' if ack else 'answered fail (kept by the terminal)'}; Ctrl-C stops")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
    finally:
        await gateway.close()
        logger.removeHandler(handler)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    s = gateway.stats
    seen = sum(t.locations for t in terminals.values() if isinstance(t, ProbeTerminal))
    say(f"probe: {len(terminals)} terminal(s), {s.connections} connection(s), {seen} location(s); "
        f"discarded: {dict(s.refused) or 'none'}")
    return s


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wastestream edge probe --jt808",
                                description=__doc__.splitlines()[0])
    p.add_argument("--jt808", required=True, metavar="[HOST]:PORT",
                   help="where to listen (:PORT: every interface)")
    p.add_argument("--profile", default="ext-signal",
                   help="vendor profile for load/cover/bed (name or .yaml)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--ack", action="store_true", help="answer reports ok (the terminal then drops them)")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        profile = load_profile(a.profile)
        parse_listen(a.jt808)
    except (ProfileError, ValueError) as exc:
        print(f"probe --jt808: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(probe(a.jt808, profile, seconds=a.seconds, ack=a.ack, say=say))
    except OSError as exc:
        print(f"probe --jt808: cannot listen on {a.jt808}: {exc}", file=sys.stderr)
        return 1
    return 0
