"""InfluxDB 2.x transport: `/api/v2/write` with an org, bucket and token (influxdb-client, imported
only when this transport is chosen)."""

from __future__ import annotations

from typing import Any

import aiohttp

from stream.sinks.transport import WriteError, classify


class V2Transport:
    """InfluxDB 2.x/3.x (and 1.8+) `/api/v2/write` through influxdb-client's async client."""

    def __init__(self, url: str, org: str, bucket: str, token: str, timeout_s: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self.target = f"influx-v2:{url.rstrip('/')}/{org}/{bucket}"
        self._bucket, self._org = bucket, org
        self._client_factory = lambda: InfluxDBClientAsync(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000)
        )
        self._client: Any = None

    async def prepare(self) -> None:
        """Buckets are provisioned by the operator (creating one needs an all-access token)."""

    async def write(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException

        if self._client is None:
            self._client = self._client_factory()
        try:
            await self._client.write_api().write(
                bucket=self._bucket, org=self._org, record=body, write_precision="ns"
            )
        except ApiException as exc:
            raise classify(int(exc.status or 0), str(exc.body or exc.reason)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise WriteError(f"{type(exc).__name__}: {exc}", transient=True) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
