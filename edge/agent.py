"""The edge agent for one site: device threads -> outbox -> one MQTT session.

Each device runs in its own thread (pyserial blocks), supervised from asyncio; a failing
device retries with backoff and never stops the others. SIGINT/SIGTERM stop the devices,
flush the outbox for a few seconds, publish `offline` and disconnect cleanly.
Run as `python -m edge.agent --config site.yaml` or `wastestream edge run --config ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from edge.config import ConfigError, SiteConfig, load_config
from edge.devices.weighbridge_port import WeighbridgePort
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox

log = logging.getLogger("edge.agent")


async def run_agent(
    config: SiteConfig, *, stop: asyncio.Event | None = None, flush_timeout: float = 5.0
) -> None:
    """Run one site until `stop` is set (or SIGINT/SIGTERM when run in the main thread)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    outbox = Outbox(
        config.outbox.path, max_messages=config.outbox.max_messages, when_full=config.outbox.when_full
    )
    session = MqttSession(config.mqtt, config.site_id, outbox, status_kind=config.devices[0].kind)
    devices_stop = threading.Event()
    session.start()
    ports = [WeighbridgePort(config, d, outbox) for d in config.devices]
    tasks = [asyncio.create_task(asyncio.to_thread(p.run, devices_stop), name=p.device.id) for p in ports]
    log.info(
        "edge agent for %s running %d device(s); outbox %s (%d pending)",
        config.site_id,
        len(ports),
        outbox.path,
        outbox.depth(),
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        devices_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(session.stop, flush_timeout)
        outbox.close()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge.agent", description="Run the wastestream edge agent for one site."
    )
    parser.add_argument("--config", required=True, help="site YAML (see edge/config.py)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run_agent(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
