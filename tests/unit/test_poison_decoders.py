"""Issue 11, finding 1: a poison payload (JSON nested 1,000 deep) is one bad message everywhere.

msgspec raises RecursionError for it, even while skipping an unknown field; before the fix that
escaped the contract decoder, the edge's confirmation decoder (raised from a paho callback, it
stops the network loop) and the workers' per-record decoder (it stopped the agent).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract import DeviceStatus, encode
from contract.acks import AckError, decode_ack, encode_ack
from contract.codec import ContractError, decode
from contract.events import DeviceState
from edge.config import MqttConfig
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox
from stream.agents import runner

DEEP = b"[" * 1000 + b"]" * 1000


def status(seq: int = 1) -> bytes:
    return encode(DeviceStatus(msg_id=f"wb1:1:{seq}", device_id="wb1", site_id="s1", ts=datetime.now(UTC),
                               state=DeviceState.ONLINE))


def poisoned(payload: bytes) -> bytes:
    return b'{"x":' + DEEP + b"," + payload[1:]


@pytest.mark.parametrize("payload", [poisoned(status()), b'{"a":' * 1000 + b"1" + b"}" * 1000])
def test_contract_decode_gives_a_reason_for_deep_nesting(payload: bytes) -> None:
    with pytest.raises(ContractError, match="nested"):
        decode(payload)
    with pytest.raises(ContractError):
        decode(payload, DeviceStatus)


def test_contract_decode_refuses_a_tombstone_with_a_reason() -> None:
    with pytest.raises(ContractError, match="NoneType"):
        decode(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [poisoned(encode_ack(["wb1:1:1"])), b'{"a":' * 1000 + b"1" + b"}" * 1000])
def test_ack_decoder_gives_a_reason_for_deep_nesting(payload: bytes) -> None:
    with pytest.raises(AckError, match="nested"):
        decode_ack(payload)


def test_edge_session_ignores_a_poison_confirmation_and_takes_the_next(tmp_path: Path) -> None:
    session = MqttSession(MqttConfig(delivery="pipeline"), "s1", Outbox(tmp_path / "o.db"),
                          status_kind="weighbridge")
    for payload in (poisoned(encode_ack(["wb1:1:1"])), encode_ack(["wb1:1:2"])):
        message = mqtt.MQTTMessage(topic=session.confirm_topic.encode())
        message.payload = payload
        session._on_message(session.client, None, message)  # raised into paho before the fix
    assert session._confirms.get_nowait() == ["wb1:1:2"]
    assert session._confirms.empty()


@dataclass
class Record:
    value: bytes | None


def test_worker_decoder_dead_letters_poison_and_tombstones_and_keeps_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A tombstone (value None) raised TypeError out of the decoder and stopped the agent."""
    dead: list[bytes] = []

    async def send_deadletter(record: bytes) -> None:
        dead.append(record)

    monkeypatch.setattr(runner, "send_deadletter", send_deadletter)
    events = [Record(status(1)), Record(poisoned(status(2))), Record(None), Record(status(3))]
    valid, rejected = asyncio.run(runner.decode_valid(events, DeviceStatus, "ws.device-status"))
    assert [m.msg_id for _, m, _ in valid] == ["wb1:1:1", "wb1:1:3"] and rejected == 2
    records = [json.loads(r) for r in dead]
    assert records[0]["reason"] and records[0]["payload_bytes"] == len(poisoned(status(2)))
    assert "NoneType" in records[1]["reason"] and records[1]["topic"] == "kafka:ws.device-status"
