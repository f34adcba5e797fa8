"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: no module imports a higher layer."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from wastestream.foundation.settings import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_are_kept() -> None:
    """`make test` checks what `make lint` checks: a broken contract names the offending import chain."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_top_level_module_has_a_layer() -> None:
    """A new package or wastestream/ module outside the layers would be free to import anything."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    layered = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
    tops = {f"wastestream.{p.stem}" for p in (REPO_ROOT / "wastestream").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    expected = (set(config["root_packages"]) - {"wastestream"}) | tops
    assert sorted(expected - layered) == []
