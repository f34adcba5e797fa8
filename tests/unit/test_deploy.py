"""What can be checked of deploy/production without Docker: compose, unit file, broker config, scripts."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_security import IMAGE_PLUGIN, MOSQUITTO_DIR, localize_mosquitto_conf
from wastestream.foundation.settings import REPO_ROOT

PROD = REPO_ROOT / "deploy" / "production"
COMPOSE = yaml.safe_load((PROD / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SECRET_WORDS = re.compile(r"(PASSWORD|TOKEN|SECRET|_KEY)\b", re.I)


def test_compose_has_the_whole_stack() -> None:
    assert {"mosquitto", "kafka", "influxdb", "grafana", "worker", "alerts"} <= set(SERVICES)
    assert len([s for s in SERVICES if s.startswith("bridge-")]) >= 2
    assert SERVICES["worker"]["deploy"]["replicas"] == "${WS_WORKERS:-2}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_a_healthcheck_and_a_restart_policy(name: str) -> None:
    svc = SERVICES[name]
    assert "image" in svc or "build" in svc
    assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert svc["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_inline_secrets(name: str) -> None:
    """A secret-looking variable may only name a file (…_FILE / a /run/secrets path), never hold a value."""
    env = SERVICES[name].get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so it can be checked"
    for key, value in env.items():
        if SECRET_WORDS.search(key):
            assert key.endswith("FILE") and str(value).startswith("/run/secrets/"), (key, value)
    for arg in SERVICES[name].get("command", []):
        assert not re.search(r"--password(?!-file)", str(arg)), arg


def test_secrets_are_files_outside_the_repository() -> None:
    for name, spec in COMPOSE["secrets"].items():
        assert spec["file"].startswith("${WS_SECRETS_DIR:-./secrets}/"), name
    ignored = (PROD / ".gitignore").read_text().split()
    assert "secrets/" in ignored and ".env" in ignored
    for path in [*PROD.rglob("*"), *(REPO_ROOT / "deploy" / "pki").rglob("*")]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "PRIVATE KEY-----" not in text and "$7$101$" not in text, path
            assert not re.search(r'"(password|salt)"\s*:\s*"', text), path  # a dynamic-security config


def test_every_used_secret_is_declared() -> None:
    declared = set(COMPOSE["secrets"])
    for name, svc in SERVICES.items():
        assert set(svc.get("secrets", [])) <= declared, name
        for value in svc.get("environment", {}).values():
            for used in re.findall(r"/run/secrets/(\w+)", str(value)):
                assert used in svc.get("secrets", []), (name, used)


def test_only_tls_mqtt_and_grafana_are_published() -> None:
    published = {name: svc["ports"] for name, svc in SERVICES.items() if "ports" in svc}
    assert set(published) == {"mosquitto", "grafana"}
    assert [p.split(":")[-1] for p in published["mosquitto"]] == ["8883", "8884"]


def test_env_example_has_no_secret_values() -> None:
    for line in (PROD / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            assert not SECRET_WORDS.search(key), key


def test_grafana_provisioning() -> None:
    ds = yaml.safe_load((PROD / "grafana/provisioning/datasources/influxdb.yaml").read_text())["datasources"][
        0
    ]
    assert ds["type"] == "influxdb" and ds["url"] == "http://influxdb:8086"
    assert "version" not in ds.get("jsonData", {})  # InfluxQL (the default), not Flux
    assert ds["secureJsonData"]["password"].startswith("$__file{/run/secrets/")
    dash = yaml.safe_load((PROD / "grafana/provisioning/dashboards/wastestream.yaml").read_text())
    path = dash["providers"][0]["options"]["path"]
    mounts = SERVICES["grafana"]["volumes"]
    assert f"../../dashboards:{path}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_influxdb_init_creates_the_dbrp_mapping() -> None:
    script = (PROD / "influxdb/init-dbrp.sh").read_text()
    assert "influx v1 dbrp create" in script and "--default" in script
    assert any(
        v.endswith("/docker-entrypoint-initdb.d/10-dbrp.sh:ro") for v in SERVICES["influxdb"]["volumes"]
    )


def test_broker_in_compose_is_the_tested_config() -> None:
    """Compose mounts exactly the files tests/integration/test_security.py runs."""
    mounts = SERVICES["mosquitto"]["volumes"]
    assert "./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert "${WS_SECRETS_DIR:-./secrets}/mosquitto:/mosquitto/secrets:ro" in mounts  # dynamic-security.json
    assert MOSQUITTO_DIR == PROD / "mosquitto"


def test_each_bridge_has_its_own_account() -> None:
    """The broker names a session by its account (use_username_as_clientid): two bridges sharing
    an account would take over each other's session."""
    bridges = {name: svc for name, svc in SERVICES.items() if name.startswith("bridge-")}
    accounts = [svc["command"][svc["command"].index("--username") + 1] for svc in bridges.values()]
    assert accounts == sorted(bridges) and len(set(accounts)) == len(accounts)
    for name, svc in bridges.items():
        secret = svc["command"][svc["command"].index("--password-file") + 1].removeprefix("/run/secrets/")
        assert secret in svc["secrets"] and COMPOSE["secrets"][secret]["file"].endswith(
            f"/mqtt/{name}.secret"
        )


