"""The JT/T 808 gateway as a terminal sees it: hand-built packets over real TCP, a real outbox.

The terminal side here frames its packets with its own few lines (struct, XOR, the two escape
rules: the standard's section 4), not with the gateway's codec, and reads replies field by field;
each device is the real driver with the agent's real context and a real SQLite outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import struct
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import decode
from contract.events import TruckTelemetry
from edge.clock import ClockGuard
from edge.config import parse_config
from edge.device_context import AgentContext
from edge.devices.jt808 import codec
from edge.devices.jt808 import messages as m
from edge.devices.jt808.driver import Jt808Driver
from edge.devices.jt808.profile import load_profile
from edge.health import Health
from edge.outbox import Outbox
from firmware_sim.twins.jt808 import Signals, TerminalSim, location, wait_listening

from .test_jt808_codec import LOC_2013_WIRE, LOC_2019_WIRE, LOC_BODY

PHONE13, PHONE19 = "013912345678", "00000000013912345678"
PLATE = "桂B12345"


def _xor(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


def hand(msg_id: int, body: bytes, serial: int, *, v2019: bool = False, total: int = 0, index: int = 0,
         phone: str | None = None, props_extra: int = 0) -> bytes:
    """A terminal's packet, framed by the standard's rules (independently of edge.devices.jt808)."""
    props = len(body) | (0x2000 if total else 0) | (0x4000 if v2019 else 0) | props_extra
    head = struct.pack(">HH", msg_id, props) + (b"\x01" if v2019 else b"")
    head += bytes.fromhex(phone or (PHONE19 if v2019 else PHONE13)) + struct.pack(">H", serial)
    if total:
        head += struct.pack(">HH", total, index)
    data = head + body
    data += bytes([_xor(data)])
    return b"\x7e" + data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02") + b"\x7e"


def register_body(v2019: bool, plate: str = PLATE) -> bytes:
    sizes = (11, 30, 30) if v2019 else (5, 20, 7)
    fields = b"".join(t.ljust(n, b"\0") for t, n in zip((b"WSTST", b"M1", b"T000001"), sizes, strict=True))
    return bytes.fromhex("002d00c8") + fields + b"\x02" + plate.encode("gbk")


def auth_body(code: str, v2019: bool) -> bytes:
    raw = code.encode()
    return bytes([len(raw)]) + raw + b"860000000000001" + b"V1".ljust(20, b"\0") if v2019 else raw


class Wire:
    """A raw terminal connection: send bytes, read the platform's replies as (msg id, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buf = reader, writer, b""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 3.0) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout):
            while self.buf.count(b"\x7e") < 2:
                chunk = await self.reader.read(4096)
                if not chunk:
                    raise ConnectionError("closed by the platform")
                self.buf += chunk
        start = self.buf.index(b"\x7e")
        end = self.buf.index(b"\x7e", start + 1)
        raw = self.buf[start + 1 : end].replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
        self.buf = self.buf[end + 1 :]
        assert _xor(raw[:-1]) == raw[-1]
        msg_id, props = struct.unpack(">HH", raw[:4])
        off = 17 if props & 0x4000 else 12
        return msg_id, raw[off:-1]

    async def general(self) -> tuple[int, int, int]:
        """The next 0x8001: (reply serial, reply id, result)."""
        msg_id, body = await self.reply()
        assert msg_id == 0x8001, hex(msg_id)
        serial, reply_id, result = struct.unpack(">HHB", body)
        return serial, reply_id, result

    async def closed(self, timeout: float = 3.0) -> bool:
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(timeout):
                return await self.reader.read(1) == b""
        return True

    async def login(self, v2019: bool = False) -> str:
        await self.send(hand(0x0100, register_body(v2019), 1, v2019=v2019))
        msg_id, body = await self.reply()
        assert msg_id == 0x8100 and body[:3] == b"\x00\x01\x00", body  # reply serial 1, result 0
        code = body[3:].decode()
        await self.send(hand(0x0102, auth_body(code, v2019), 2, v2019=v2019))
        assert await self.general() == (2, 0x0102, 0)
        return code


