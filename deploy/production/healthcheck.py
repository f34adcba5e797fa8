"""Container health checks for the Python services (stdlib only; exit 0 = healthy).

    healthcheck.py connected PORT   a TCP connection to remote PORT is established (bridge → broker)
    healthcheck.py listening PORT   something listens on local PORT (alert service API)
    healthcheck.py http URL         the URL answers with a status below 500
    healthcheck.py ready URL        the URL (a process's /readyz) answers 200; else its reason is
                                    printed, which `docker inspect` shows in the health log
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

ESTABLISHED, LISTEN = "01", "0A"


def _sockets(state: str) -> list[tuple[int, int]]:
    """(local port, remote port) of TCP sockets in `state`, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == state:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    mode, arg = argv
    if mode == "connected":
        return 0 if any(remote == int(arg) for _, remote in _sockets(ESTABLISHED)) else 1
    if mode == "listening":
        return 0 if any(local == int(arg) for local, _ in _sockets(LISTEN)) else 1
    if mode == "http":
        try:
            with urllib.request.urlopen(arg, timeout=4) as response:
                return 0 if response.status < 500 else 1
        except urllib.error.HTTPError as exc:
            return 0 if exc.code < 500 else 1
        except OSError:
            return 1
    if mode == "ready":
        return _ready(arg)
    print(__doc__, file=sys.stderr)
    return 2


def _ready(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(exc.read(2000).decode("utf-8", "replace").strip() or f"HTTP {exc.code}")
        return 1
    except OSError as exc:
        print(f"{url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
