"""The driver registry is the one list of device kinds on the edge: it must agree with the contract,
and every kind must plug into the seam the same way (its config tagged by its kind)."""

from __future__ import annotations

import msgspec
import pytest

from contract.topics import DEVICE_KINDS, KIND_EVENTS
from edge.config import DeviceConfig, parse_config
from edge.devices.base import DeviceSpec, Driver
from edge.devices.registry import DEFAULT_KIND, DRIVERS


def test_the_edge_runs_exactly_the_kinds_the_contract_knows() -> None:
    assert set(DRIVERS) == set(DEVICE_KINDS) == set(KIND_EVENTS)
    assert DEFAULT_KIND in DRIVERS


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_each_kind_owns_a_config_tagged_by_its_kind(kind: str) -> None:
    driver = DRIVERS[kind]
    assert issubclass(driver, Driver) and driver.kind == kind
    assert issubclass(driver.config, DeviceSpec) and driver.config.kind == kind
    assert msgspec.inspect.type_info(driver.config).tag == kind  # type: ignore[attr-defined]


def test_the_site_config_union_is_the_registry() -> None:
    members = set(DeviceConfig.__args__)  # type: ignore[attr-defined]
    assert members == {d.config for d in DRIVERS.values()}


def test_an_unregistered_kind_is_refused_with_its_key_path() -> None:
    with pytest.raises(ValueError, match=r"\$\.devices\[0\]\.kind"):
        parse_config({"site_id": "s1", "outbox": {"path": "o.db"},
                      "devices": [{"id": "x", "kind": "no_such_kind"}]})


def test_every_edge_kind_has_its_simulator_twin() -> None:
    from firmware_sim.twins.registry import TWINS

    assert set(TWINS) == set(DRIVERS)
    assert all(twin.kind == kind for kind, twin in TWINS.items())