class Site:
    """A jt808 device (its terminal speaks either header) on its gateway, with its real context."""

    def __init__(self, tmp: Path, port: int, *, max_messages: int = 1000,
                 when_full: str = "drop_oldest") -> None:
        self.config = parse_config({
            "site_id": "s1", "outbox": {"path": str(tmp / "o.db")},
            "vehicles": [{"plate": PLATE, "tare_kg": 12000, "rated_gross_kg": 31000}],
            "devices": [
                {"id": "t13", "kind": "jt808", "phone": PHONE13, "plate": PLATE, "profile": "ext-signal",
                 "listen": f"127.0.0.1:{port}"}]})
        self.outbox = Outbox(tmp / "o.db", max_messages=max_messages, when_full=when_full)  # type: ignore[arg-type]
        self.stop = asyncio.Event()
        self.port = port
        self.health: dict[str, Health] = {}
        self.drivers = [Jt808Driver(d, self.context(d.id)) for d in self.config.devices]  # type: ignore[arg-type]

    def context(self, device_id: str) -> AgentContext:
        self.health[device_id] = Health(time.monotonic(), 30)
        return AgentContext(site_id="s1", device_id=device_id, kind="jt808", outbox=self.outbox,
                            clock=ClockGuard(300, datetime(2024, 1, 1, tzinfo=UTC)),
                            health=self.health[device_id], vehicles={}, stored=Counter(), stop=self.stop,
                            halt=threading.Event())

    def events(self) -> list[TruckTelemetry]:
        out = [decode(e.payload) for e in self.outbox.pending(limit=10_000)]
        return [e for e in out if isinstance(e, TruckTelemetry)]

    async def wire(self) -> Wire:
        return Wire(*await asyncio.open_connection("127.0.0.1", self.port))


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[Site]:
    tasks = [asyncio.create_task(d.run()) for d in site.drivers]
    await wait_listening("127.0.0.1", site.port)
    try:
        yield site
    finally:
        site.stop.set()
        await asyncio.gather(*tasks)
        site.stop.clear()


def run(coro: Callable[..., Any], *args: Any) -> Any:
    return asyncio.run(coro(*args))


@pytest.fixture
def port() -> int:
    from firmware_sim.twins.base import free_port

    return free_port()


