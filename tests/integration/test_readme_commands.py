"""The README's "Running the parts yourself", run as written, line by line.

The block is read from README.md (an edited line is what runs). It runs in a directory that mirrors
the checkout through symlinks, so its relative paths (.venv/bin/wastestream, stream/alerting/...,
.run/sim1, report.html) resolve as in the repository's root while what it writes stays out of the
tree. `make` lines run as `make -n` (a real `make` would reinstall the shared venv when
pyproject.toml changed); their `# or:` alternative runs for real. `export` lines set the
environment of the lines after them. The five that run until Ctrl-C (worker, bridge, alert
service, simulator, edge agent) start in the background, each waited for until it is up; the edge
agent's weighings must reach InfluxDB through the bridge and the worker. `ID` is an alert this test
puts on ws.alerts, as a worker would. At the end each background process gets SIGTERM and must
exit 0, and no line anywhere may carry a traceback.

The test's environment gives the run its own Faust app id (started at the end of the shared
topics), InfluxDB database, alert API port and run directory, so it shares the local services with
other runs without reading their traffic.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.codec import encode
from contract.events import Severity
from contract.topics import KAFKA_TOPICS
from stream.alerting.make import make_alert
from tests.integration.workerkit import free_port
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import Settings
from wastestream.pipeline import commit_group_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("worker", "bridge", "alerts serve", "sim", "edge run")


def readme_block(title: str = "## Running the parts yourself") -> list[str]:
    """The command lines of the section's first ```sh block (comments kept: `# or:` is one)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(title):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {title}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def split_line(line: str) -> tuple[list[str], str]:
    """The `;`-separated commands of a line and its trailing comment."""
    code, _, comment = line.partition("  #")
    return [c.strip() for c in code.split(";") if c.strip()], comment.strip()


def _mirror(dest: Path) -> None:
    for entry in REPO.iterdir():
        if entry.name not in (".run", ".git", "report.html"):
            (dest / entry.name).symlink_to(entry)


