"""`wastestream --version` names the installed distribution's version; the packages are typed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from wastestream.cli import main

PACKAGES = ("contract", "edge", "stream", "firmware_sim", "dashboards", "wastestream")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"wastestream {importlib.metadata.version('wastestream')}"


def test_every_package_is_marked_typed() -> None:
    """PEP 561: py.typed in each package, so mypy checks code that imports ours."""
    root = Path(__file__).resolve().parents[2]
    assert [p for p in PACKAGES if not (root / p / "py.typed").is_file()] == []
