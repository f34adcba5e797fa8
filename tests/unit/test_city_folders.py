"""One folder per city (wastestream/foundation/cities/<city>/), chosen by WS_CITY, checked on load."""

import shutil
from pathlib import Path

import pytest
import yaml

from firmware_sim.scenario import ScenarioError, load_scenario
from stream.rules import RulesError, load_rules
from wastestream.foundation import city as city_mod
from wastestream.foundation.city import CityError, available_cities, check_city, city
from wastestream.foundation.settings import REPO_ROOT
from wastestream.indicators.config import load_city


@pytest.fixture
def cities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch cities folder holding a copy of Liuzhou's (the loaders look there)."""
    root = tmp_path / "cities"
    shutil.copytree(city_mod.CITIES_DIR / "liuzhou", root / "liuzhou")
    monkeypatch.setattr(city_mod, "CITIES_DIR", root)
    monkeypatch.delenv("WS_RULES", raising=False)
    return root


def _edit(path: Path, change: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(change)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_every_city_with_sites_agrees_and_loads() -> None:
    with_rules = available_cities("rules.yaml")
    assert "liuzhou" in with_rules
    assert {"liuzhou", "foshan", "guanxian"} <= set(available_cities())
    for name in with_rules:
        c = check_city(city(name))
        assert load_rules(c.rules).city == name
        assert load_scenario(c.scenario).city == name
        assert load_city(name).city == name


def test_ws_city_selects_rules_and_scenario(cities: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(cities / "liuzhou", cities / "testville")
    for file in ("rules.yaml", "scenario.yaml", "indicators.yaml"):
        _edit(cities / "testville" / file, {"city": "testville"})
    _edit(cities / "testville" / "rules.yaml", {"timezone": "Asia/Urumqi"})
    monkeypatch.setenv("WS_CITY", "testville")
    assert load_rules().city == "testville"
    assert load_scenario().city == "testville"
    assert city().timezone() == "Asia/Urumqi"


def test_a_scenario_disagreeing_with_the_rules_is_refused_at_load(cities: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = cities / "liuzhou" / "scenario.yaml"
    data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    data["facilities"][0]["capacity_t_per_day"] = 999
    data["communities"][0]["households"] = 7
    data["trucks"][0]["plate"] = "桂B00000"
    scenario.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("WS_CITY", "liuzhou")
    with pytest.raises(ScenarioError) as refused:
        load_scenario()
    text = str(refused.value)
    assert "capacity_t_per_day 999" in text and "households 7" in text and "桂B00000" in text
    with pytest.raises(RulesError, match="capacity_t_per_day 999"):
        load_rules()


def test_an_unknown_city_is_refused_with_the_known_ones(cities: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_CITY", "atlantis")
    with pytest.raises(RulesError, match=r"no city 'atlantis'.*liuzhou"):
        load_rules()
    with pytest.raises(CityError):
        city("../liuzhou")


def test_ws_rules_overrides_the_city(cities: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's or demo's own rules file is read as given (no city folder to agree with)."""
    own = tmp_path / "own.yaml"
    shutil.copy(cities / "liuzhou" / "rules.yaml", own)
    _edit(own, {"city": "elsewhere"})
    monkeypatch.setenv("WS_RULES", str(own))
    assert load_rules().city == "elsewhere"


def test_compose_passes_the_city_to_every_python_service() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy/production/docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["x-python"]["environment"]["WS_CITY"] == "${WS_CITY:-liuzhou}"
    python = [s for s in compose["services"].values() if s.get("image") == compose["x-python"]["image"]]
    assert python and all("WS_CITY" in s["environment"] for s in python)
