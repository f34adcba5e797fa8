"""InfluxDB 1.x transport: the HTTP `/write` API (also what InfluxDB 1.8+ and 3 accept)."""

from __future__ import annotations

import logging

import aiohttp

from stream.sinks.transport import WriteError, classify

log = logging.getLogger(__name__)


class V1Transport:
    """InfluxDB 1.x HTTP API: `/write?db=..&precision=ns`; `CREATE DATABASE` on prepare."""

    def __init__(self, url: str, db: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.url, self.db = url.rstrip("/"), db
        self.target = f"influx-v1:{self.url}/{db}"
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def prepare(self) -> None:
        """Create the database (idempotent in InfluxDB); a failure here is retried by the writes."""
        try:
            query = {"q": f'CREATE DATABASE "{self.db}"'}
            async with self._http().post(f"{self.url}/query", params=query) as r:
                if r.status != 200:
                    log.warning("CREATE DATABASE %s: HTTP %d %s", self.db, r.status, await r.text())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("InfluxDB at %s not reachable to create %s: %s", self.url, self.db, exc)

    async def write(self, body: bytes) -> None:
        try:
            async with self._http().post(
                f"{self.url}/write", params={"db": self.db, "precision": "ns"}, data=body
            ) as r:
                if r.status == 204:
                    return
                error = classify(r.status, await r.text())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise WriteError(f"{type(exc).__name__}: {exc}", transient=True) from None
        if r.status == 404:
            await self.prepare()
        raise error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
