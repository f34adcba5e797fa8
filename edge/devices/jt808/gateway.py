"""The platform side of JT/T 808: one asyncio TCP server shared by every terminal on its port.

Terminals dial in; each is known by its phone number (the header's BCD) and must be in the
registry (`lookup`): an unknown number is answered 0x8100 "no such terminal" (register) or
0x8001 "fail" and the connection is closed. A known terminal registers (0x0100 -> 0x8100 with
its auth code, kept in the outbox's state so it survives restarts) and authenticates (0x0102)
before anything it reports is taken: a report on an unauthenticated connection is answered
"fail" and not stored. A second authenticated connection of the same terminal (it reconnected)
replaces the first, which is closed.

A location (0x0200) or batch (0x0704, also blind-area back-fill) becomes `truck_telemetry`
events through the terminal's vendor profile, and is answered 0x8001 "ok" only once
`Terminal.store` returns, i.e. the edge outbox holds the events (the terminal keeps and re-sends
what is not acked, so an upstream outage loses nothing); "fail" when the outbox refused them.
A point seen again (a re-send whose ack was lost) is acked and not stored twice.

Sub-packages are reassembled per connection (at most `MAX_PENDING` messages of at most
`MAX_PARTS` parts, for `REASSEMBLY_S`) and answered, part by part, once the whole message is
handled. Every discarded packet or body is logged with its reason as
``"<device id or peer>: ..."``, which the agent keeps as that device's `last_error` in its
device_status (the edge's dead-letter path for device input), and counted in `Stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from contract.events import TruckTelemetry
from edge.devices.jt808 import codec
from edge.devices.jt808 import messages as m
from edge.devices.jt808.profile import Profile, read

log = logging.getLogger(__name__)

MAX_PARTS = 128
MAX_PENDING = 4
REASSEMBLY_S = 60.0
LOGIN_S = 60.0
"""A connection that has not authenticated within this is closed (no idle sockets from strangers)."""
MAX_AUTH_FAILURES = 3
LOG_FIRST_BAD = 10
"""Bad packets of one connection logged one by one; after that one line per 100 (no log flood)."""
DEDUP_POINTS = 1024
MAX_SPEED_KMH = 200.0  # the contract's bound


@dataclass
class Stats:
    """What the gateway saw; the bench and the probe read it."""

    connections: int = 0
    open: int = 0
    reports: int = 0
    """Points stored (0x0200 bodies, alone or in batches)."""
    backfilled: int = 0
    duplicates: int = 0
    acks: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Discarded input by reason kind (the reason up to its first colon)."""