def test_register_authenticate_and_report_2013(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            w = await site.wire()
            await w.login()
            await w.send(LOC_2013_WIRE)
            assert await w.general() == (7, 0x0200, 0)
            [e] = site.events()
            assert (e.device_id, e.site_id, e.plate) == ("t13", "s1", PLATE)
            assert (e.lat, e.lon, e.speed_kmh, e.heading_deg) == (24.326, 109.428, 12.6, 125.0)
            assert e.ts == datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
            assert (e.lid_closed, e.bed_raised, e.ignition, e.gps_fix) == (True, False, True, True)
            assert e.load_kg == 19000  # load full x the registry's 31000 - 12000 kg
            await w.send(hand(0x0002, b"", 9))
            assert await w.general() == (9, 0x0002, 0)

    run(go)


def test_a_2019_terminal(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            w = await site.wire()
            await w.login(v2019=True)
            await w.send(LOC_2019_WIRE)
            assert await w.general() == (8, 0x0200, 0)
            [e] = site.events()
            assert (e.device_id, e.lat, e.load_kg) == ("t13", 24.326, 19000)

    run(go)


def test_unregistered_and_unauthenticated_terminals_are_refused(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            stranger = await site.wire()
            await stranger.send(hand(0x0100, register_body(False), 1, phone="013900000000"))
            msg_id, body = await stranger.reply()
            assert (msg_id, body) == (0x8100, bytes.fromhex("0001" "04"))  # no such terminal, no code
            assert await stranger.closed()
            w = await site.wire()
            await w.send(LOC_2013_WIRE)  # known number, but no 0x0102 on this connection
            assert await w.general() == (7, 0x0200, 1)
            await w.send(hand(0x0704, b"\x00" * 900, 4, total=100, index=1))
            assert await w.general() == (4, 0x0704, 1)  # no part is held for a stranger
            await w.send(hand(0x0102, b"not-the-code", 3))
            assert await w.general() == (3, 0x0102, 1)
            assert site.events() == []
            wrong_plate = await site.wire()
            await wrong_plate.send(hand(0x0100, register_body(False, "桂B99999"), 1))
            assert await wrong_plate.reply() == (0x8100, bytes.fromhex("0001" "02"))  # no such vehicle
            for serial in (4, 5):
                await w.send(hand(0x0102, b"guess", serial))
                assert (await w.general())[2] == 1
            assert await w.closed()  # three wrong codes
            session_stats = site.drivers[0].terminal
            assert session_stats.session is None

    run(go)


def test_unsupported_and_encrypted_messages_get_result_3(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            w = await site.wire()
            await w.login()
            await w.send(hand(0x0900, b"\x41hello", 5))  # data uplink pass-through
            assert await w.general() == (5, 0x0900, 3)
            await w.send(hand(0x0200, bytes.fromhex(LOC_BODY), 6, props_extra=0x0400))  # RSA bit
            assert await w.general() == (6, 0x0200, 3)
            await w.send(hand(0x0200, bytes.fromhex(LOC_BODY)[:20], 7))
            assert await w.general() == (7, 0x0200, 2)  # bad message
            assert site.events() == []

    run(go)


def test_the_ack_waits_for_the_outbox(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        site = Site(tmp_path, port, max_messages=1, when_full="reject_new")
        ctx = site.drivers[0].ctx
        store = ctx.store

        def slow_store(events: Any, state: Any = None) -> Any:
            time.sleep(0.3)  # an ack sent before the commit would arrive before this returns
            return store(events, state)

        ctx.store = slow_store  # type: ignore[method-assign]
        async with running(site):
            w = await site.wire()
            await w.login()
            await w.send(LOC_2013_WIRE)
            assert await w.general() == (7, 0x0200, 0)
            assert site.outbox.depth() == 1  # it was there when the ack left
            later = bytearray(bytes.fromhex(LOC_BODY))
            later[22:28] = bytes.fromhex("261207203100")
            await w.send(hand(0x0200, bytes(later), 8))
            assert await w.general() == (8, 0x0200, 1)  # the full outbox refused it: not acked
            assert site.outbox.depth() == 1

    run(go)


def test_a_sub_packaged_batch_is_acked_part_by_part_once_stored(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            w = await site.wire()
            await w.login()
            base = bytes.fromhex(LOC_BODY)
            points = [base[:22] + bytes.fromhex(f"2612072030{s:02d}") + base[28:] for s in (0, 10, 20)]
            body = struct.pack(">HB", 3, 1) + b"".join(struct.pack(">H", len(p)) + p for p in points)
            half = len(body) // 2
            await w.send(hand(0x0704, body[:half], 20, total=2, index=1))
            with pytest.raises(TimeoutError):
                await w.reply(timeout=0.3)  # nothing acked before the whole message is stored
            assert site.events() == []
            await w.send(hand(0x0704, body[half:], 21, total=2, index=2))
            assert [await w.general(), await w.general()] == [(20, 0x0704, 0), (21, 0x0704, 0)]
            assert [e.ts.second for e in site.events()] == [0, 10, 20]

    run(go)


def test_fifty_points_back_filled_after_a_ten_minute_outage(tmp_path: Path, port: int) -> None:
    """The gateway is down for 10 minutes; the terminal keeps its 50 points and back-fills them
    as a blind-area batch (sub-packaged: it is longer than one packet) when it is back."""

    async def go() -> None:
        profile = load_profile("ext-signal")
        site = Site(tmp_path, port)
        term = TerminalSim("13912345678", PLATE, "127.0.0.1", port)
        async with running(site):
            assert await term.connect()
        await term.close()
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        for i in range(50):  # every 12 s for 10 minutes, nobody listening
            loc = location(profile, ts=t0 + timedelta(seconds=12 * i), lat=24.3 + i / 1000, lon=109.4,
                           speed_kmh=30, heading=90, signals=Signals(True, False, 1.0, 19000))
            assert not await term.report(loc)
        assert len(term.unacked) == 50
        assert len(m.encode_batch(term.unacked, backfill=True)) > codec.MAX_BODY  # goes in sub-packages
        async with running(site):
            assert await term.connect()  # its stored auth code: no new registration
            assert await term.backfill() == 50
            assert not term.unacked
            session = site.drivers[0].terminal.session
            assert session is not None and session.gw.stats.backfilled == 50
            events = site.events()
            assert len(events) == 50
            assert [e.ts for e in events] == [t0 + timedelta(seconds=12 * i) for i in range(50)]
            assert len({e.msg_id for e in events}) == 50
            await term.close()

    run(go)


def test_a_terminal_that_reconnects_mid_session(tmp_path: Path, port: int) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            first = await site.wire()
            code = await first.login()
            await first.send(LOC_2013_WIRE)
            assert await first.general() == (7, 0x0200, 0)
            second = await site.wire()  # a new 4G session: no registration, the kept code
            await second.send(hand(0x0102, code.encode(), 1))
            assert await second.general() == (1, 0x0102, 0)
            assert await first.closed()  # the older connection is closed
            await second.send(LOC_2013_WIRE)  # a re-send of the point whose ack it never saw
            assert await second.general() == (7, 0x0200, 0)
            later = bytearray(bytes.fromhex(LOC_BODY))
            later[22:28] = bytes.fromhex("261207203030")
            await second.send(hand(0x0200, bytes(later), 8))
            assert await second.general() == (8, 0x0200, 0)
            events = site.events()
            assert [e.ts.second for e in events] == [0, 30]  # the re-send is not stored twice

    run(go)


def test_garbage_and_bad_check_codes_are_logged_under_the_device(tmp_path: Path, port: int,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            w = await site.wire()
            await w.login()
            bad = LOC_2013_WIRE[:-2] + b"\x00" + LOC_2013_WIRE[-1:]
            await w.send(b"+++ATH\r\n" + bad + hand(0x0002, b"", 9))
            assert await w.general() == (9, 0x0002, 0)
            assert site.events() == []

    with caplog.at_level("WARNING", logger="edge.devices.jt808.gateway"):
        run(go)
    reasons = [r.getMessage() for r in caplog.records if r.args and r.args[0] == "t13"]  # type: ignore[index]
    assert any("check code mismatch" in r for r in reasons), reasons
    assert len(reasons) >= 2


def test_a_connection_that_never_authenticates_is_closed(tmp_path: Path, port: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.devices.jt808 import gateway

    monkeypatch.setattr(gateway, "LOGIN_S", 0.5)  # 60 s in production

    async def go() -> None:
        async with running(Site(tmp_path, port)) as site:
            silent = await site.wire()  # connects, says nothing
            chatty = await site.wire()  # registers, never authenticates
            await chatty.send(hand(0x0100, register_body(False), 1))
            assert (await chatty.reply())[0] == 0x8100
            assert await silent.closed(timeout=3) and await chatty.closed(timeout=3)

    run(go)