def test_the_security_test_changes_only_paths_and_ports() -> None:
    prod = (MOSQUITTO_DIR / "mosquitto.conf").read_text().splitlines()
    local = localize_mosquitto_conf("\n".join(prod), Path("/tmp/x"), 1111, 2222, "/opt/p.so").splitlines()
    assert len(prod) == len(local)
    changed = [(a, b) for a, b in zip(prod, local, strict=True) if a != b]
    assert changed
    for a, b in changed:
        assert a.replace("/mosquitto/", "/tmp/x/") == b or (a, b) in {
            ("listener 8883", "listener 1111 127.0.0.1"),
            ("listener 8884", "listener 2222 127.0.0.1"),
            (f"plugin {IMAGE_PLUGIN}", "plugin /opt/p.so"),
        }, (a, b)


def test_broker_config_is_tls_only_and_closed() -> None:
    lines = [ln.strip() for ln in (MOSQUITTO_DIR / "mosquitto.conf").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "allow_anonymous false" in lines and "per_listener_settings false" in lines
    listeners = [i for i, ln in enumerate(lines) if ln.startswith("listener ")]
    assert [lines[i] for i in listeners] == ["listener 8883", "listener 8884"]
    for start, end in zip(listeners, [*listeners[1:], len(lines)], strict=True):
        block = lines[start:end]
        assert any(ln.startswith("certfile ") for ln in block) and any(
            ln.startswith("keyfile ") for ln in block
        )
    assert "require_certificate true" in lines[listeners[1] :]
    assert "use_identity_as_username true" in lines[listeners[1] :]
    # Sessions belong to accounts on both ports, and the plugin (not acl_file) checks SUBSCRIBEs.
    for start, end in zip(listeners, [*listeners[1:], len(lines)], strict=True):
        assert "use_username_as_clientid true" in lines[start:end]
    assert not any(ln.startswith(("acl_file", "password_file")) for ln in lines)
    assert lines[: listeners[0]][-2:] == [
        f"plugin {IMAGE_PLUGIN}",
        "plugin_opt_config_file /mosquitto/secrets/dynamic-security.json",
    ]


def _dynsec(accounts: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """dynsec.py's config for {name: kind}, secrets made up here."""
    lines = []
    for name, kind in accounts.items():
        (tmp_path / f"{name}.secret").write_text(f"pw-{name}\n")
        lines.append(f"{kind}\t{name}\t{tmp_path / f'{name}.secret'}\n")
    out = tmp_path / "dynsec.json"
    done = subprocess.run(
        [sys.executable, str(MOSQUITTO_DIR / "dynsec.py"), str(out)],
        input="".join(lines),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(out.read_text()))


def test_dynsec_confines_sites_to_their_own_prefix_and_confirmations(tmp_path: Path) -> None:
    config = _dynsec(
        {"site-a": "site", "bridge-1": "bridge", "alerts": "alerts", "officer": "officer"}, tmp_path
    )
    assert config["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {
        r["rolename"]: {(a["acltype"], a["topic"]) for a in r["acls"] if a["allow"]} for r in config["roles"]
    }
    assert roles["site:site-a"] == {
        ("publishClientSend", "ws/v1/site-a/#"),
        ("subscribeLiteral", "ws/ack/v1/site-a"),  # literal: no wildcard, no $share form of it
        ("publishClientReceive", "ws/ack/v1/site-a"),
    }
    assert ("subscribePattern", "$share/+/ws/v1/#") in roles["bridge"]
    assert ("publishClientSend", "ws/ack/v1/#") in roles["bridge"]
    assert not any(
        t == "subscribePattern" and not topic.startswith("$share/") for t, topic in roles["bridge"]
    )
    clients = {c["username"]: c for c in config["clients"]}
    assert {n: [r["rolename"] for r in c["roles"]] for n, c in clients.items()} == {
        "alerts": ["alerts"],
        "bridge-1": ["bridge"],
        "officer": ["officer"],
        "site-a": ["site:site-a"],
    }
    site = clients["site-a"]
    digest = hashlib.pbkdf2_hmac("sha512", b"pw-site-a", base64.b64decode(site["salt"]), site["iterations"])
    assert base64.b64decode(site["password"]) == digest  # Mosquitto's PBKDF2-SHA512, never the secret
    assert "pw-site-a" not in (tmp_path / "dynsec.json").read_text()
    assert (tmp_path / "dynsec.json").stat().st_mode & 0o777 == 0o600


def test_dynsec_refuses_an_unknown_kind_and_an_empty_secret(tmp_path: Path) -> None:
    (tmp_path / "x.secret").write_text("\n")
    for line in ("site\tx\t{}\n", "root\ty\t{}\n"):
        done = subprocess.run(
            [sys.executable, str(MOSQUITTO_DIR / "dynsec.py"), str(tmp_path / "out.json")],
            input=line.format(tmp_path / "x.secret"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and "make-accounts:" in done.stderr, done.stderr
    assert not (tmp_path / "out.json").exists()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "wastestream-edge@.service"
    unit.write_text((PROD / "systemd" / "wastestream-edge@.service").read_text())
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "wastestream-edge@site-a.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        ln
        for ln in (done.stdout + done.stderr).splitlines()
        if ln.strip() and "/opt/wastestream/venv/bin/python is not executable" not in ln
    ]
    assert problems == []  # the only complaint allowed: the venv is not installed on this machine


def test_systemd_unit_essentials() -> None:
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PROD / "systemd" / "wastestream-edge@.service")
    svc = parser["Service"]
    assert svc["ExecStart"].endswith("--config /etc/wastestream/%i.yaml")
    assert svc["Restart"] == "always" and svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["User"] != "root" and svc["StateDirectory"] == "wastestream/%i"


def test_scripts_are_shellcheck_clean() -> None:
    """No skip: `make test` installs shellcheck (deploy/local/packages.sh)."""
    deploy = REPO_ROOT / "deploy"
    scripts = [*deploy.rglob("*.sh"), REPO_ROOT / ".ci" / "run"]
    assert len(scripts) >= 14
    done = subprocess.run(
        ["shellcheck", "-x", *(str(s.relative_to(REPO_ROOT)) for s in scripts)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout


def test_init_secrets_makes_every_secret_compose_mounts(tmp_path: Path) -> None:
    """init-secrets.sh end to end: every `secrets:` file of compose, the broker's files, an account
    and certificate per site and service; a reserved name as a site is refused."""
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "WS_SECRETS_DIR": str(tmp_path / "s"),
        "HOME": str(tmp_path),
    }
    script = str(PROD / "init-secrets.sh")
    done = subprocess.run(["bash", script, "site-a"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    for spec in COMPOSE["secrets"].values():
        assert (tmp_path / "s" / spec["file"].removeprefix("${WS_SECRETS_DIR:-./secrets}/")).is_file(), spec
    for name in ("ca.crt", "server.crt", "server.key", "dynamic-security.json"):
        assert (tmp_path / "s" / "mosquitto" / name).is_file(), name
    config = json.loads((tmp_path / "s" / "mosquitto" / "dynamic-security.json").read_text())
    accounts = sorted(c["username"] for c in config["clients"])
    assert accounts == ["alerts", "bridge-1", "bridge-2", "officer", "site-a"]
    assert sorted(p.stem for p in (tmp_path / "s" / "pki" / "clients").glob("*.crt")) == accounts
    bad = subprocess.run(["bash", script, "bridge-9"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "bad site name bridge-9" in bad.stderr
