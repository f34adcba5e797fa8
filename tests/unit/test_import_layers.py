"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: no module imports a higher layer."""

import subprocess
import sys
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
