"""JT/T 808 terminal twin: a muck truck that dials the edge gateway over TCP, as a 4G terminal does.

`TerminalSim` is one terminal (2013 or 2019 header): it registers (0x0100) unless it has an auth
code, authenticates (0x0102), reports locations (0x0200) and waits for each 0x8001; a report
that is not acked (no network, a refused store) stays in its memory and is sent again as a
blind-area back-fill batch (0x0704 type 1, sub-packaged when longer than one packet) after the
next authentication, as real terminals do. Signals go into the words the vendor profile names.

The twin drives the scenario's trucks whose `terminal` is `jt808` with the same motion model as
the NMEA truck twin (`firmware_sim.truck`), one report per `truck_report_interval_s` simulated
seconds, and writes one edge site per fleet whose jt808 device entries are the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from edge.devices.jt808 import codec
from edge.devices.jt808 import messages as m
from edge.devices.jt808.profile import Bit, Profile, load_profile
from firmware_sim import truck as truck_sim
from firmware_sim.scenario import Scenario, TruckSpec
from firmware_sim.twins.base import HOLD_BUDGET_S, LEAD_S, CityPlan, Ledger, Ready, Twin
from firmware_sim.twins.truck import truck_clock_span_s, truck_record
from wastestream.foundation.settings import load_settings

PROFILE = "ext-signal"
PHONE_BASE = 13_800_000_000
REPLY_TIMEOUT_S = 5.0


def site_id_of(scenario: Scenario, origin: str) -> str:
    """The fleet's gateway site: `fleet-<origin>` as the NMEA twin's, `-jt808` after it when the
    fleet has trucks of both kinds (each kind is its own site then)."""
    mixed = any(t.origin == origin and t.terminal == "nmea" for t in scenario.trucks)
    return f"fleet-{origin}-jt808" if mixed else f"fleet-{origin}"


async def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    """Until a gateway accepts connections on (host, port); TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def phone_of(index: int) -> str:
    return str(PHONE_BASE + index)


@dataclass(frozen=True)
class Signals:
    """What the truck body says: the inputs a terminal's vendor wires to its status bits."""

    lid_closed: bool
    bed_raised: bool
    load_fraction: float
    load_kg: float
    ignition: bool = True


def _set(words: dict[str, int], sig: Bit, on: bool) -> None:
    bit = on if sig.active == "set" else not on
    if bit:
        words[sig.word] = words.get(sig.word, 0) | 1 << sig.bit


def location(profile: Profile, *, ts: datetime, lat: float, lon: float, speed_kmh: float, heading: float,
             signals: Signals, fix: bool = True, mileage_km: float = 0.0) -> m.Location:
    """A 0x0200 point carrying `signals` where `profile` says this vendor puts them."""
    status = (m.ST_ACC if signals.ignition else 0) | (m.ST_POSITIONED if fix else 0)
    words: dict[str, int] = {"status": status}
    f = signals.load_fraction
    state = "full" if f >= 0.75 else "half" if f >= 0.25 else "empty"
    value = next(k for k, v in profile.load.values.items() if v == state)
    words["status"] |= value << profile.load.low_bit
    _set(words, profile.cover_closed, signals.lid_closed)
    _set(words, profile.bed_raised, signals.bed_raised)
    items: dict[int, bytes] = {m.ITEM_MILEAGE: round(mileage_km * 10).to_bytes(4, "big"),
                               m.ITEM_SIGNAL: bytes([25]), m.ITEM_SATELLITES: bytes([12])}
    for word, item, size in (("ext_signal", m.ITEM_EXT_SIGNAL, 4), ("io", m.ITEM_IO, 2)):
        uses = word in (profile.cover_closed.word, profile.bed_raised.word)
        if uses:
            items[item] = words.get(word, 0).to_bytes(size, "big")
    if profile.load_item is not None:
        units = round(signals.load_kg / profile.load_item.kg_per_unit)
        items[profile.load_item.id] = units.to_bytes(4, "big")
    return m.Location(alarm=words.get("alarm", 0), status=words["status"], lat=lat, lon=lon, altitude_m=90,
                      speed_kmh=speed_kmh, direction_deg=round(heading) % 360, ts=ts.replace(microsecond=0),
                      items=items)


