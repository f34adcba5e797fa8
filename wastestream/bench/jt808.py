"""The JT/T 808 gateway's load figure: N terminals reporting every S seconds into one edge process.

The gateway runs here as an edge agent runs it: one `jt808` driver per terminal with the agent's
own context, all sharing one gateway and one real SQLite outbox (WAL, synchronous=FULL: each
report is committed before its ack). The terminals are a child process (`--swarm`: the twin's
`TerminalSim`, 2013 and 2019 headers alternately, staggered over the interval), so this process's
CPU is the gateway's alone. After every terminal has logged in, it measures for `seconds`: points
stored per second, and CPU (user + system, every thread of this process) per stored point. A
benchmark measures: nothing here asserts a time.

    python -m wastestream.bench.jt808 --terminals 5000 --interval 30 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wastestream.foundation.settings import load_settings

TERMINALS, INTERVAL_S, SECONDS = 5000, 30.0, 60.0
PHONE_BASE = 14_000_000_000


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    del soft


def _site(terminals: int, interval_s: float, port: int, db: Path, mqtt: tuple[str, int] | None) -> Any:
    from edge.config import parse_config

    return parse_config({
        "site_id": "bench-808", "outbox": {"path": str(db), "max_messages": 10_000_000},
        "clock": {"max_skew_s": 3600},
        **({"mqtt": {"host": mqtt[0], "port": mqtt[1], "delivery": "broker"}} if mqtt else {}),
        "devices": [{"id": f"t{i}", "kind": "jt808", "phone": str(PHONE_BASE + i), "plate": f"桂B{i:05d}",
                     "profile": "ext-signal", "full_load_kg": 14000, "listen": f"127.0.0.1:{port}",
                     "report_interval_s": interval_s} for i in range(terminals)]})


async def _drivers_only(config: Any, db: Path, stop: asyncio.Event) -> None:
    """The jt808 drivers with the agent's own contexts and outbox, without agent or MQTT session."""
    from edge.clock import ClockGuard
    from edge.device_context import AgentContext
    from edge.devices.jt808.driver import Jt808Driver
    from edge.health import Health
    from edge.outbox import Outbox

    outbox = Outbox(db, max_messages=10_000_000)
    halt = threading.Event()
    clock = ClockGuard(3600, datetime(2024, 1, 1, tzinfo=UTC))
    drivers = [Jt808Driver(d, AgentContext(
        site_id="bench-808", device_id=d.id, kind="jt808", outbox=outbox, clock=clock,
        health=Health(time.monotonic(), 60), vehicles={}, stored=Counter(), stop=stop, halt=halt))
        for d in config.devices]
    try:
        await asyncio.gather(*(d.run() for d in drivers))
    finally:
        outbox.close()


async def _gateway_run(terminals: int, interval_s: float, seconds: float, db: Path,
                       mqtt: tuple[str, int] | None) -> dict[str, Any]:
    """With `mqtt`, the whole edge agent (its status loop, and its MQTT session publishing every
    event to that broker); without, the drivers, their contexts and the outbox alone."""
    from edge.agent import run_agent
    from firmware_sim.twins.base import free_port

    port = free_port()
    config = _site(terminals, interval_s, port, db, mqtt)
    stop = asyncio.Event()
    edge = asyncio.create_task(run_agent(config, stop=stop, flush_timeout=2.0) if mqtt
                               else _drivers_only(config, db, stop))
    gateway = await _attached(terminals, timeout=120.0)
    swarm = subprocess.Popen(
        [sys.executable, "-m", "wastestream.bench.jt808", "--swarm", "--port", str(port), "--terminals",
         str(terminals), "--interval", str(interval_s), "--seconds", str(seconds + 3 * interval_s + 120)],
        stdout=subprocess.PIPE, text=True)
    try:
        login_deadline = time.monotonic() + max(60.0, terminals / 50)
        while gateway.stats.open < terminals and time.monotonic() < login_deadline:
            await asyncio.sleep(0.5)
        logged_in = gateway.stats.open
        await asyncio.sleep(interval_s)  # one interval in: every terminal is in its reporting rhythm
        s0, c0, t0 = gateway.stats.reports, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        s1, c1, t1 = gateway.stats.reports, time.process_time(), time.monotonic()
        refused = dict(gateway.stats.refused)
        peak_open = gateway.stats.open
    finally:
        swarm.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            swarm.wait(30)
        stop.set()
        await asyncio.gather(edge, return_exceptions=True)
    stored = s1 - s0
    return {"terminals": terminals, "interval_s": interval_s, "logged_in": logged_in, "open": peak_open,
            "mode": f"edge agent, MQTT to {mqtt[0]}:{mqtt[1]}" if mqtt else "drivers + outbox, no MQTT",
            "seconds": round(t1 - t0, 1), "reports": stored, "reports_per_s": round(stored / (t1 - t0), 1),
            "offered_per_s": round(terminals / interval_s, 1), "cpu_s": round(c1 - c0, 2),
            "cpu_us_per_report": round(1e6 * (c1 - c0) / stored, 1) if stored else None,
            "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1), "refused": refused}


async def _attached(terminals: int, timeout: float) -> Any:
    """The gateway, once every driver's terminal is attached to it."""
    from edge.devices.jt808 import driver as drv

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for gateways in drv._GATEWAYS.values():
            for shared in gateways.values():
                if len(shared.terminals) == terminals:
                    return shared.gateway
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the {terminals} terminals did not all attach within {timeout:.0f} s")


def run_gateway(terminals: int = TERMINALS, interval_s: float = INTERVAL_S, seconds: float = SECONDS,
                mqtt: tuple[str, int] | None = None) -> dict[str, Any]:
    """The load figure (a dict); its outbox is a temporary file, removed after."""
    _raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="ws-bench-808-") as tmp:
        return asyncio.run(_gateway_run(terminals, interval_s, seconds, Path(tmp) / "outbox.db", mqtt))


