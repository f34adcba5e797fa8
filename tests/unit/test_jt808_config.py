"""A jt808 device entry in the site config: defaults taken from the site, errors at their key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import ConfigError, load_config, parse_config
from edge.devices.jt808.driver import Jt808Config, parse_listen

SAMPLE = Path(__file__).resolve().parents[2] / "edge" / "devices" / "jt808" / "sample-site.yaml"


def site(**device: Any) -> dict[str, Any]:
    entry = {"id": "t1", "kind": "jt808", "phone": "13912345678", "plate": "桂B12345",
             "profile": "ext-signal",
             **device}
    return {"site_id": "s1", "outbox": {"path": "o.db"},
            "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000}],
            "devices": [entry]}


def test_full_load_comes_from_the_vehicle_registry() -> None:
    [dev] = parse_config(site()).devices
    assert isinstance(dev, Jt808Config)
    assert (dev.site_id, dev.full_load_kg, dev.listen) == ("s1", 19000.0, "127.0.0.1:7808")
    [given] = parse_config(site(full_load_kg=8000)).devices
    assert isinstance(given, Jt808Config) and given.full_load_kg == 8000


@pytest.mark.parametrize(("device", "where"), [
    ({"plate": "桂B99999"}, r"\$\.devices\[0\]\.full_load_kg`: not given, and plate '桂B99999'"),
    ({"profile": "nope"}, r"\$\.devices\[0\]\.profile`: no vendor profile 'nope'"),
    ({"phone": "139-1234"}, r"\$\.devices\[0\]\.phone"),
    ({"listen": "7808"}, r"listen '7808' is not host:port"),
    ({"site_id": "other"}, r"takes site_id from the site"),
])
def test_bad_entries_name_their_key(device: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_config(site(**device))


def test_listen_addresses() -> None:
    assert parse_listen(":7808") == ("0.0.0.0", 7808)
    assert parse_listen("127.0.0.1:7808") == ("127.0.0.1", 7808)
    assert parse_listen("[::1]:7808") == ("::1", 7808)
    with pytest.raises(ValueError):
        parse_listen("host:99999")


def test_the_sample_site_config_loads() -> None:
    config = load_config(SAMPLE)
    assert {type(d) for d in config.devices} == {Jt808Config}
    raw = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    assert [d["phone"] for d in raw["devices"]] == [d.phone for d in config.devices]  # type: ignore[attr-defined]