@dataclass
class TerminalSim:
    """One simulated terminal; `unacked` holds the bodies of reports the platform did not ack."""

    phone: str
    plate: str
    host: str
    port: int
    is_2019: bool = False
    auth_code: str | None = None
    unacked: list[bytes] = field(default_factory=list)
    results: dict[int, int] = field(default_factory=dict)
    """msg id -> last result the platform answered."""
    _serial: int = 0
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def phone_bcd(self) -> bytes:
        return codec.to_bcd(self.phone, 10 if self.is_2019 else 6)

    def packet(self, msg_id: int, body: bytes, *, total: int = 0, index: int = 0) -> tuple[int, bytes]:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial, codec.encode(msg_id, body, phone_bcd=self.phone_bcd, serial=self._serial,
                                          version=1 if self.is_2019 else None, total=total, index=index)

    async def connect(self) -> bool:
        """Open the connection, register if there is no auth code, authenticate; True when in."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read())
        if self.auth_code is None:
            reply = await self.request(m.REGISTER, m.encode_register(self.plate, is_2019=self.is_2019))
            if reply is None or len(reply) < 3 or reply[2] != m.REG_OK:
                return False
            self.auth_code = reply[3:].decode("gbk")
        reply = await self.request(m.AUTHENTICATE, m.encode_auth(self.auth_code, is_2019=self.is_2019))
        return reply is not None and reply[4] == m.OK

    async def request(self, msg_id: int, body: bytes, *, timeout: float = REPLY_TIMEOUT_S) -> bytes | None:
        """Send one message (sub-packaged when too long) and wait for the reply to its last part."""
        chunks = [body[i : i + codec.MAX_BODY] for i in range(0, len(body), codec.MAX_BODY)] or [b""]
        futures = []
        for i, chunk in enumerate(chunks):
            total = len(chunks) if len(chunks) > 1 else 0
            serial, wire = self.packet(msg_id, chunk, total=total, index=i + 1 if total else 0)
            fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
            self._waiting[serial] = fut
            futures.append(fut)
            assert self._writer is not None
            self._writer.write(wire)
        try:
            assert self._writer is not None
            await self._writer.drain()
            async with asyncio.timeout(timeout):
                replies = [await f for f in futures]
        except (TimeoutError, ConnectionError, OSError):
            return None
        finally:
            for fut in futures:
                fut.cancel()
        _, reply = replies[-1]
        if len(reply) >= 5:
            self.results[msg_id] = reply[4]
        return reply

    async def _read(self) -> None:
        unframer = codec.Unframer()
        assert self._reader is not None
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while chunk := await self._reader.read(4096):
                for pkt in unframer.feed(chunk):
                    if isinstance(pkt, codec.BadPacket) or len(pkt.body) < 2:
                        continue
                    serial = int.from_bytes(pkt.body[:2], "big")
                    fut = self._waiting.pop(serial, None)
                    if fut is not None and not fut.done():
                        fut.set_result((pkt.header.msg_id, pkt.body))
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))

    async def report(self, loc: m.Location) -> bool:
        """Send one point; kept for back-fill unless the platform acks it."""
        body = m.encode_location(loc)
        reply = await self.request(m.LOCATION, body) if self._writer is not None else None
        if reply is None or reply[4] != m.OK:
            self.unacked.append(body)
            return False
        return True

    async def corrupt(self, loc: m.Location) -> None:
        """Send the point with a wrong check code (as a noisy link would); it stays unacked."""
        body = m.encode_location(loc)
        self.unacked.append(body)
        if self._writer is not None:
            _, wire = self.packet(m.LOCATION, body)
            inner = codec.unescape(wire[1:-1]) or b"\x00"
            self._writer.write(b"\x7e" + codec.escape(inner[:-1] + bytes([inner[-1] ^ 0xFF])) + b"\x7e")
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    async def backfill(self) -> int:
        """Send what was not acked as blind-area batches (at most 50 points each); the count acked."""
        sent = 0
        while self.unacked:
            chunk = self.unacked[:50]
            reply = await self.request(m.BATCH, m.encode_batch(chunk, backfill=True))
            if reply is None or reply[4] != m.OK:
                break
            del self.unacked[: len(chunk)]
            sent += len(chunk)
        return sent

    async def heartbeat(self) -> bool:
        reply = await self.request(m.HEARTBEAT, b"")
        return reply is not None and reply[4] == m.OK

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._reader = self._writer = self._task = None


# ------------------------------------------------------------------------------------- the twin


def with_terminals(path: Path, terminal: str | None) -> Path:
    """`path`, or (`terminal` nmea | jt808) a copy of it under $WS_RUN_DIR in which every truck
    has that terminal: the demo's switch between the two ways a truck reports."""
    if terminal is None:
        return path
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for truck in raw.get("trucks") or []:
        truck["terminal"] = terminal
    out = load_settings().run_dir / f"scenario-{path.parent.name}-{terminal}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def jt808_trucks(plan: CityPlan) -> list[TruckSpec]:
    return [t for t in plan.scenario.trucks if t.terminal == "jt808"]


def fleet_site_config(plan: CityPlan, origin: str, trucks: list[TruckSpec]) -> dict[str, Any]:
    """One fleet's edge site: one jt808 device per truck, all on the fleet's gateway port."""
    interval = plan.scenario.rates.truck_report_interval_s
    span = max((truck_clock_span_s(t, plan.duration) for t in trucks), default=0.0)
    index = {t.id: i for i, t in enumerate(plan.scenario.trucks)}
    site = plan.site(site_id_of(plan.scenario, origin))
    return {**site, "clock": {"max_skew_s": round(300 + span)}, "devices": [
        {"id": t.id, "kind": "jt808", "phone": phone_of(index[t.id]), "plate": t.plate, "profile": PROFILE,
         "full_load_kg": t.load_kg, "listen": f"127.0.0.1:{plan.ports[f'jt808-{origin}']}",
         "report_interval_s": round(max(0.5, interval / t.time_scale), 3)}
        for t in trucks]}


