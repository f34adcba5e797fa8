"""Helpers for the metrics and health tests: scrape and parse /metrics, ask /healthz and /readyz, run a
private Mosquitto (a real broker on a port of the test's own, so a bridge or an edge agent sees only
the test's traffic and can be cut off without touching the shared broker)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from contract import Weighing
from contract.events import Direction, WasteCategory
from tests.integration.workerkit import free_port as free_port  # one free-port helper for the tests
from wastestream.foundation.settings import Settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")
    except OSError as exc:
        return 0, str(exc)


def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus-client's own text parser."""
    status, body = get(port, "/metrics")
    assert status == 200, (status, body)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0, *,
             proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> Any:
    """Poll `check` until truthy; fail with what was last seen (and the process's log tail)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) waiting for {what}: {_tail(log)}")
        try:
            last = check()
        except (AssertionError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}; {_tail(log)}")


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""


def ready(port: int) -> bool:
    return get(port, "/readyz")[0] == 200


def answered(port: int, path: str, status: int | None = None) -> Callable[[], tuple[int, str] | None]:
    """For `wait_for`: GET `path`'s (status, body) once it answers (with `status`, if given)."""
    def check() -> tuple[int, str] | None:
        got = get(port, path)
        return got if got[0] and (status is None or got[0] == status) else None
    return check


class PrivateBroker:
    """`mosquitto` on 127.0.0.1:port, anonymous, no persistence; `stop()` cuts every client off."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        conf = workdir / f"mosquitto-{port}.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = workdir / f"mosquitto-{port}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._listening, f"mosquitto on {port}", 10, proc=self.proc, log=self.log)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def weighing(site: str, device: str, seq: int) -> Weighing:
    """A valid weighbridge ticket of `device` (msg_id epoch 1, sequence `seq`)."""
    return Weighing(msg_id=f"{device}:1:{seq}", device_id=device, site_id=site, ts=datetime.now(UTC),
                    ticket_id=f"T{seq}", plate="桂B12345", direction=Direction.INBOUND, gross_kg=30000.0,
                    tare_kg=12000.0, net_kg=18000.0, category=WasteCategory.KITCHEN, origin="district-3")


async def group_offsets(settings: Settings, group: str, topic: str
                        ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(end offsets, `group`'s committed offsets, 0 where none) of every partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = dict(await consumer.end_offsets(tps))
        return ends, {tp: await consumer.committed(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()