class Run:
    """The block's processes in one mirrored checkout and one environment."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.logs = root / "logs"
        self.logs.mkdir()
        self.background: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = self.env
        if "services" in command:  # the local services keep their pid files in the checkout's .run
            env = {**env, "WS_RUN_DIR": str(REPO / ".run")}
        r = subprocess.run(shlex.split(command), cwd=self.root, env=env, capture_output=True,
                           text=True, timeout=timeout)
        assert "Traceback" not in r.stdout + r.stderr, f"{command}:\n{r.stderr}"
        return r

    def start(self, command: str) -> Path:
        log = self.logs / f"{len(self.background)}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(shlex.split(command), cwd=self.root, env=self.env, stdout=fh, stderr=fh)
        self.background.append((command, proc, log))
        return log

    def stop_all(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for command, proc, _ in reversed(self.background):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[command] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[command] = None
        return codes


def _until(what: str, check: object, timeout: float, run: Run) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for command, proc, log in run.background:
            if proc.poll() is not None and "sim " not in command:
                pytest.fail(f"{command} exited {proc.returncode} while waiting for {what}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
        if check():  # type: ignore[operator]
            return
        time.sleep(1)
    tails = "\n".join(f"--- {c}\n{lg.read_text(errors='replace')[-1500:]}" for c, _, lg in run.background)
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def _weighings(settings: Settings, site: str) -> int:
    try:
        rows = influxql(settings, f"SELECT count(net_kg) FROM weighing WHERE site = '{site}'")
    except InfluxQueryError:
        return 0
    return int(rows[0]["count"]) if rows else 0


def _put_alert(settings: Settings, unique: str) -> str:
    from aiokafka import AIOKafkaProducer

    alert = make_alert("illegal_dumping", Severity.CRITICAL, site_id="lz-readme",
                       device_id=f"truck-{unique}", subject=f"桂B{unique[:5]}", summary="车厢在消纳场外举升",
                       evidence=[f"readme-{unique}"], ts=datetime.now(UTC), dedup_key=f"readme:{unique}",
                       lat=24.3251, lon=109.4153)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(KAFKA_TOPICS["alert"], encode(alert), key=alert.alert_id.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    return alert.alert_id


def _api_has(port: int, token: str, alert_id: str) -> bool:
    url = f"http://127.0.0.1:{port}/alerts/{urllib.request.quote(alert_id, safe='')}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.usefixtures("live_services")
def test_running_the_parts_yourself_as_written(tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    root = tmp_path / "checkout"
    root.mkdir()
    _mirror(root)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update({"WS_FAUST_APP_ID": f"readme-{unique}", "WS_INFLUX_DB": f"readme_{unique}",
                "WS_ALERTS_PORT": str(port), "WS_RUN_DIR": str(root / ".run")})
    settings = Settings(influx_db=env["WS_INFLUX_DB"], faust_app_id=env["WS_FAUST_APP_ID"])
    run = Run(root, env)
    alert_id = ""
    ran: list[str] = []
    try:
        for line in readme_block():
            commands, comment = split_line(line)
            for command in commands:
                ran.append(command)
                if command.startswith("make "):
                    r = run.run(f"make -n {command[5:]}")
                    assert r.returncode == 0, r.stderr
                    assert "services.sh up" in r.stdout, r.stdout
                    alternative = comment.removeprefix("or:").strip()
                    if comment.startswith("or:"):
                        ran.append(alternative)
                        r = run.run(alternative, timeout=300)
                        assert r.returncode == 0, r.stderr
                elif command.startswith("export "):
                    name, _, value = command[7:].partition("=")
                    env[name] = value
                elif any(command.startswith(f".venv/bin/wastestream {p}") for p in LONG_RUNNING):
                    _start_and_wait(run, command, settings, port)
                else:
                    if " ID " in f"{command} ":
                        alert_id = _put_alert(settings, unique)
                        held = functools.partial(_api_has, port, env["WS_ALERTS_TOKEN"], alert_id)
                        _until("the alert service to hold our alert", held, 90, run)
                        command = command.replace(" ID ", f" {shlex.quote(alert_id)} ")
                    r = run.run(command, timeout=300)
                    assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
                    _check_output(command, r, root, alert_id)
    finally:
        codes = run.stop_all()
    for command, code in codes.items():
        assert code == 0, f"{command}: exit {code} after SIGTERM"
    for command, _, log in run.background:
        assert "Traceback" not in log.read_text(errors="replace"), f"{command}: a traceback in its log"
    assert alert_id, "the block closes no alert"
    assert any(c.startswith(".venv/bin/wastestream edge run") for c in ran)


def _start_and_wait(run: Run, command: str, settings: Settings, port: int) -> None:
    if " worker" in command:  # its fresh app id reads only what comes next
        sources = [topic for event, topic in KAFKA_TOPICS.items() if event != "alert"]
        asyncio.run(commit_group_at_end(settings.kafka_bootstrap, settings.faust_app_id, sources))
    if " alerts serve" in command:  # its config's group, too: not every earlier run's alerts
        group = re.search(r"^kafka_group: (\S+)", (run.root / command.split("--config ")[1].split()[0])
                          .read_text(encoding="utf-8"), re.M)
        if group:
            alerts = [KAFKA_TOPICS["alert"]]
            asyncio.run(commit_group_at_end(settings.kafka_bootstrap, group.group(1), alerts))
    log = run.start(command)
    text = lambda: log.read_text(errors="replace")  # noqa: E731
    if " worker" in command:
        _until("the worker", lambda: "Ready" in text(), 180, run)
    elif " bridge" in command:
        _until("the bridge", lambda: "MQTT connected" in text(), 60, run)
    elif " alerts serve" in command:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        _until("the alert API", listening, 60, run)
    elif " sim " in command:
        config = re.search(r"--run-dir (\S+)", command)
        assert config, command
        edge_dir = run.root / config.group(1) / "edge"
        _until("the simulator's edge configs", lambda: any(edge_dir.glob("*.yaml")), 90, run)
    else:  # the edge agent: its weighings reach InfluxDB through the bridge and the worker
        site = Path(command.split("--config ")[1].split()[0]).stem
        _until(f"a weighing of {site} in InfluxDB", lambda: _weighings(settings, site) > 0, 240, run)


def _check_output(command: str, r: subprocess.CompletedProcess[str], root: Path, alert_id: str) -> None:
    if " report " in command:
        out = root / command.split("--out ")[1].split()[0]
        assert out.is_file() and "<html" in out.read_text(encoding="utf-8").lower()
    elif " import " in command:
        assert "rows read" in r.stdout, r.stdout
    elif " alerts close " in command:
        assert f"{alert_id}:" in r.stdout and "closed" in r.stdout, r.stdout
