"""The alert-kind registry (stream/alertkinds.py) against everything that names a kind: the agents
that raise them, the dashboards that show them, the rules that tune them and the example alert
config, so a kind cannot be half-added (issue 12, "one alert-kind registry")."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from contract.events import Severity, WeighingFlag
from dashboards.generate import OUT_DIR, dashboards
from stream.agents.integrity import kind as weighbridge_kind
from stream.alerting.make import make_alert
from stream.alertkinds import KINDS, REGISTRY, UnknownAlertKind
from stream.rules import Rules

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "stream" / "agents"


def _raise(kind: str) -> object:
    return make_alert(kind, site_id="s1", device_id="d1", subject="x", summary="x", evidence=["m1"],
                      ts=datetime(2026, 12, 3, tzinfo=UTC), dedup_key="k")


def test_an_unregistered_kind_fails_loudly_when_raised() -> None:
    with pytest.raises(UnknownAlertKind, match="scale_house_fire"):
        _raise("scale_house_fire")


def test_a_raised_alert_takes_the_registered_severity() -> None:
    for entry in KINDS:
        assert _raise(entry.code).severity == entry.severity  # type: ignore[attr-defined]


def test_codes_are_unique_and_plain() -> None:
    assert len(REGISTRY) == len(KINDS)
    for entry in KINDS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry.code), entry.code
        assert entry.name_zh and entry.name_en and entry.template
        assert isinstance(entry.severity, Severity)


def test_every_weighing_flag_is_a_registered_kind() -> None:
    for flag in WeighingFlag:
        assert weighbridge_kind(flag) in REGISTRY, f"{flag}: register weighbridge_{flag.value}"


def test_every_registered_kind_is_raised_by_an_agent() -> None:
    """No dead kinds: each code is a literal in stream/agents/ or a weighbridge_<flag>."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in AGENTS.glob("*.py"))
    flags = {weighbridge_kind(f) for f in WeighingFlag}
    dead = [e.code for e in KINDS if e.code not in flags and f'"{e.code}"' not in source]
    assert dead == [], f"registered but raised nowhere: {dead}"


def _queries(model: dict) -> str:
    panels = [*model["panels"], *(p for panel in model["panels"] for p in panel.get("panels", []))]
    return "\n".join(t.get("query", "") for p in panels for t in p.get("targets", []))


def test_every_kind_is_shown_on_its_dashboard_in_the_committed_json() -> None:
    generated = dashboards()
    for entry in KINDS:
        assert entry.dashboard in generated, f"{entry.code}: no dashboard {entry.dashboard}"
        committed = json.loads((OUT_DIR / f"{entry.dashboard}.json").read_text(encoding="utf-8"))
        shown = [re.fullmatch(rx, entry.code)
                 for rx in re.findall(r'"kind" =~ /([^/]+)/', _queries(committed))]
        assert any(shown), f"{entry.code}: not in an alert panel of {entry.dashboard} (regenerate the JSON)"


def test_every_rules_parameter_exists() -> None:
    rules = Rules(city="test")
    for entry in KINDS:
        for path in entry.rules:
            value: object = rules
            for part in path.split("."):
                assert hasattr(value, part), f"{entry.code}: no rules parameter {path}"
                value = getattr(value, part)


def test_the_example_alert_config_names_only_registered_kinds() -> None:
    example = ROOT / "stream" / "alerting" / "alerts.example.yaml"
    config = yaml.safe_load(example.read_text(encoding="utf-8"))
    named = set(config.get("cooldown_by_kind", {}))
    for channel in config["channels"]:
        named |= set(channel.get("kinds", []))
    assert named, "the example names kinds (cool-downs, a channel filter)"
    assert named <= set(REGISTRY), f"not registered: {named - set(REGISTRY)}"


def test_an_alert_config_naming_an_unregistered_kind_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from stream.alerting.config import parse_config

    parse_config({"cooldown_by_kind": {"bin_ful": 60, "bin_full": 60},
                  "channels": [{"type": "webhook", "name": "w", "url": "https://e.cn/h",
                                "secret": {"value": "s"}, "kinds": ["illegal_dump"]}]}, "alerts.yaml")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2, warned
    assert "cooldown_by_kind names alert kind 'bin_ful'" in warned[0]
    assert "channel w kinds names alert kind 'illegal_dump'" in warned[1]
