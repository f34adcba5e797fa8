#!/usr/bin/env python3
"""Protocol-level health checks for deploy/local/*.sh (stdlib only, aiokafka optional).

    healthcheck.py mqtt HOST PORT                     MQTT 3.1.1 CONNECT -> CONNACK accepted
    healthcheck.py kafka BOOTSTRAP DEADLINE_S [PID]   aiokafka admin: list topics, retried until deadline

Exit codes: 0 healthy, 1 not healthy (reason on stderr), 2 check not available (no aiokafka),
3 the watched PID died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time


def check_mqtt(host: str, port: int) -> int:
    client_id = f"ws-health-{os.getpid()}".encode()
    # variable header: protocol name "MQTT", level 4 (3.1.1), flags 0x02 (clean session), keepalive 10
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(3)
            sock.sendall(packet)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    break
                connack += chunk
            if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
                print(f"unexpected CONNACK {connack!r}", file=sys.stderr)
                return 1
            sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError as exc:
        print(f"mqtt connect failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _kafka_once(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 8)
        await asyncio.wait_for(admin.list_topics(), 8)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 3)


def check_kafka(bootstrap: str, deadline_s: float, pid: int | None) -> int:
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        return 2
    import logging

    logging.disable(logging.CRITICAL)  # aiokafka logs connection errors while the broker starts
    end = time.monotonic() + deadline_s
    last = "no attempt"
    while True:
        if pid is not None and not _pid_alive(pid):
            print(f"broker process {pid} exited", file=sys.stderr)
            return 3
        try:
            asyncio.run(_kafka_once(bootstrap))
            return 0
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= end:
            print(f"kafka not ready: {last}", file=sys.stderr)
            return 1
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "mqtt":
        return check_mqtt(argv[1], int(argv[2]))
    if len(argv) >= 3 and argv[0] == "kafka":
        pid = int(argv[3]) if len(argv) > 3 and argv[3] else None
        return check_kafka(argv[1], float(argv[2]), pid)
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