async def run_terminal(plan: CityPlan, spec: TruckSpec, index: int, ledger: Ledger) -> int:
    """One truck for LEAD_S + duration real seconds; returns the points the gateway acked.

    Incidents as the NMEA twin's, in JT/T 808 terms: `uncovered` opens the cover, `gps_loss`
    clears the fix bit, `bad_checksum` and `torn_sentence` corrupt each report's check code
    (the gateway discards it, the terminal back-fills it after its next login)."""
    scale = spec.time_scale
    lead = LEAD_S * scale
    profile = load_profile(PROFILE)
    interval = max(1, round(plan.scenario.rates.truck_report_interval_s))
    rng = random.Random(plan.scenario.seed + index)
    dump_outside = next((truck_sim.Incident(kind=i.kind, at_s=i.at_s, duration_s=i.duration_s,
                                            at_fraction=i.at_fraction, drop_fraction=i.drop_fraction)
                         for i in spec.incidents if i.kind == "dump_outside"), None)
    hold = HOLD_BUDGET_S * scale if plan.hold is not None else 0.0  # drives on, its clock that much earlier
    start = datetime.now(UTC) - timedelta(seconds=truck_clock_span_s(spec, plan.duration) + hold)
    term = TerminalSim(phone_of(index), spec.plate, "127.0.0.1", plan.ports[f"jt808-{spec.origin}"],
                       is_2019=index % 2 == 1)
    loop = asyncio.get_running_loop()
    t0, acked, mileage = loop.time(), 0, 0.0
    last: tuple[bool, bool, bool] | None = None
    steps = int((LEAD_S + plan.duration) * scale + hold)
    windows = [i for i in spec.incidents if i.kind != "dump_outside"]
    try:
        for t, state in enumerate(truck_sim._trips(spec, rng, dump_outside)):
            if t >= steps:
                break
            active = {i.kind for i in windows if i.at_s + lead <= t < i.at_s + lead + i.duration_s}
            if "uncovered" in active:
                state = replace(state, lid_closed=False)
            mileage += state.speed_kmh / 3600
            signals = (state.lid_closed, state.bed_raised, state.ignition)
            changed, last = signals != last, signals  # a change is reported at once, as terminals do
            if t % interval == 0 or changed:
                if not term.connected:
                    with contextlib.suppress(OSError):
                        if await term.connect():
                            acked += await term.backfill()
                        else:
                            await term.close()
                loc = location(profile, ts=start + timedelta(seconds=t), lat=state.lat, lon=state.lon,
                               fix="gps_loss" not in active,
                               speed_kmh=state.speed_kmh, heading=state.heading_deg, mileage_km=mileage,
                               signals=Signals(state.lid_closed, state.bed_raised,
                                               state.load_kg / spec.load_kg, state.load_kg, state.ignition))
                if active & {"bad_checksum", "torn_sentence"}:
                    await term.corrupt(loc)
                else:
                    acked += await term.report(loc)
            if state.dump is not None:
                ledger.write(truck_record(site_id_of(plan.scenario, spec.origin), spec, truck_sim.LedgerEntry(
                    kind=state.dump, start_s=t, start_ts=start + timedelta(seconds=t), lat=state.lat,
                    lon=state.lon), None))
            await asyncio.sleep(max(0.0, t0 + (t + 1) / scale - loop.time()))
    finally:
        await term.close()
    return acked


class Jt808Twin(Twin):
    kind = "jt808"

    def tcp_devices(self, scenario: Scenario) -> list[str]:
        """One gateway port per fleet with JT/T 808 trucks."""
        return sorted({f"jt808-{t.origin}" for t in scenario.trucks
                       if t.terminal == "jt808"})

    def site_configs(self, plan: CityPlan) -> list[dict[str, Any]]:
        fleets: dict[str, list[TruckSpec]] = {}
        for t in jt808_trucks(plan):
            fleets.setdefault(t.origin, []).append(t)
        return [fleet_site_config(plan, origin, trucks) for origin, trucks in fleets.items()]

    def runs(self, plan: CityPlan, ledger: Ledger, ready: Ready) -> list[Awaitable[Any]]:
        index = {t.id: i for i, t in enumerate(plan.scenario.trucks)}
        return [run_terminal(plan, t, index[t.id], ledger) for t in jt808_trucks(plan)]

    def describe(self, results: list[Any]) -> str:
        return f"{len(results)} JT/T 808 terminals ({sum(results)} points acked)"