class Terminal(ABC):
    """One terminal the gateway accepts: its identity, vendor profile and where its events go."""

    def __init__(self, *, device_id: str, site_id: str, phone: str, plate: str, profile: Profile,
                 full_load_kg: float) -> None:
        self.device_id, self.site_id, self.phone, self.plate = device_id, site_id, phone, plate
        self.profile, self.full_load_kg = profile, full_load_kg
        self.session: Connection | None = None
        self.executor: Executor | None = None
        """Where blocking work (the outbox) runs: the gateway's, set when the terminal is attached."""
        self._recent: OrderedDict[tuple[object, ...], None] = OrderedDict()
        self._cover: bool | None = None
        self._bed: bool | None = None
        self._load_kg = 0.0
        self._warned: set[str] = set()

    @abstractmethod
    async def store(self, events: list[TruckTelemetry]) -> bool:
        """Keep the events (True once they are safe: then the report is acked)."""

    @abstractmethod
    def auth_code(self, *, create: bool) -> str | None:
        """The terminal's auth code; with `create`, make and keep one if it has none."""

    @abstractmethod
    def forget_auth(self) -> None:
        """The terminal logged out (0x0003): its code is void; it must register again."""

    def is_plate(self, plate: str) -> bool:
        """The plate a terminal registers with is the registry's (an empty one is not checked)."""
        return plate == self.plate

    def check_code(self, code: str) -> str | None:
        """None when `code` authenticates this terminal, else why not."""
        mine = self.auth_code(create=False)
        if mine is None:
            return "not registered"
        return None if hmac.compare_digest(code.encode(), mine.encode()) else "wrong auth code"

    def alive(self) -> None:  # noqa: B027 - optional: a probe's terminal has no health to feed
        """A packet from this terminal arrived."""

    @staticmethod
    def _key(loc: m.Location) -> tuple[object, ...]:
        return (loc.ts, loc.lat, loc.lon, loc.status, loc.alarm, loc.speed_kmh, loc.direction_deg)

    def seen(self, loc: m.Location) -> bool:
        """True when this point was stored before (a re-send whose ack was lost)."""
        return self._key(loc) in self._recent

    def remember(self, points: list[m.Location]) -> None:
        """These points are stored: a re-send of one is acked, not stored again."""
        for loc in points:
            self._recent[self._key(loc)] = None
        while len(self._recent) > DEDUP_POINTS:
            self._recent.popitem(last=False)

    def telemetry(self, loc: m.Location) -> TruckTelemetry:
        """The contract event for one point, through the vendor profile; a signal missing from
        the report keeps its last value (logged once: usually a profile that does not fit)."""
        r = read(self.profile, loc)
        if r.cover_closed is None or r.bed_raised is None:
            self._warn_once("signal", "%s: cover/bed item missing from a report (profile %s): "
                            "last value kept", self.device_id, self.profile.name)
        self._cover = r.cover_closed if r.cover_closed is not None else bool(self._cover)
        self._bed = r.bed_raised if r.bed_raised is not None else bool(self._bed)
        if r.load_kg is not None:
            self._load_kg = min(r.load_kg, 10 * self.full_load_kg)
        elif r.load is not None:
            fraction = {"empty": 0.0, "half": self.profile.load.half_fraction, "full": 1.0}[r.load]
            self._load_kg = fraction * self.full_load_kg
        else:
            self._warn_once("load", "%s: load bits %s are not in profile %s: last load kept",
                            self.device_id, bin(loc.status >> self.profile.load.low_bit & 3),
                            self.profile.name)
        fix = loc.positioned
        return TruckTelemetry(
            msg_id="", device_id=self.device_id, site_id=self.site_id, ts=loc.ts, plate=self.plate,
            lat=loc.lat, lon=loc.lon, speed_kmh=min(loc.speed_kmh, MAX_SPEED_KMH) if fix else 0.0,
            lid_closed=self._cover, bed_raised=self._bed, load_kg=round(self._load_kg, 1),
            ignition=loc.acc_on, heading_deg=float(loc.direction_deg), gps_fix=fix)

    def _warn_once(self, key: str, fmt: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(fmt, *args)


Lookup = Callable[[str], "Terminal | None"]
_NUMBER = re.compile(r"0x[0-9a-f]+|[0-9]+")


def _kind(reason: str) -> str:
    """A reason's kind for the counters: up to its colon, numbers as N (a bounded set of keys)."""
    return _NUMBER.sub("N", reason.split(":", 1)[0])[:80]


@dataclass
class _Pending:
    started: float
    parts: dict[int, tuple[int, bytes]]
    """index -> (serial, body)"""


class Connection:
    """One TCP connection from a terminal; packets are handled one at a time, in order."""

    def __init__(self, gw: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gw, self.reader, self.writer = gw, reader, writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"jt808 {peer[0]}:{peer[1]}"
        self.terminal: Terminal | None = None
        self.authed = False
        self.closed = False
        self._serial = 0
        self._bad = 0
        self._auth_failures = 0
        self._pending: dict[tuple[int, int, int], _Pending] = {}

    @property
    def label(self) -> str:
        return self.terminal.device_id if self.terminal is not None else self.peer

    async def run(self) -> None:
        unframer = codec.Unframer()
        try:
            while not self.closed:
                timeout = self.gw.idle_s if self.authed else LOGIN_S
                try:
                    async with asyncio.timeout(timeout):
                        chunk = await self.reader.read(4096)
                except TimeoutError:
                    log.info("%s: silent for %.0f s (%s): closed", self.label, timeout,
                             "authenticated" if self.authed else "never authenticated")
                    break
                if not chunk:
                    tail = unframer.close()
                    if tail is not None:
                        self.bad(tail.reason)
                    break
                for item in unframer.feed(chunk):
                    if isinstance(item, codec.BadPacket):
                        self.bad(item.reason, item.raw)
                    else:
                        await self.packet(item)
                    if self.closed:
                        break
                if not self.closed:
                    await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("%s: connection lost: %s", self.label, exc)
        finally:
            self.close()

    def bad(self, reason: str, raw: bytes = b"") -> None:
        self._bad += 1
        self.gw.stats.refused[_kind(reason)] += 1
        if self._bad <= LOG_FIRST_BAD or self._bad % 100 == 0:
            log.warning("%s: discarded (%s)%s%s", self.label, reason, f": {raw.hex()}" if raw else "",
                        f" [{self._bad} so far]" if self._bad > LOG_FIRST_BAD else "")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.gw.stats.open -= 1
        term = self.terminal
        if term is not None and term.session is self:
            term.session = None
        with contextlib.suppress(Exception):
            self.writer.close()

    def send(self, header: codec.Header, msg_id: int, body: bytes) -> None:
        if self.closed:
            return
        self._serial = (self._serial + 1) & 0xFFFF
        self.writer.write(codec.reply_to(header, msg_id, body, self._serial))

    def reply(self, header: codec.Header, serials: list[int], result: int) -> None:
        for serial in serials:
            self.send(header, m.GENERAL_REPLY, m.general_reply(serial, header.msg_id, result))
        if result == m.OK:
            self.gw.stats.acks += len(serials)

    # ---------------------------------------------------------------------------------- packets

    def _reassemble(self, pkt: codec.Packet) -> tuple[codec.Packet, list[int]] | None:
        h = pkt.header
        now = time.monotonic()
        for key in [k for k, p in self._pending.items() if now - p.started > REASSEMBLY_S]:
            self.bad(f"sub-packages: message 0x{key[0]:04x} incomplete after {REASSEMBLY_S:.0f} s")
            del self._pending[key]
        if h.total > MAX_PARTS:
            self.bad(f"sub-packages: {h.total} parts (at most {MAX_PARTS})")
            return None
        key = (h.msg_id, h.total, (h.serial - h.index + 1) & 0xFFFF)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= MAX_PENDING:
                self.bad(f"sub-packages: {MAX_PENDING} messages already incomplete")
                return None
            pending = self._pending[key] = _Pending(now, {})
        pending.parts[h.index] = (h.serial, pkt.body)
        if len(pending.parts) < h.total:
            return None
        del self._pending[key]
        parts = [pending.parts[i] for i in range(1, h.total + 1)]
        body = b"".join(b for _, b in parts)
        whole = codec.Header(h.msg_id, h.serial, h.phone, h.phone_bcd, h.version, h.encryption)
        return codec.Packet(whole, body), [s for s, _ in parts]

    async def packet(self, pkt: codec.Packet) -> None:
        h, serials = pkt.header, [pkt.header.serial]
        term = self.terminal
        if term is None or term.phone != h.phone:
            if term is not None:
                self.bad(f"terminal phone changed from {term.phone} to {h.phone} on one connection")
                self.reply(h, serials, m.FAIL)
                self.close()
                return
            term = self.gw.lookup(h.phone)
            if term is None:
                self.bad(f"unknown terminal: phone {h.phone} is not in the registry")
                if h.msg_id == m.REGISTER:
                    self.send(h, m.REGISTER_REPLY, m.register_reply(h.serial, m.REG_NO_TERMINAL))
                else:
                    self.reply(h, serials, m.FAIL)
                self.close()
                return
            self.terminal = term
        if h.msg_id not in (m.REGISTER, m.AUTHENTICATE) and not self.authed:
            self.bad(f"not authenticated: 0x{h.msg_id:04x} before a good 0x0102")  # nor held in memory
            self.reply(h, serials, m.FAIL)
            return
        if self.authed:
            term.alive()  # only a terminal that proved itself keeps its device online
        if h.total:
            whole = self._reassemble(pkt)
            if whole is None:
                return
            pkt, serials = whole
        if h.encryption:
            self.bad(f"encrypted body (method {h.encryption}) of 0x{h.msg_id:04x}: no key exchanged")
            self.reply(h, serials, m.UNSUPPORTED)
            return
        handler = _HANDLERS.get(h.msg_id)
        if handler is None:
            self.gw.stats.refused[f"unsupported 0x{h.msg_id:04x}"] += 1
            log.info("%s: message 0x%04x not supported: answered 3", self.label, h.msg_id)
            self.reply(h, serials, m.UNSUPPORTED)
            return
        await handler(self, term, pkt, serials)

    async def on_register(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        h = pkt.header
        reg = m.decode_register(pkt.body, h.is_2019)
        if isinstance(reg, m.BodyError):
            self.bad(f"register: {reg.reason}")
            self.reply(h, serials, m.BAD_MESSAGE)
            return
        if reg.plate_colour and reg.plate and not term.is_plate(reg.plate):  # colour 0: the field is a VIN
            self.bad(f"register: plate {reg.plate!r} is not the registry's {term.plate!r} for {h.phone}")
            self.send(h, m.REGISTER_REPLY, m.register_reply(h.serial, m.REG_NO_VEHICLE))
            return
        code = await asyncio.get_running_loop().run_in_executor(
            self.gw.executor, lambda: term.auth_code(create=True))
        self.send(h, m.REGISTER_REPLY, m.register_reply(h.serial, m.REG_OK, code or ""))
        self.gw.note("register", term, self, reg)

    async def on_auth(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        h = pkt.header
        auth = m.decode_auth(pkt.body, h.is_2019)
        loop = asyncio.get_running_loop()
        why = auth.reason if isinstance(auth, m.BodyError) else await loop.run_in_executor(
            self.gw.executor, term.check_code, auth.code)
        if why is not None:
            self._auth_failures += 1
            self.bad(f"authentication refused: {why}")
            self.reply(h, serials, m.FAIL)
            if self._auth_failures >= MAX_AUTH_FAILURES:
                self.close()
            return
        old = term.session
        self.authed, term.session = True, self
        term.alive()
        if old is not None and old is not self:
            log.info("%s: reconnected from %s: the older connection %s is closed", term.device_id,
                     self.peer, old.peer)
            old.close()
        self.reply(h, serials, m.OK)
        self.gw.note("authenticated", term, self, auth)

    async def on_heartbeat(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        self.reply(pkt.header, serials, m.OK)

    async def on_logout(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        await asyncio.get_running_loop().run_in_executor(self.gw.executor, term.forget_auth)
        self.reply(pkt.header, serials, m.OK)
        self.authed = False
        self.gw.note("logged out", term, self, None)

    async def on_location(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        loc = m.decode_location(pkt.body)
        if isinstance(loc, m.BodyError):
            self.bad(f"location: {loc.reason}", pkt.body)
            self.reply(pkt.header, serials, m.BAD_MESSAGE)
            return
        await self._store(term, pkt.header, serials, [loc], backfill=False)

    async def on_batch(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        batch = m.decode_batch(pkt.body)
        if isinstance(batch, m.BodyError):
            self.bad(f"batch: {batch.reason}")
            self.reply(pkt.header, serials, m.BAD_MESSAGE)
            return
        for reason in batch.errors:
            self.bad(f"batch: {reason}")
        if not batch.locations and batch.errors:
            self.reply(pkt.header, serials, m.BAD_MESSAGE)
            return
        await self._store(term, pkt.header, serials, batch.locations, backfill=batch.backfill)

    async def on_terminal_reply(self, term: Terminal, pkt: codec.Packet, serials: list[int]) -> None:
        """0x0001: the terminal answering a platform command; the gateway sends none but replies."""

    async def _store(self, term: Terminal, h: codec.Header, serials: list[int], points: list[m.Location],
                     *, backfill: bool) -> None:
        fresh = [p for p in points if not term.seen(p)]
        stats = self.gw.stats
        stats.duplicates += len(points) - len(fresh)
        events = [term.telemetry(p) for p in sorted(fresh, key=lambda p: p.ts)]
        ok = True
        if events:
            try:
                ok = await term.store(events)
            except Exception:
                log.exception("%s: storing %d report(s) failed", term.device_id, len(events))
                ok = False
            if ok:
                term.remember(fresh)
                stats.reports += len(events)
                if backfill:
                    stats.backfilled += len(events)
        self.reply(h, serials, m.OK if ok else m.FAIL)


Handler = Callable[[Connection, Terminal, codec.Packet, list[int]], Awaitable[None]]
_HANDLERS: dict[int, Handler] = {
    m.REGISTER: Connection.on_register,
    m.AUTHENTICATE: Connection.on_auth,
    m.HEARTBEAT: Connection.on_heartbeat,
    m.LOGOUT: Connection.on_logout,
    m.LOCATION: Connection.on_location,
    m.BATCH: Connection.on_batch,
    m.TERMINAL_REPLY: Connection.on_terminal_reply,
}

Observer = Callable[[str, Terminal, Connection, object], None]


class Gateway:
    """The TCP server on one (host, port); `lookup` is the registry of terminals it accepts."""

    def __init__(self, host: str, port: int, lookup: Lookup, *, idle_s: float = 180.0,
                 max_connections: int = 20_000, observer: Observer | None = None) -> None:
        self.host, self.port, self.lookup, self.idle_s = host, port, lookup, idle_s
        self.max_connections = max_connections
        self.observer = observer
        self.stats = Stats()
        self.executor = ThreadPoolExecutor(2, "jt808-store")
        """Outbox writes and auth-code reads (SQLite blocks; its lock serialises them anyway)."""
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=4096)
        log.info("JT/T 808 gateway listening on %s:%d", self.host, self.bound_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()  # its reader sees the end of the stream and its handler returns
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.executor.shutdown(wait=False)

    def drop(self, term: Terminal) -> None:
        """Close the connections of a terminal that left the registry (its driver stopped)."""
        for conn in [c for c in self._conns if c.terminal is term]:
            conn.close()

    def note(self, what: str, term: Terminal, conn: Connection, detail: object) -> None:
        log.info("%s: %s from %s (phone %s)", term.device_id, what, conn.peer, term.phone)
        if self.observer is not None:
            self.observer(what, term, conn, detail)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_connections:
            log.warning("jt808 gateway: %d connections open: refused a new one", len(self._conns))
            writer.close()
            return
        conn = Connection(self, reader, writer)
        self.stats.connections += 1
        self.stats.open += 1
        self._conns.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass  # a cancelled handler task makes asyncio.streams log a traceback (CPython 3.11)
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._tasks.discard(task)
