"""The one place that builds a paho MQTT client: MQTT 5, callback API 2, TLS and credentials.

Every process (edge session, bridge, alert channel, bench, tools) connects through `make_client`, so
TLS is set one way: a CA file (or the system's CAs) turns it on, a client certificate without a CA
is refused rather than silently sent in clear, and a password goes with a username only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wastestream.foundation.settings import Settings


@dataclass(frozen=True)
class MqttAuth:
    """How one connection proves itself and protects its traffic; the empty default is plain loopback."""

    tls_ca: str = ""
    """CA file: TLS is on when it is set (or `tls_system_ca`)."""
    tls_cert: str = ""
    tls_key: str = ""
    tls_system_ca: bool = False
    """TLS checked against the system's CAs (a public broker with no CA file of ours)."""
    username: str = ""
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttAuth:
        """The services' connection (WS_MQTT_*); the password file is read now, when the client is built."""
        return cls(tls_ca=settings.mqtt_tls_ca, tls_cert=settings.mqtt_tls_cert,
                   tls_key=settings.mqtt_tls_key, username=settings.mqtt_username,
                   password=settings.mqtt_password() if settings.mqtt_username else None)


def make_client(client_id: str, auth: MqttAuth | None = None, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client (MQTT 5, callback API 2) with `auth`'s TLS and credentials set, not yet connected."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    auth = auth or MqttAuth()
    if auth.tls_ca or auth.tls_system_ca:
        client.tls_set(ca_certs=auth.tls_ca or None, certfile=auth.tls_cert or None,
                       keyfile=auth.tls_key or None)
    elif auth.tls_cert:
        raise ValueError("an MQTT client certificate needs the CA too (WS_MQTT_TLS_CA / --tls-ca)")
    if auth.username:
        client.username_pw_set(auth.username, auth.password)
    return client
