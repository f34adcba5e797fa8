"""What every InfluxDB transport is (`Transport`) and how its failures are told apart (`WriteError`):
the sink retries a transient failure and dead-letters the others at once."""

from __future__ import annotations

from typing import Protocol


class WriteError(Exception):
    """A failed write; `transient` ones are retried, the others dead-lettered at once."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class Transport(Protocol):
    target: str
    """Where points go, for logs and dead-letter records (e.g. `influx-v1:http://...:wastestream`)."""

    async def prepare(self) -> None: ...
    async def write(self, body: bytes) -> None: ...
    async def close(self) -> None: ...


def classify(status: int, text: str) -> WriteError:
    transient = status >= 500 or status in (404, 408, 429)  # 404: database not (yet) there
    return WriteError(f"HTTP {status}: {text.strip()[:300]}", transient=transient)
