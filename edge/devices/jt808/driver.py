"""The `jt808` device kind: one device entry per terminal, all sharing one gateway per `listen`.

Each terminal is one device of the site (its own device_id, topic, msg_ids, health and
device_status), so the stream keys its telemetry per truck as it does the `truck` kind's. The
site config's jt808 entries are the registry: phone number -> device and plate; a terminal not
listed there is refused. The first driver to run on a `listen` address starts the gateway
(`edge.devices.jt808.gateway`), the last to stop closes it. The truck's full payload (for the
load state empty / half / full) is `full_load_kg`, or the site's vehicle registry's
rated_gross_kg - tare_kg for the plate.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, ClassVar

import msgspec

from contract.events import Ident, Plate, TruckTelemetry
from edge.devices.base import DeviceContext, DeviceSpec, Driver
from edge.devices.jt808 import gateway as gw
from edge.devices.jt808.profile import ProfileError, load_profile

Positive = Annotated[float, msgspec.Meta(gt=0)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}$")]
_LISTEN = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^:\s]*):(?P<port>[0-9]{1,5})$")


class Jt808Config(DeviceSpec, frozen=True, tag="jt808"):
    """One JT/T 808 terminal of the site; site_id comes from the site, full_load_kg from its
    vehicle registry when not given."""

    kind: ClassVar[str] = "jt808"
    site_id: Ident
    phone: Phone
    """The terminal's phone number (SIM) as its header carries it; leading zeros do not count."""
    plate: Plate
    profile: Annotated[str, msgspec.Meta(min_length=1)]
    """A vendor profile: a name in edge/devices/jt808/profiles/ or a .yaml path."""
    full_load_kg: Positive
    listen: str = "127.0.0.1:7808"
    """host:port of the gateway (":7808" = every interface); every terminal on it shares it."""
    report_interval_s: Positive = 30.0
    """The terminal's reporting interval: three missed reports and it is offline."""
    idle_s: Positive = 180.0
    """An authenticated connection silent this long (no report, no heartbeat) is closed."""

    def __post_init__(self) -> None:
        parse_listen(self.listen)


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (`:port`: every interface) into a bind address."""
    match = _LISTEN.match(listen)
    if match is None or not 0 <= int(match["port"]) <= 65535:
        raise ValueError(f"listen {listen!r} is not host:port")
    host = match["host"].strip("[]") or "0.0.0.0"  # ":port": every interface, as asked
    return host, int(match["port"])


class AgentTerminal(gw.Terminal):
    """A terminal whose events go to its device's outbox and whose auth code is outbox state."""

    def __init__(self, cfg: Jt808Config, ctx: DeviceContext) -> None:
        super().__init__(device_id=cfg.id, site_id=cfg.site_id, phone=cfg.phone.lstrip("0") or "0",
                         plate=cfg.plate, profile=load_profile(cfg.profile), full_load_kg=cfg.full_load_kg)
        self.ctx = ctx
        self._state_key = f"jt808.auth.{cfg.id}"

    async def store(self, events: list[TruckTelemetry]) -> bool:
        ids = await asyncio.get_running_loop().run_in_executor(self.executor, self.ctx.store, events)
        return all(i is not None for i in ids)

    def auth_code(self, *, create: bool) -> str | None:
        code = self.ctx.get_state(self._state_key) or None  # "": logged out
        if code is None and create:
            code = secrets.token_hex(8)
            self.ctx.store([], {self._state_key: code})
        return code

    def forget_auth(self) -> None:
        self.ctx.store([], {self._state_key: ""})

    def alive(self) -> None:
        self.ctx.alive()


class _Shared:
    """One gateway and the terminals of every driver on its address."""

    def __init__(self, gateway: gw.Gateway, terminals: dict[str, gw.Terminal]) -> None:
        self.gateway, self.terminals = gateway, terminals


_GATEWAYS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], _Shared]] = (
    weakref.WeakKeyDictionary())
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def attached(host: str, port: int, term: gw.Terminal, idle_s: float) -> AsyncIterator[gw.Gateway]:
    """Serve `term` on the gateway of (host, port), starting it for the first terminal."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.setdefault(loop, asyncio.Lock())
    gateways, key = _GATEWAYS.setdefault(loop, {}), (host, port)
    async with lock:
        shared = gateways.get(key)
        if shared is None:
            terminals: dict[str, gw.Terminal] = {}
            gateway = gw.Gateway(host, port, terminals.get, idle_s=idle_s)
            await gateway.start()
            shared = gateways[key] = _Shared(gateway, terminals)
        other = shared.terminals.get(term.phone)
        if other is not None and other is not term:
            raise ValueError(f"phone {term.phone} is already {other.device_id}'s on {host}:{port}")
        shared.terminals[term.phone] = term
        term.executor = shared.gateway.executor
    try:
        yield shared.gateway
    finally:
        async with lock:
            shared.terminals.pop(term.phone, None)
            shared.gateway.drop(term)
            if not shared.terminals:
                del gateways[key]
                await shared.gateway.close()


class Jt808Driver(Driver[Jt808Config]):
    """A JT/T 808 terminal: silent for three report intervals (no report, no heartbeat) is offline."""

    kind: ClassVar[str] = "jt808"
    config = Jt808Config
    loggers = (gw.__name__,)
    has_clock = True

    def __init__(self, cfg: Jt808Config, ctx: DeviceContext) -> None:
        super().__init__(cfg, ctx)
        self.terminal = AgentTerminal(cfg, ctx)  # built once: its last signals outlive a restart

    async def run(self) -> None:
        host, port = parse_listen(self.cfg.listen)
        async with attached(host, port, self.terminal, self.cfg.idle_s):
            await self.ctx.stop.wait()

    def stale_after(self) -> float:
        return 3 * self.cfg.report_interval_s + 5.0

    @classmethod
    def site_defaults(cls, raw: dict[str, Any], site: Mapping[str, Any], where: str) -> dict[str, Any]:
        """site_id from the site; full_load_kg from the vehicle registry; the profile checked now."""
        raw = super().site_defaults(raw, site, where)
        if isinstance(raw.get("profile"), str):
            try:
                load_profile(raw["profile"])
            except ProfileError as exc:
                raise ValueError(f"`{where}.profile`: {exc}") from None
        if "full_load_kg" not in raw:
            listed = site.get("vehicles")
            vehicles: list[Any] = listed if isinstance(listed, list) else []
            plate = raw.get("plate")
            vehicle = next((v for v in vehicles if isinstance(v, dict) and v.get("plate") == plate), None)
            try:
                payload = float(vehicle["rated_gross_kg"]) - float(vehicle["tare_kg"])  # type: ignore[index]
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"`{where}.full_load_kg`: not given, and plate {raw.get('plate')!r} has no"
                                 " rated_gross_kg and tare_kg in `$.vehicles`") from None
            raw = {**raw, "full_load_kg": payload}
        return raw
