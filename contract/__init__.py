"""The wire contract shared by edge, bridge and stream: events, topics, codec, schema."""

from contract.codec import ContractError, decode, encode
from contract.events import (
    SCHEMA_VERSION,
    Alert,
    AnyEvent,
    BinLevel,
    Deposit,
    DeviceStatus,
    Envelope,
    TruckTelemetry,
    WasteCategory,
    Weighing,
)
from contract.msgid import make_msg_id, parse_msg_id
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS, kafka_topic, mqtt_topic, parse_mqtt_topic

__all__ = [
    "DEADLETTER_TOPIC",
    "KAFKA_TOPICS",
    "SCHEMA_VERSION",
    "Alert",
    "AnyEvent",
    "BinLevel",
    "ContractError",
    "Deposit",
    "DeviceStatus",
    "Envelope",
    "TruckTelemetry",
    "WasteCategory",
    "Weighing",
    "decode",
    "encode",
    "kafka_topic",
    "make_msg_id",
    "mqtt_topic",
    "parse_mqtt_topic",
    "parse_msg_id",
]