def summary_line(r: dict[str, Any] | None) -> str:
    if not r:
        return "JT/T 808 gateway: not measured"
    return (f"JT/T 808 gateway ({r['mode']}; wastestream/bench/jt808.py): {r['logged_in']:,} of "
            f"{r['terminals']:,} terminals connected, every {r['interval_s']:.0f} s: "
            f"{r['reports_per_s']:.0f} reports/s stored (offered {r['offered_per_s']:.0f}), "
            f"CPU {r['cpu_us_per_report']} µs per report ({r['cpu_pct_of_one_core']:.0f} % of one core, "
            "outbox commits included)")


def bench_jt808() -> dict[str, Any] | None:
    """The bench's hook: measure, print the line, return the figure (None when it failed)."""
    print(f"JT/T 808 gateway: {TERMINALS:,} terminals every {INTERVAL_S:.0f} s for {SECONDS:.0f} s ...",
          flush=True)
    settings = load_settings()
    try:
        result: dict[str, Any] | None = run_gateway(mqtt=(settings.mqtt_host, settings.mqtt_port))
    except Exception as exc:  # the rest of the bench still runs
        print(f"  JT/T 808 gateway bench failed: {type(exc).__name__}: {exc}")
        result = None
    print("  " + summary_line(result), flush=True)
    return result


# ------------------------------------------------------------------------------------ the swarm


async def _swarm(port: int, terminals: int, interval_s: float, seconds: float) -> dict[str, int]:
    from edge.devices.jt808.profile import load_profile
    from firmware_sim.twins.jt808 import Signals, TerminalSim, location

    profile = load_profile("ext-signal")
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def one(i: int) -> None:
        await asyncio.sleep(interval_s * i / terminals)  # staggered like a real fleet
        term = TerminalSim(str(PHONE_BASE + i), f"桂B{i:05d}", "127.0.0.1", port, is_2019=i % 2 == 1)
        try:
            if not await term.connect():
                counts["login_failed"] += 1
                return
            counts["logged_in"] += 1
            k = 0
            while loop.time() < end:
                k += 1
                loc = location(profile, ts=datetime.now(UTC), lat=24.3 + (i % 1000) / 1e4,
                               lon=109.4 + k / 1e5, speed_kmh=30, heading=90,
                               signals=Signals(True, False, 1.0, 14000))
                counts["acked" if await term.report(loc) else "not_acked"] += 1
                await asyncio.sleep(interval_s)
        except OSError:
            counts["connect_error"] += 1
        finally:
            await term.close()

    await asyncio.gather(*(one(i) for i in range(terminals)))
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wastestream.bench.jt808",
                                description=__doc__.splitlines()[0])
    p.add_argument("--terminals", type=int, default=TERMINALS)
    p.add_argument("--interval", type=float, default=INTERVAL_S)
    p.add_argument("--seconds", type=float, default=SECONDS)
    p.add_argument("--swarm", action="store_true", help="be the terminals (the bench starts this itself)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mqtt", default=None, metavar="HOST:PORT",
                   help="run the whole edge agent publishing to this broker (default: drivers + outbox only)")
    a = p.parse_args(argv)
    _raise_fd_limit()
    if a.swarm:
        with contextlib.suppress(KeyboardInterrupt):
            print(json.dumps(asyncio.run(_swarm(a.port, a.terminals, a.interval, a.seconds))))
        return 0
    host, _, mport = (a.mqtt or "").rpartition(":")
    mqtt = (host or "127.0.0.1", int(mport)) if a.mqtt else None
    result = run_gateway(a.terminals, a.interval, a.seconds, mqtt)
    print(json.dumps(result, ensure_ascii=False))
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
