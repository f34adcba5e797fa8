"""`python -m dashboards [generate|push] ...` (generate when no subcommand is given)."""

from __future__ import annotations

import sys

from dashboards.cli import main

sys.exit(main(sys.argv[1:]))
