"""The edge's delivery policy with `delivery: pipeline` (edge/mqtt_session.py), step by step.

No broker: paho queues publishes while disconnected and hands out mids, and the test feeds the
PUBACKs and confirmations the session's paho callbacks would queue, on a clock it controls.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge import mqtt_session
from edge.config import MqttConfig
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(mqtt_session.time, "monotonic", c)
    return c


def session_with(tmp_path: Path, n: int) -> tuple[MqttSession, Outbox, list[str]]:
    outbox = Outbox(tmp_path / "o.db")
    ids = []
    for _ in range(n):
        entry = outbox.put("wb-1", "ws/v1/s1/weighbridge/wb-1/weighing", lambda m, s: m.encode())
        assert entry is not None
        ids.append(entry.msg_id)
    cfg = MqttConfig(delivery="pipeline", confirm_timeout_s=10, max_inflight=100)
    return MqttSession(cfg, "s1", outbox, status_kind="weighbridge"), outbox, ids


def send_and_puback(session: MqttSession) -> None:
    session._send_more()
    for mid in list(session._inflight):
        session._acks.put((mid, None))
    session._drain_acks()


def test_pubacked_is_kept_until_confirmed(tmp_path: Path, clock: Clock) -> None:
    session, outbox, ids = session_with(tmp_path, 3)
    send_and_puback(session)
    assert outbox.depth() == 3 and session.unconfirmed == 3 and session.inflight == 0
    session._confirms.put(ids[:2])
    session._drain_confirms()
    assert [e.msg_id for e in outbox.pending()] == [ids[2]] and session.unconfirmed == 1


def test_overtaken_message_is_resent_after_the_timeout(tmp_path: Path, clock: Clock) -> None:
    """A later message confirmed and an earlier one not: the earlier one was lost on the way."""
    session, outbox, ids = session_with(tmp_path, 3)
    send_and_puback(session)
    session._confirms.put([ids[2]])
    session._drain_confirms()
    clock.now += 9.0
    session._resend_overdue()
    assert session.resent == 0
    clock.now += 1.1  # checks run at most once a second
    session._resend_overdue()
    assert session.resent == 2 and session.inflight == 2 and session.unconfirmed == 0
    # the copies are PUBACKed again and wait twice as long (attempt 1) before another re-send
    send_and_puback(session)
    session._confirms.put([ids[1]])
    session._drain_confirms()
    clock.now += 19.0
    session._resend_overdue()
    assert session.resent == 2
    clock.now += 1.1
    session._resend_overdue()
    assert session.resent == 3 and outbox.depth() == 1


def test_nothing_confirmed_waits_twice_as_long(tmp_path: Path, clock: Clock) -> None:
    """No later confirmation: the pipeline may be down or lagging, so copies would only add load."""
    session, outbox, _ = session_with(tmp_path, 4)
    send_and_puback(session)
    clock.now += 15
    session._resend_overdue()
    assert session.resent == 0
    clock.now += 5.1
    session._resend_overdue()
    assert session.resent == 4 and outbox.depth() == 4


def test_new_messages_stop_at_max_unconfirmed(tmp_path: Path, clock: Clock) -> None:
    session, outbox, _ = session_with(tmp_path, 5)
    session.cfg = MqttConfig(delivery="pipeline", max_unconfirmed=3, max_inflight=100)
    send_and_puback(session)
    assert session.unconfirmed == 3
    send_and_puback(session)
    assert session.unconfirmed == 3 and outbox.depth() == 5


def test_broker_delivery_deletes_on_puback(tmp_path: Path, clock: Clock) -> None:
    session, outbox, _ = session_with(tmp_path, 3)
    session.pipeline_delivery = False
    send_and_puback(session)
    assert outbox.depth() == 0 and session.unconfirmed == 0


def test_paho_reconnect_errors_are_debug(caplog: pytest.LogCaptureFixture) -> None:
    """One warning per outage from the agent, not an ERROR per reconnect attempt from paho."""
    msg = "Client is not connected. Socket: None). Last known Connection State: MQTT_CS_CONNECTING"
    with caplog.at_level(logging.INFO):
        mqtt_session.PAHO_LOG.error(msg)
        mqtt_session.PAHO_LOG.error("failed to receive on socket")  # other errors stay errors
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [("ERROR", "failed to receive on socket")]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="edge.mqtt.paho"):
        mqtt_session.PAHO_LOG.error(msg)
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
