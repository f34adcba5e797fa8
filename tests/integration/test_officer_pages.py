"""The officer's side in a real browser (Debian's chromium through chromium-driver and Selenium).

A truck track through the real pipeline (Kafka → Faust worker → ws.alerts and InfluxDB) raises
illegal_dumping; the alert service stores it and pushes it to a webhook; the officer of its
district opens the push's signed link on a phone-sized screen, signs in, sees the map and the
evidence, acknowledges and closes it with an outcome, and the store records who and when. An
officer of another district gets 403 with the same link; a tampered or expired link is refused;
a form without the CSRF token or from another origin is refused; an unacknowledged critical
alert escalates to the supervisors' channel. The screenshot is kept in $WS_RUN_DIR/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from contract.codec import encode
from contract.events import Severity
from stream.alerting.config import parse_config
from stream.alerting.make import make_alert
from stream.alerting.service import AlertService
from stream.rules import District, load_rules
from tests.integration.test_stream_transport import track
from tests.integration.workerkit import (
    free_port,
    produce,
    raised,
    read_alerts,
    start_worker,
    stop,
    wait_until,
)
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOKEN = "officer-test-token"
PASSWORDS = {"wang": "wang-secret-0001", "zhao": "zhao-secret-0002", "boss": "boss-secret-0003"}
PHONE = (390, 844)


class Receiver:
    """The city's webhook receivers: raised alerts on /hook, escalations on /escalate."""

    def __init__(self) -> None:
        self.raised: list[dict[str, Any]] = []
        self.escalated: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.on(self.raised))
        self.app.router.add_post("/escalate", self.on(self.escalated))

    def on(self, into: list[dict[str, Any]]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            into.append(json.loads(await request.read()))
            return web.json_response({"ok": True})

        return handler


class ServiceThread:
    """The alert service on its own event loop, as in production (its own process there)."""

    def __init__(self, service: AlertService) -> None:
        self.service, self.loop = service, asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.receiver = Receiver()
        self.receiver_port = 0
        self.started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        runner = web.AppRunner(self.receiver.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.receiver_port)
        await site.start()
        self.started.set()
        try:
            await self.service.run(self.stop)
        finally:
            await runner.cleanup()

    def start(self) -> None:
        self.thread.start()
        assert self.started.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def users(db: Path) -> None:
    """The accounts, made with the administrator's CLI as in production."""
    cli = [sys.executable, "-m", "wastestream.cli", "alerts", "users", "--db", str(db), "add"]
    for args in (["wang", "--district", "liubei", "--name", "王警官"],
                 ["zhao", "--district", "yufeng", "--name", "赵警官"],
                 ["boss", "--role", "supervisor", "--name", "李队长"]):
        done = subprocess.run([*cli, *args], input=PASSWORDS[args[0]] + "\n", capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "make test installs chromium and chromium-driver (deploy/local)"
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={PHONE[0]},{PHONE[1]}", "--lang=zh-CN"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: Any, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    driver.find_element(By.ID, "sign-in").click()


def until(check: Any, timeout: float, what: str) -> Any:
    """`check()` once it is true; an element read while the page is being replaced (after a form's
    POST and redirect) is stale or not there yet: look again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except (StaleElementReferenceException, NoSuchElementException):
            got = None
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_officer_opens_push_link_and_closes_the_case(settings: Settings, run_id: str, tmp_path: Path,
                                                      browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # 1. the real pipeline raises illegal_dumping from a track (as test_stream_transport)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    reports = track(run_id, base)
    asyncio.run(produce(settings, reports))
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log)
    dev = f"ta-{run_id}"
    try:
        def dumped() -> dict[str, Any] | None:
            got = asyncio.run(read_alerts(settings, lambda a: a["device_id"] == dev))
            mine = [a for a in got if a["kind"] == "illegal_dumping" and a["alert_id"] in raised(log)]
            return mine[0] if mine else None

        dump = wait_until(dumped, 90, proc, log, "illegal_dumping")
        until(lambda: asyncio.run(_positions(settings, dev)) >= len(reports), 30, "track in InfluxDB")
    finally:
        stop(proc)

    # 2. the alert service, with this fleet in 柳北区 and a short deadline for critical alerts
    receiver_port, api_port = free_port(), free_port()
    rules = load_rules()
    rules = msgspec.structs.replace(rules, districts=[*rules.districts, District(
        id="liubei", name="柳北区", sites=[f"fleet-{run_id}"])])
    public = f"http://127.0.0.1:{api_port}"
    config = parse_config({
        "kafka_group": f"ws-alerts-officer-{run_id}", "api": {"port": api_port, "token": {"value": TOKEN}},
        "officer": {"public_url": public, "ack_deadline_s": {"critical": 6}, "escalation_check_s": 0.5},
        "channels": [
            {"type": "webhook", "name": "city-hook", "url": f"http://127.0.0.1:{receiver_port}/hook",
             "secret": {"value": "s"}, "kinds": ["illegal_dumping"]},
            {"type": "webhook", "name": "supervisors", "when": "escalate",
             "url": f"http://127.0.0.1:{receiver_port}/escalate", "secret": {"value": "s"}},
        ],
    }, "test")
    db = tmp_path / "alerts.db"
    users(db)
    service = AlertService(config, settings, default_cooldown_s=1800, token=TOKEN, port=api_port, db_path=db,
                           rules=rules)
    runner = ServiceThread(service)
    runner.receiver_port = receiver_port
    runner.start()
    try:
        until(lambda: service.ready.is_set(), 60, "the alert service")
        pushed = until(lambda: [d for d in runner.receiver.raised if d["alert_id"] == dump["alert_id"]], 60,
                       "the push of the pipeline's alert")
        link = pushed[0]["url"]
        assert link.startswith(f"{public}/o/l/{dump['alert_id']}?e=")

        # 3. the officer of 柳北区 opens the push link on a phone: sign in, land on the alert
        browser.get(link)
        assert "/o/login" in browser.current_url
        sign_in(browser, "wang")
        until(lambda: "/o/alerts/" in browser.current_url, 20, "the alert page after sign-in")
        assert "违规倾倒" in browser.find_element(By.ID, "kind").text
        assert browser.find_element(By.ID, "district").text == "柳北区"
        assert "北京时间" in browser.find_element(By.ID, "time").text
        svg = browser.find_element(By.CSS_SELECTOR, "#map svg")
        assert svg.find_elements(By.CSS_SELECTOR, "polygon.fence"), "the disposal sites' geofences"
        assert len(svg.find_elements(By.CSS_SELECTOR, "line.track")) == len(reports) - 1
        assert svg.find_elements(By.CSS_SELECTOR, "line.track.uncovered"), "the uncovered stretch in red"
        assert svg.find_elements(By.CSS_SELECTOR, "circle.bed")
        assert svg.find_elements(By.CSS_SELECTOR, "path.event")
        assert browser.find_elements(By.CSS_SELECTOR, "#speed svg polyline.speedline")
        assert int(browser.find_element(By.ID, "track-points").text) == len(reports)
        # the load drop drawn is the one at the event, not the legal dump inside the site later
        assert "12000 kg" in browser.find_element(By.ID, "load-drop").text
        shots = settings.run_dir / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        browser.set_window_size(*PHONE)
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(PHONE[0], max(PHONE[1], int(height) + 40))
        assert browser.save_screenshot(str(shots / "officer_alert_phone.png"))
        browser.set_window_size(*PHONE)
        browser.find_element(By.ID, "show-raw").click()
        assert dump["evidence"][0] in browser.find_element(By.ID, "raw").text

        # 4. acknowledge, then close with an outcome and the case number
        browser.find_element(By.ID, "do-ack").click()
        until(lambda: "处置中" in browser.find_element(By.ID, "alert").text, 20, "acknowledged")
        Select(browser.find_element(By.ID, "outcome-select")).select_by_value("confirmed")
        browser.find_element(By.ID, "case-no").send_keys("柳城管罚〔2026〕0123号")
        browser.find_element(By.ID, "do-close").click()
        until(lambda: "已办结" in browser.find_element(By.ID, "alert").text, 20, "closed")
        stored = service.store.get(dump["alert_id"])
        assert stored["state"] == "closed" and stored["outcome"] == "confirmed"
        assert stored["case_no"] == "柳城管罚〔2026〕0123号"
        steps = [(e["action"], e["actor"]) for e in stored["events"]]
        assert ("ack", "wang") in steps and ("close", "wang") in steps
        assert stored["acked_at"] and stored["closed_at"]

        # 5. another district's officer, with the same link: 403
        browser.delete_all_cookies()
        browser.get(link)
        sign_in(browser, "zhao")
        until(lambda: "error" in browser.page_source, 20, "the refusal")
        assert browser.find_element(By.CSS_SELECTOR, "#error h1").text == "403"
        asyncio.run(_http_checks(public, dump["alert_id"], link, service))

        # 6. an unacknowledged critical alert escalates to the supervisors' channel
        other = make_alert("illegal_dumping", Severity.CRITICAL, site_id=f"fleet-{run_id}", device_id=dev,
                           subject=f"ESC{run_id}", summary="bed raised outside disposal sites",
                           evidence=("x:1:1",), ts=datetime.now(UTC), dedup_key=f"{run_id}:esc",
                           lat=24.3, lon=109.4)
        asyncio.run(_send(settings, other))
        escalated = until(lambda: [d for d in runner.receiver.escalated if d["alert_id"] == other.alert_id],
                          60, "the escalation push")
        assert escalated[0]["escalated"] is True and escalated[0]["title"].startswith("【超时未签收")
        events = [e["action"] for e in service.store.get(other.alert_id)["events"]]
        assert events.count("escalate") == 1
    finally:
        runner.close()


async def _positions(settings: Settings, dev: str) -> int:
    from wastestream.foundation.influxql import influxql

    query = f"SELECT count(lat) FROM truck_position WHERE device = '{dev}'"
    rows = await asyncio.to_thread(influxql, settings, query)
    return int(rows[0]["count"]) if rows else 0


async def _send(settings: Settings, alert: Any) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("ws.alerts", encode(alert), key=alert.alert_id.encode())
    finally:
        await producer.stop()


async def _http_checks(public: str, alert_id: str, link: str, service: AlertService) -> None:
    """The security checks at the HTTP level: session, CSRF, origin, scope, link signature and expiry."""
    page = f"{public}/o/alerts/{urllib.parse.quote(alert_id, safe='')}"
    async with aiohttp.ClientSession() as anonymous:
        r = await anonymous.get(page, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/o/login?next=")  # no session
        r = await anonymous.get(link.replace("&s=", "&s=A"), allow_redirects=False)
        assert r.status == 403  # tampered signature
        assert service.signer is not None
        expired = service.signer.link(alert_id, now=time.time() - 10 * 86400)
        r = await anonymous.get(expired.replace(service.signer.public_url, public), allow_redirects=False)
        assert r.status == 410
        r = await anonymous.get(f"{public}/o/login?next=https://evil.example/")
        assert 'value="/o/"' in await r.text()  # no open redirect
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as wang:
        r = await wang.post(f"{public}/o/login", data={"username": "wang", "password": PASSWORDS["wang"],
                                                       "next": "/o/"}, allow_redirects=False)
        assert r.status == 303
        cookie = next(c for c in jar if c.key == "ws_session")
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        r = await wang.post(f"{page}/reopen", data={"note": "x"}, allow_redirects=False)
        assert r.status == 403  # no CSRF token
        r = await wang.get(page)
        html = await r.text()
        csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = await wang.post(f"{page}/note", data={"csrf": csrf, "note": "x"},
                            headers={"Origin": "https://evil.example"}, allow_redirects=False)
        assert r.status == 403  # another origin, even with the token
        r = await wang.post(f"{page}/note", data={"csrf": csrf, "note": "复核完毕"}, allow_redirects=False)
        assert r.status == 303
        r = await wang.get(f"{public}/o/supervisor")
        assert r.status == 403  # officers do not see the supervisor page
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as boss:
        await boss.post(f"{public}/o/login",
                        data={"username": "boss", "password": PASSWORDS["boss"], "next": "/o/"})
        r = await boss.get(f"{public}/o/supervisor")
        assert r.status == 200 and "办结率" in await r.text()
        r = await boss.get(page)
        assert r.status == 200 and r.headers["Content-Security-Policy"].startswith("default-src 'none'")
