"""The v2 transport's wiring (path, org, bucket, precision, token, body, error mapping) against a stub server.

InfluxDB 1.6 on this machine has no /api/v2/write, so the stub stands in for 1.8+/2.x/3.x.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from stream.sinks.influx_v2 import V2Transport
from stream.sinks.transport import WriteError


async def with_stub(status: int, scenario: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def write(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "query": dict(request.query),
                     "auth": request.headers.get("Authorization"), "body": await request.read()})
        if status == 204:
            return web.Response(status=204)
        return web.json_response({"code": "invalid", "message": "bad line"}, status=status)

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    transport = V2Transport(f"http://127.0.0.1:{port}", "city-org", "wastestream/autogen", "s3cret")
    try:
        await scenario(transport)
    finally:
        await transport.close()
        await runner.cleanup()
    return seen


def test_v2_write_request() -> None:
    body = "weighing,site=上海 net_kg=1.0 1".encode()

    async def scenario(t: V2Transport) -> None:
        await t.write(body)

    seen = asyncio.run(with_stub(204, scenario))
    assert len(seen) == 1
    req = seen[0]
    assert req["path"] == "/api/v2/write"
    assert req["query"]["org"] == "city-org" and req["query"]["bucket"] == "wastestream/autogen"
    assert req["query"]["precision"] == "ns"
    assert req["auth"] == "Token s3cret"
    assert req["body"] == body


@pytest.mark.parametrize(("status", "transient"), [(400, False), (503, True), (429, True)])
def test_v2_errors_are_classified(status: int, transient: bool) -> None:
    async def scenario(t: V2Transport) -> None:
        with pytest.raises(WriteError) as info:
            await t.write(b"m v=1 1")
        assert info.value.transient is transient
        assert f"HTTP {status}" in str(info.value)

    asyncio.run(with_stub(status, scenario))


def test_v2_unreachable_is_transient() -> None:
    async def scenario() -> None:
        t = V2Transport("http://127.0.0.1:9", "o", "b", "t", timeout_s=1.0)
        try:
            with pytest.raises(WriteError) as info:
                await t.write(b"m v=1 1")
            assert info.value.transient
        finally:
            await t.close()

    asyncio.run(scenario())
