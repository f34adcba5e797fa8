"""Start and stop the processes of the pipeline on one machine: for the demo and the tests.

Each part runs as its own OS process (as it would in production), with its log
under `<run_dir>/logs/`. Stopping sends SIGTERM, waits, then SIGKILL, so a
Ctrl-C of the demo leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import REPO_ROOT, Settings

log = logging.getLogger("wastestream.pipeline")

SERVICES_SCRIPT = REPO_ROOT / "deploy" / "local" / "services.sh"


class PipelineError(RuntimeError):
    pass


class CoordinatorNotReady(logging.Filter):
    """While a fresh Kafka loads its offsets topic, aiokafka's group client logs the wait at ERROR
    (`Group Coordinator Request failed: [Error 15] CoordinatorNotAvailableError`) and WARNING
    (`Marking the coordinator dead`) and retries until the coordinator is there. For the short-lived
    group client of commit_group_at_end (`group`) that wait is expected: those records become
    DEBUG. A non-retriable error, or another group's record, keeps its level."""

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group = group

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        lookup = (record.msg == "Group Coordinator Request failed: %s" and bool(args)
                  and getattr(args[0], "retriable", False))
        dead = str(record.msg).startswith("Marking the coordinator dead") and self.group in args
        if record.levelno >= logging.WARNING and (lookup or dead):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


COORDINATOR_LOG = "aiokafka.consumer.group_coordinator"


async def commit_group_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Give consumer `group` committed offsets at the end of `topics`: it reads only what comes next.

    A new group (a fresh Faust app id) otherwise starts at the earliest offset and first replays
    every record retained in the shared topics: right for a new production deployment, wrong
    for a demo or a test that wants to see its own traffic.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    quiet = CoordinatorNotReady(group)
    logging.getLogger(COORDINATOR_LOG).addFilter(quiet)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for topic in topics
                   for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if tps:
                ends = await consumer.end_offsets(tps)
                consumer.assign(tps)
                await consumer.commit(dict(ends))
        finally:
            await consumer.stop()
    finally:
        logging.getLogger(COORDINATOR_LOG).removeFilter(quiet)


