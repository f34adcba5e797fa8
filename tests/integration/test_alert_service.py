"""The alert service against the real Kafka, Mosquitto and InfluxDB, pushing to real local HTTP servers.

Produces to ws.alerts: a new alert, its replay (same id), a cool-down repeat, and a second kind.
The receivers verify signatures the way a real receiver would; the webhook answers 500 twice
for the first alert. Then an officer acknowledges through the HTTP API and closes through the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from contract import encode
from contract.events import Severity
from contract.topics import DEADLETTER_TOPIC
from stream.alerting.channels import webhook
from stream.alerting.config import parse_config
from stream.alerting.make import make_alert
from stream.alerting.service import AlertService
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import REPO_ROOT, Settings
from wastestream.pipeline import commit_group_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HOOK_SECRET, DING_SECRET, WECOM_KEY, TOKEN = "hook-secret", "SECding-secret", "wecom-key", "test-token"


class Receivers:
    """One aiohttp server on loopback playing the city webhook, the DingTalk and the WeCom robots."""

    def __init__(self, fail_first: str) -> None:
        self.hook: list[dict[str, Any]] = []
        self.ding: list[dict[str, Any]] = []
        self.wecom: list[dict[str, Any]] = []
        self.hook_attempts: dict[str, int] = {}
        self.fail_first = fail_first
        self.app = web.Application()
        self.app.router.add_post("/hook", self.on_hook)
        self.app.router.add_post("/robot/send", self.on_ding)
        self.app.router.add_post("/cgi-bin/webhook/send", self.on_wecom)

    async def on_hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Wastestream-Timestamp"]
        if not webhook.verify(HOOK_SECRET, ts, body, request.headers["X-Wastestream-Signature"]):
            return web.Response(status=401, text="bad signature")
        alert_id = request.headers["X-Wastestream-Alert-Id"]
        n = self.hook_attempts[alert_id] = self.hook_attempts.get(alert_id, 0) + 1
        if alert_id == self.fail_first and n <= 2:
            return web.Response(status=500, text="receiver down")
        self.hook.append(json.loads(body))
        return web.json_response({"ok": True})

    async def on_ding(self, request: web.Request) -> web.Response:
        q = request.rel_url.query  # decoded once: the sign must come back as the raw base64
        ts, sign = q["timestamp"], q["sign"]
        expected = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        fresh = abs(time.time() * 1000 - int(ts)) < 3.6e6  # DingTalk allows an hour
        if q.get("access_token") != "ding-token" or sign != expected or not fresh:
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        self.ding.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def on_wecom(self, request: web.Request) -> web.Response:
        if request.rel_url.query.get("key") != WECOM_KEY:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        self.wecom.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})


class MqttInbox:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK from Mosquitto"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def drop_db(settings: Settings) -> None:
    query = urllib.parse.urlencode({"q": f'DROP DATABASE "{settings.influx_db}"'})
    urllib.request.urlopen(urllib.request.Request(f"{settings.influx_url}/query?{query}", method="POST"),
                           timeout=10)


def test_alert_service_end_to_end(live_services: Settings, unique: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(live_services, influx_db=f"ws_test_alerts_{unique}")
    try:
        asyncio.run(scenario(settings, unique, tmp_path))
    finally:
        drop_db(settings)


async def scenario(settings: Settings, unique: str, tmp_path: Path) -> None:
    # Alerts in a time slot of their own (the topic is shared): stats over it see only ours.
    t0 = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(100_000))
    plate = f"桂B{unique[:5]}"

    def alert(kind: str, key: str, at_s: float, severity: Severity, evidence: list[str]) -> Any:
        return make_alert(kind, severity, site_id="liuzhou-n", device_id=f"truck-{unique}", subject=plate,
                          summary="车厢在消纳场外举升", evidence=evidence, ts=t0 + timedelta(seconds=at_s),
                          dedup_key=f"{unique}:{key}", lat=24.3251, lon=109.4153)

    dump = alert("illegal_dumping", "d1", 0, Severity.CRITICAL, ["m1", "m2"])
    repeat = alert("illegal_dumping", "d2", 600, Severity.CRITICAL, ["m3"])  # within 1800 s cool-down
    lid = alert("uncovered_transport", "u1", 30, Severity.WARNING, ["m4"])
    ours = {dump.alert_id, repeat.alert_id, lid.alert_id}

    receivers = Receivers(fail_first=dump.alert_id)
    runner = web.AppRunner(receivers.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    mqtt_topic = f"wstest/{unique}/enforcement/alerts/{{severity}}"
    inbox = MqttInbox(settings, f"wstest/{unique}/enforcement/alerts/+")
    kinds = ["illegal_dumping", "uncovered_transport"]
    config = parse_config({
        "officer": {"public_url": "https://zf.example.cn"},
        "cooldown_s": 1800, "kafka_group": f"ws-alerts-test-{unique}",
        "retry": {"attempts": 4, "initial_s": 0.2, "max_s": 1.0},
        "api": {"port": 0, "token": {"value": TOKEN}},
        "channels": [
            {"type": "webhook", "name": "city-hook", "url": f"{base}/hook", "secret": {"value": HOOK_SECRET},
             "kinds": kinds},
            {"type": "dingtalk", "name": "ding",
             "url_secret": {"value": f"{base}/robot/send?access_token=ding-token"},
             "secret": {"value": DING_SECRET}, "kinds": kinds, "min_severity": "critical"},
            {"type": "wecom", "name": "wecom",
             "url_secret": {"value": f"{base}/cgi-bin/webhook/send?key={WECOM_KEY}"},
             "kinds": kinds},
            {"type": "mqtt", "name": "terminals", "host": settings.mqtt_host, "port": settings.mqtt_port,
             "topic": mqtt_topic, "kinds": kinds},
        ],
    })
    service = AlertService(config, settings, default_cooldown_s=1800, token=TOKEN, port=0,
                           db_path=tmp_path / "alerts.db")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        api = f"http://127.0.0.1:{service.bound_port}"
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            # Keyed by alert_id, so these land on different partitions: the service sees whichever
            # first; let the first alert arrive before its repeat, as it would in a real stream.
            for a in (dump, dump):
                await producer.send_and_wait("ws.alerts", encode(a), key=a.alert_id.encode())
            await until(lambda: dump.alert_id in {x["alert_id"] for x in service.store.find(limit=1000)},
                        "the first alert stored")
            for a in (repeat, lid, dump):  # dump replayed once more
                await producer.send_and_wait("ws.alerts", encode(a), key=a.alert_id.encode())
        finally:
            await producer.stop()

        def ours_in(docs: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> list[str]:
            return [key(d) for d in docs if any(i in key(d) for i in ours)]

        await until(lambda: len(ours_in(receivers.hook, lambda d: d["alert_id"])) == 2, "webhook deliveries")
        await until(lambda: len([m for m in inbox.messages if m[1]["alert_id"] in ours]) == 2, "MQTT pushes")
        await until(lambda: len(ours_in(receivers.wecom, lambda d: d["markdown"]["content"])) == 2, "WeCom")
        await until(lambda: len(ours_in(receivers.ding, lambda d: d["markdown"]["text"])) == 1, "DingTalk")
        await asyncio.sleep(1.0)  # anything extra (a repeat pushed, a replay re-pushed) would show now

        # one push per channel per primary alert: the replay and the cool-down repeat pushed nothing
        hooked = sorted(ours_in(receivers.hook, lambda d: d["alert_id"]))
        assert hooked == sorted([dump.alert_id, lid.alert_id])
        assert receivers.hook_attempts[dump.alert_id] == 3
        ding = [d for d in receivers.ding if dump.alert_id in d["markdown"]["text"]]
        assert len(ding) == 1 and ding[0]["msgtype"] == "markdown"
        assert ding[0]["markdown"]["title"] == f"【严重】违规倾倒：{plate}"
        # the push carries a signed, expiring link to the alert's page (stream/alerting/officer/links.py)
        link = re.search(r"\((https://zf\.example\.cn/o/l/[^)]+)\)", ding[0]["markdown"]["text"])
        assert link is not None and link.group(1).startswith(f"https://zf.example.cn/o/l/{dump.alert_id}?e=")
        assert service.signer is not None
        path, query = link.group(1).removeprefix("https://zf.example.cn/o/l/").split("?")
        args = urllib.parse.parse_qs(query)
        assert service.signer.check(path, args["e"][0], args["s"][0]) is None
        wecom = ours_in(receivers.wecom, lambda d: d["markdown"]["content"])
        assert any("未密闭运输" in text for text in wecom)
        topics = sorted(t for t, m in inbox.messages if m["alert_id"] in ours)
        prefix = f"wstest/{unique}/enforcement/alerts"
        assert topics == [f"{prefix}/critical", f"{prefix}/warning"]

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            detail = await (await http.get(f"{api}/alerts/{dump.alert_id}")).json()
            assert detail["count"] == 2 and detail["evidence"] == ["m1", "m2", "m3"]
            assert [r["alert_id"] for r in detail["repeats"]] == [repeat.alert_id]
            hook_rows = [(d["attempt"], d["status"], d["http_code"]) for d in detail["deliveries"]
                         if d["channel"] == "city-hook"]
            assert hook_rows == [(1, "retry", 500), (2, "retry", 500), (3, "sent", 200)]
            assert {(d["channel"], d["status"]) for d in detail["deliveries"]} >= {
                ("ding", "sent"), ("wecom", "sent"), ("terminals", "sent")}

            r = await http.post(f"{api}/alerts/{dump.alert_id}/ack",
                                json={"officer": "王警官", "note": "已到场"})
            assert r.status == 200
            r = await http.post(f"{api}/alerts/{dump.alert_id}/ack", json={"officer": "王警官"})
            assert r.status == 409 and "acknowledged" in (await r.json())["error"]
            r = await http.post(f"{api}/alerts/no-such-alert/close", json={"officer": "王警官"})
            assert r.status == 404

            env = dict(os.environ, WS_ALERTS_TOKEN=TOKEN)
            cli = [sys.executable, "-m", "wastestream.cli", "alerts"]
            closed = await asyncio.to_thread(
                subprocess.run, [*cli, "close", dump.alert_id, "--officer", "李队长", "--note", "罚款五千元",
                                 "--url", api],
                env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
            assert closed.returncode == 0, closed.stderr
            assert "acknowledged -> closed by 李队长" in closed.stdout
            again = await asyncio.to_thread(
                subprocess.run, [*cli, "close", dump.alert_id, "--officer", "李队长", "--url", api],
                env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
            assert again.returncode == 1 and "HTTP 409" in again.stderr

            detail = await (await http.get(f"{api}/alerts/{dump.alert_id}")).json()
            events = [(e["action"], e["actor"], e["note"]) for e in detail["events"]]
            assert events == [("raise", "stream", ""), ("repeat", "stream", f"repeat {repeat.alert_id}"),
                              ("ack", "王警官", "已到场"), ("close", "李队长", "罚款五千元")]
            ack_at = datetime.fromisoformat(detail["events"][2]["at"])
            assert abs((datetime.now(UTC) - ack_at).total_seconds()) < 60

            window = {"since": t0.isoformat(), "until": (t0 + timedelta(hours=1)).isoformat()}
            stats = await (await http.get(f"{api}/stats", params=window)).json()
            assert (stats["open"], stats["acknowledged"], stats["closed"], stats["total"]) == (1, 0, 1, 2)
            assert stats["closure_rate"] == 0.5 and stats["repeats_suppressed"] == 1
            text = await asyncio.to_thread(
                subprocess.run, [*cli, "stats", "--url", api, "--since", window["since"], "--until",
                                 window["until"]], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                timeout=30)
            assert "办结率 50.0%" in text.stdout, text.stdout + text.stderr
            listed = await asyncio.to_thread(
                subprocess.run, [*cli, "list", "--state", "open", "--url", api, "--json"], env=env,
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
            assert lid.alert_id in {a["alert_id"] for a in json.loads(listed.stdout)}

        def influx_states() -> dict[str, int]:
            """Points of our alerts per state (the topic may hold other tests' alerts too)."""
            rows = influxql(settings, 'SELECT "alert_id" FROM "alert" GROUP BY "state"')
            counts: dict[str, int] = {}
            for r in rows:
                if r["alert_id"] in ours:
                    counts[r["state"]] = counts.get(r["state"], 0) + 1
            return counts

        await until(lambda: influx_states() == {"open": 2, "acknowledged": 1, "closed": 1}, "InfluxDB points")
        rows = influxql(settings, f"SELECT \"count\", lat, lon FROM \"alert\" "
                                  f"WHERE alert_id = '{dump.alert_id}' AND state = 'open'")
        assert [(r["count"], r["lat"], r["lon"]) for r in rows] == [(2, 24.3251, 109.4153)]
        assert service.stats.outcomes["duplicate"] >= 2 and service.stats.outcomes["suppressed"] >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        inbox.close()
        await runner.cleanup()


def test_poison_record_is_dead_lettered_and_consumption_goes_on(live_services: Settings, unique: str,
                                                                tmp_path: Path) -> None:
    """Issue 11, finding 1: a 2 KB alert record nesting 1,000 arrays made msgspec raise RecursionError,
    which the consumer did not catch: the service exited, and on restart met the same record again."""
    asyncio.run(poison_scenario(live_services, unique, tmp_path))


async def poison_scenario(settings: Settings, unique: str, tmp_path: Path) -> None:
    config = parse_config({"kafka_group": f"ws-alerts-poison-{unique}",
                           "api": {"port": 0, "token": {"value": TOKEN}}})
    await commit_group_at_end(settings.kafka_bootstrap, config.kafka_group, [config.kafka_topic])
    poison = b'{"msg_id":"poison-' + unique.encode() + b'","type":' + b"[" * 1000 + b"]" * 1000 + b"}"
    valid = make_alert("illegal_dumping", Severity.CRITICAL, site_id="liuzhou-n", device_id=f"truck-{unique}",
                       subject=f"桂B{unique[:5]}", summary="车厢在消纳场外举升", evidence=["m1"],
                       ts=datetime.now(UTC), dedup_key=f"{unique}:after-poison")
    service = AlertService(config, settings, default_cooldown_s=0, token=TOKEN, port=0,
                           db_path=tmp_path / "alerts.db", channels={})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    dead = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await dead.start()
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        await dead._client.force_metadata_update()  # what partitions_for_topic reads (as commit_group_at_end)
        partitions = [TopicPartition(DEADLETTER_TOPIC, p)
                      for p in sorted(dead.partitions_for_topic(DEADLETTER_TOPIC) or ())]
        assert partitions, f"no partitions of {DEADLETTER_TOPIC}"
        dead.assign(partitions)
        for tp, offset in (await dead.end_offsets(partitions)).items():
            dead.seek(tp, offset)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:  # one key, one partition: the poison is read first
            for payload in (poison, encode(valid)):
                await producer.send_and_wait(config.kafka_topic, payload, key=unique.encode())
        finally:
            await producer.stop()
        stored = lambda: task.done() or valid.alert_id in {a["alert_id"] for a in service.store.find()}  # noqa: E731
        await until(stored, "the valid alert after the poison stored")
        assert not task.done(), f"the service stopped: {task.exception()!r}"

        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            for records in (await dead.getmany(timeout_ms=500)).values():
                found += [r for r in (json.loads(m.value or b"{}") for m in records)
                          if f"poison-{unique}" in str(r.get("payload"))]
        assert len(found) == 1, "the poison record is not in ws.deadletter"
        assert found[0]["topic"] == config.kafka_topic and found[0]["reason"].startswith("alert service: ")
        assert service.stats.rejected == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # re-raises if the service crashed
        await dead.stop()
