"""`wastestream edge probe`: a site installer's tool, one submodule per mode.

`probe --modbus HOST:PORT --profile NAME` (`modbus.py`), `probe --serial /dev/ttyUSB0`
(`serial.py`), `probe --jt808 :PORT` (`jt808.py`). This dispatcher only picks the mode from the
one `--<mode>` flag given and hands the whole argument list to that module's `main(argv)`, which
parses its own options: a new mode is a new module plus one entry in `MODES`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

MODES: dict[str, str] = {
    "modbus": "read a Modbus device through a vendor profile and print its decoded values",
    "serial": "listen on a serial port, find its baud rate and format, print live weights",
    "jt808": "accept JT/T 808 terminals on a port and print those that connect",
}

USAGE = "usage: wastestream edge probe (" + " | ".join(f"--{m} ..." for m in MODES) + ")\n" + "\n".join(
    f"  --{m:<8} {text}" for m, text in MODES.items())


def _mode(argv: Sequence[str]) -> list[str]:
    return [m for m in MODES if any(a == f"--{m}" or a.startswith(f"--{m}=") for a in argv)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe mode named by `argv`; 2 with the usage when none or several are named."""
    args = list(sys.argv[1:] if argv is None else argv)
    modes = _mode(args)
    if len(modes) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"{__name__}.{modes[0]}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{modes[0]}":
            raise
        print(f"probe --{modes[0]} is not available in this version", file=sys.stderr)
        return 2
    return int(module.main(args) or 0)