def services(action: str, *names: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run deploy/local/services.sh; raise PipelineError with its one-line reason on failure."""
    result = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), action, *names],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if result.returncode != 0 and action != "status":
        reason = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PipelineError(f"services.sh {action} failed: {reason}")
    return result


def private_services_env(run_dir: Path, mqtt: int, kafka: int, influx: int) -> dict[str, str]:
    """The environment of private services (own run dir and ports: deploy/local/services.sh reads
    these) and of every process that talks to them. Why: a run on the shared services also gets
    every other pipeline's traffic (each bridge group forwards each MQTT message into Kafka)."""
    return {
        "WS_RUN_DIR": str(run_dir), "WS_MQTT_PORT": str(mqtt), "WS_KAFKA_PORT": str(kafka),
        "WS_KAFKA_CONTROLLER_PORT": str(kafka + 1), "WS_INFLUX_PORT": str(influx),
        "WS_INFLUX_RPC_PORT": str(influx + 2), "WS_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
        "WS_INFLUX_URL": f"http://127.0.0.1:{influx}",
    }


def services_running(env: dict[str, str] | None = None) -> bool:
    return services("status", env=env).returncode == 0


def drop_mqtt_sessions(settings: Settings, client_ids: list[str]) -> None:
    """End the bridges' persistent sessions: left behind, Mosquitto would queue every device
    message for them (up to max_queued_messages each) long after the run."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    for client_id in client_ids:
        client = make_client(client_id, MqttAuth.from_settings(settings))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        try:
            client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10, clean_start=True,
                           properties=props)
            client.loop(timeout=1.0)
            client.disconnect()
        except OSError as exc:
            log.warning("could not end MQTT session %s: %s", client_id, exc)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Pipeline:
    """A set of child processes sharing one run directory and one environment."""

    settings: Settings
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    mqtt_sessions: list[str] = field(default_factory=list)
    """Bridge client ids whose persistent MQTT sessions end with the pipeline (see start_bridge)."""

    def __post_init__(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        base = dict(os.environ)
        base.update(
            WS_RUN_DIR=str(self.settings.run_dir),
            WS_MQTT_HOST=self.settings.mqtt_host,
            WS_MQTT_PORT=str(self.settings.mqtt_port),
            WS_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            WS_INFLUX_URL=self.settings.influx_url,
            WS_INFLUX_DB=self.settings.influx_db,
            WS_FAUST_APP_ID=self.settings.faust_app_id,
            PYTHONUNBUFFERED="1",
        )
        base.update(self.env)
        self.env = base

    def start(self, name: str, *args: str) -> Process:
        """Start `wastestream <args>` (as `python -m wastestream.cli`) with its output in a log file."""
        log_path = self.run_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "wastestream.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,  # a Ctrl-C on the terminal reaches us, and we stop them in order
            )
        proc = Process(name, popen, log_path)
        self.processes.append(proc)
        log.info("started %s (pid %d), log %s", name, popen.pid, log_path)
        return proc

    def start_bridge(self, index: int) -> Process:
        """A bridge with a client id and MQTT share group of this pipeline's own (its Faust app id).

        Mosquitto keeps dealing a shared subscription's messages to a member whose persistent
        session outlives its process: a bridge session left by an earlier run in a common group
        would swallow a share of this run's messages until it expired. So each run has its own
        group, and stop_all ends the run's sessions."""
        client_id = f"{self.settings.faust_app_id}-bridge-{index}"
        self.mqtt_sessions.append(client_id)
        return self.start(f"bridge-{index}", "bridge", "--client-id", client_id,
                          "--group", self.settings.faust_app_id)

    def start_sim(self, scenario_path: Path, duration: float, ready_timeout: float = 30.0,
                  extra: Sequence[str] = ()) -> Process:
        """Start the simulated city and wait until its devices exist (ptys, ports, edge configs);
        `extra`: more `wastestream sim` arguments (--replay-day, --hold)."""
        sim = self.start("sim", "sim", "--scenario", str(scenario_path), "--run-dir", str(self.run_dir),
                         "--duration", str(duration), *extra)
        ready = self.run_dir / "sim" / "ready"
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise PipelineError(f"simulator did not create its devices within {ready_timeout:.0f} s")
            time.sleep(0.2)
        return sim

    def check_alive(self) -> None:
        """Raise if a child died on its own: the demo must not report on a half pipeline."""
        for proc in self.processes:
            code = proc.popen.poll()
            if code is not None and code != 0:
                tail = proc.log_path.read_text(errors="replace").splitlines()[-15:]
                raise PipelineError(f"{proc.name} exited with {code}; last lines of {proc.log_path}:\n"
                                    + "\n".join(tail))

    def stop(self, proc: Process, timeout: float = 15.0) -> int | None:
        return self.stop_together([proc], timeout)[0]

    def stop_together(self, procs: list[Process], timeout: float = 15.0) -> list[int | None]:
        """SIGTERM all of `procs` at once, then wait (one deadline) and kill what is left."""
        for proc in procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", proc.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        return [proc.popen.returncode for proc in procs]

    def stop_all(self) -> None:
        """Stop in reverse start order: producers first, so nothing is left half-delivered. The
        workers stop together: one at a time, each stop would make the others rebalance, and a
        rebalance during a stop is what keeps a worker past its 15 s (aiokafka retrying the
        coordinator)."""
        ordered = list(reversed(self.processes))
        workers = [p for p in ordered if p.name.startswith("worker-")]
        for proc in ordered:
            if proc not in workers:
                self.stop(proc)
            elif proc is workers[0]:
                self.stop_together(workers)
        self.processes.clear()
        if self.mqtt_sessions:
            drop_mqtt_sessions(self.settings, self.mqtt_sessions)
            self.mqtt_sessions.clear()

    def wait(self, proc: Process, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while proc.popen.poll() is None:
            if time.monotonic() > deadline:
                raise PipelineError(f"{proc.name} did not finish within {timeout:.0f} s")
            self.check_alive()
            time.sleep(0.2)
        return proc.popen.returncode
