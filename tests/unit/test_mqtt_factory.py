"""One place builds MQTT clients (wastestream/foundation/mqtt.py): TLS and credentials set one way."""

import re
from pathlib import Path

import pytest

from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import REPO_ROOT, Settings

SOURCE_DIRS = ("contract", "edge", "stream", "firmware_sim", "dashboards", "wastestream")
CONSTRUCTION = re.compile(r"\bmqtt\.Client\(|\bClient\(\s*(callback_api_version=)?CallbackAPIVersion")


def test_no_client_is_built_outside_the_factory() -> None:
    """A second construction would be a fourth way to (not) set TLS: the product code has none."""
    factory = REPO_ROOT / "wastestream" / "foundation" / "mqtt.py"
    found = [f"{path.relative_to(REPO_ROOT)}:{n}"
             for d in SOURCE_DIRS for path in sorted((REPO_ROOT / d).rglob("*.py")) if path != factory
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if CONSTRUCTION.search(line)]
    assert found == []


def test_a_client_certificate_without_a_ca_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the CA"):
        make_client("c", MqttAuth(tls_cert="/x/site.crt", tls_key="/x/site.key"))


def test_plain_by_default_tls_with_a_ca_credentials_with_a_username() -> None:
    plain = make_client("plain")
    assert plain._ssl_context is None and plain._username is None
    system = make_client("sys", MqttAuth(tls_system_ca=True, username="officer", password="pw"))
    assert system._ssl_context is not None
    assert (system._username, system._password) == (b"officer", b"pw")
    no_user = make_client("p", MqttAuth(password="pw"))
    assert no_user._username is None and no_user._password is None


def test_from_settings_reads_the_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    auth = MqttAuth.from_settings(Settings(mqtt_username="bridge-1", mqtt_password_file=str(secret)))
    assert (auth.username, auth.password) == ("bridge-1", "s3cret")
    assert "s3cret" not in repr(auth)
    assert MqttAuth.from_settings(Settings(mqtt_password_file=str(tmp_path / "absent"))).password is None
