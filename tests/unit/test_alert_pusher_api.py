"""The pusher's retries and restart resume, and the HTTP API's contract, against a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contract.events import Severity
from stream.alerting.api import make_app
from stream.alerting.channels.base import Delivery
from stream.alerting.config import RetryConfig
from stream.alerting.make import make_alert
from stream.alerting.pusher import Pusher
from stream.alerting.store import AlertStore, InvalidInput

RETRY = RetryConfig(attempts=3, initial_s=0.01, max_s=0.05)


def alert(key: str, subject: str = "桂B1"):
    return make_alert("illegal_dumping", Severity.CRITICAL, site_id="s1", device_id="t1", subject=subject,
                      summary="dump", evidence=["m1"], ts=datetime(2025, 3, 1, tzinfo=UTC), dedup_key=key)


class FakeChannel:
    def __init__(self, name: str, results: list[Delivery]) -> None:
        self.name, self.results, self.sent = name, results, 0

    async def send(self, alert: dict[str, Any], evidence: list[str]) -> Delivery:
        self.sent += 1
        return self.results.pop(0) if self.results else Delivery(True, 200)

    async def close(self) -> None:
        pass


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_retry_then_success_and_bounded_failure(tmp_path: Path) -> None:
    async def main() -> None:
        store = AlertStore(tmp_path / "a.db")
        flaky = FakeChannel("flaky", [Delivery(False, 500, "HTTP 500"), Delivery(False, 500, "HTTP 500")])
        dead = FakeChannel("dead", [Delivery(False, None, "refused")] * 10)
        bad = FakeChannel("bad", [Delivery(False, 403, "HTTP 403", retryable=False)])
        a = alert("k1")
        store.ingest(a, 0, ["flaky", "dead", "bad", "gone"])
        pusher = Pusher(store, {"flaky": flaky, "dead": dead, "bad": bad}, RETRY)  # type: ignore[dict-item]
        await pusher.start()
        await until(lambda: store.next_due() is None)
        await pusher.stop()
        push = {p["channel"]: p for p in store.get(a.alert_id)["push"]}
        assert push["flaky"]["status"] == "sent" and push["flaky"]["attempts"] == 3
        assert push["dead"]["status"] == "failed" and push["dead"]["attempts"] == 3 and dead.sent == 3
        assert push["bad"]["status"] == "failed" and push["bad"]["attempts"] == 1
        assert push["gone"]["status"] == "failed" and push["gone"]["last_error"] == "channel not configured"
        flaky_rows = [(d["attempt"], d["status"], d["http_code"])
                      for d in store.get(a.alert_id)["deliveries"] if d["channel"] == "flaky"]
        assert flaky_rows == [(1, "retry", 500), (2, "retry", 500), (3, "sent", 200)]

    run(main())


def test_pending_push_resumes_after_restart(tmp_path: Path) -> None:
    async def main() -> None:
        store = AlertStore(tmp_path / "a.db")
        a = alert("k1")
        store.ingest(a, 0, ["hook"])
        slow = RetryConfig(attempts=3, initial_s=60, max_s=60)
        first = FakeChannel("hook", [Delivery(False, 503, "HTTP 503")])
        pusher = Pusher(store, {"hook": first}, slow)  # type: ignore[dict-item]
        await pusher.start()
        await until(lambda: first.sent == 1)
        await pusher.stop()
        store.close()
        store = AlertStore(tmp_path / "a.db")  # "restart": the job is still pending, due in ~60 s
        clock = [store.next_due() or 0.0]
        second = FakeChannel("hook", [])
        pusher = Pusher(store, {"hook": second}, slow, clock=lambda: clock[0])  # type: ignore[dict-item]
        await pusher.start()
        await until(lambda: store.next_due() is None)
        await pusher.stop()
        assert second.sent == 1
        assert [d["status"] for d in store.get(a.alert_id)["deliveries"]] == ["retry", "sent"]

    run(main())


def test_api(tmp_path: Path) -> None:
    async def main() -> None:
        store = AlertStore(tmp_path / "a.db")
        a, b = alert("k1"), alert("k2", subject="桂B2")
        store.ingest(a, 0, [])
        store.ingest(b, 0, [])
        changes: list[int] = []
        app = make_app(store, "tok", lambda: changes.append(1))
        async with TestClient(TestServer(app)) as client:
            auth = {"Authorization": "Bearer tok"}
            assert (await client.get("/alerts")).status == 401
            assert (await client.get("/alerts", headers={"Authorization": "Bearer nope"})).status == 401
            assert (await client.get("/healthz")).status == 200
            r = await client.get("/alerts", params={"state": "open"}, headers=auth)
            assert {x["alert_id"] for x in await r.json()} == {a.alert_id, b.alert_id}
            assert (await client.get("/alerts", params={"state": "bogus"}, headers=auth)).status == 400
            r = await client.post(f"/alerts/{a.alert_id}/ack", json={"officer": "张三", "note": "到场"},
                                  headers=auth)
            body = await r.json()
            assert r.status == 200 and body["state"] == "acknowledged"
            assert body["events"][-1]["actor"] == "张三" and body["events"][-1]["at"].endswith("Z")
            r = await client.post(f"/alerts/{a.alert_id}/ack", json={"officer": "张三"}, headers=auth)
            assert r.status == 409 and "acknowledged" in (await r.json())["error"]
            assert (await client.post(f"/alerts/{a.alert_id}/close", json={}, headers=auth)).status == 400
            assert (await client.post(f"/alerts/{a.alert_id}/close", data=b"x", headers=auth)).status == 400
            r = await client.post("/alerts/nope/close", json={"officer": "x"}, headers=auth)
            assert r.status == 404
            assert (await client.get("/alerts/nope", headers=auth)).status == 404
            r = await client.post(f"/alerts/{a.alert_id}/close", json={"officer": "李四"}, headers=auth)
            assert r.status == 200
            detail = await (await client.get(f"/alerts/{a.alert_id}", headers=auth)).json()
            assert [e["action"] for e in detail["events"]] == ["raise", "ack", "close"]
            assert detail["evidence"] == ["m1"]
            stats = await (await client.get("/stats", headers=auth)).json()
            assert (stats["closed"], stats["open"], stats["closure_rate"]) == (1, 1, 0.5)
            r = await client.get("/stats", params={"since": "2025-03-02T00:00:00+08:00"}, headers=auth)
            assert (await r.json())["total"] == 0
            assert (await client.get("/stats", params={"since": "2025-03-02"}, headers=auth)).status == 400
        assert len(changes) == 2

    run(main())


def test_api_refuses_bad_input_with_a_reason(tmp_path: Path) -> None:
    """Issue 11, finding 10: each input answered 500 or misbehaved; now a 4xx with a JSON reason."""
    async def main() -> None:
        store = AlertStore(tmp_path / "a.db")
        ids = []
        for i in range(3):
            a = alert(f"k{i}", subject=f"桂B{i}")
            store.ingest(a, 0, [])
            ids.append(a.alert_id)
        async with TestClient(TestServer(make_app(store, "tok"))) as client:
            auth = {"Authorization": "Bearer tok"}

            async def refused(status: int, method: str, path: str, **kwargs: Any) -> str:
                r = await client.request(method, path, headers=auth, **kwargs)
                body = await r.json()
                assert r.status == status, (path, kwargs, r.status, body)
                assert set(body) == {"error"} and body["error"]
                return str(body["error"])

            year_1, year_9999 = "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59+00:00"
            assert "1900" in await refused(400, "GET", "/stats", params={"since": year_1})
            assert "2200" in await refused(400, "GET", "/stats", params={"until": year_9999})
            await refused(400, "GET", "/stats", params={"since": "2025-03-02T00:00:00Z",
                                                        "until": "2025-03-01T00:00:00Z"})
            for limit in ("-1", "0", "1001", "99999999999999999999", "١٢", " 5", "1_0", ""):
                assert "limit" in await refused(400, "GET", "/alerts", params={"limit": limit})
            await refused(400, "GET", "/alerts", params={"site": "s1\x00"})
            await refused(400, "GET", "/alerts", params={"stat": "open"})  # a typo, not every alert
            await refused(400, "GET", "/alerts", params=[("state", "open"), ("state", "closed")])
            ack = f"/alerts/{ids[0]}/ack"
            await refused(400, "POST", ack, data=b"[" * 5000 + b"]" * 5000)
            await refused(400, "POST", ack, data=b'{"officer":"x","note":' + b"[" * 3000 + b"]" * 3000 + b"}")
            assert "str" in await refused(400, "POST", ack, json={"officer": {"a": 1}})
            await refused(400, "POST", ack, json={"officer": "x", "note": 5})
            await refused(400, "POST", ack, json={"officer": "x", "extra": 1})
            await refused(400, "POST", ack, json={"officer": "王\x1b[31m警官"})
            await refused(400, "POST", ack, json={"officer": "\u202eli"})
            await refused(400, "POST", ack, json={"officer": "\u3164"})  # a Hangul filler: blank
            await refused(400, "POST", ack, json={"officer": "王\u200b警官"})  # zero-width space
            await refused(400, "POST", ack, json={"officer": "x" * 65})
            await refused(400, "POST", ack, json={"officer": "x", "note": "n" * 2001})
            await refused(400, "POST", ack, json={"officer": "x", "note": "a\rb"})
            await refused(413, "POST", ack, data=b'{"officer":"x","note":"' + b"n" * 20_000 + b'"}')
            await refused(404, "GET", "/alerts/" + "x" * 500)
            await refused(404, "POST", "/alerts/%ED%A0%80/ack", json={"officer": "x"})
            await refused(404, "GET", "/no-such-route")
            await refused(405, "DELETE", f"/alerts/{ids[0]}")
            assert [e["action"] for e in store.get(ids[0])["events"]] == ["raise"]  # nothing recorded
            r = await client.get("/alerts", params={"limit": "2"}, headers=auth)
            assert r.status == 200 and len(await r.json()) == 2
            r = await client.post(ack, json={"officer": " 王警官 ", "note": "到场\n核查"}, headers=auth)
            assert r.status == 200 and (await r.json())["events"][-1]["actor"] == "王警官"
            r = await client.get("/alerts")
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            assert (await client.get("/openapi.json")).status == 200  # public, like /healthz

    run(main())


def test_store_refuses_officer_and_note_it_cannot_record(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.db")
    a = alert("k1")
    store.ingest(a, 0, [])
    for officer, note in (({"a": 1}, ""), ("x", ["n"]), ("x" * 65, ""), ("a\x00b", ""), ("x", "n" * 2001),
                          ("x", "\u2066bidi")):
        with pytest.raises(InvalidInput):
            store.transition(a.alert_id, "ack", officer, note)  # type: ignore[arg-type]
    for limit in (-1, 0, 1001, True):
        with pytest.raises(InvalidInput):
            store.find(limit=limit)
    assert store.get(a.alert_id)["state"] == "open"
