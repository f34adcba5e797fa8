"""`wastestream dashboards generate`: the dashboards as Grafana JSON, deterministic, into dashboards/.

Sorted keys, stable uids and panel ids: regenerating from unchanged code gives identical bytes,
which the unit test checks (a stale committed JSON fails it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import city, devices, facilities, pipeline_health, sorting, trucks
from dashboards.common import CityConstants
from dashboards.targets import plan_targets
from stream.rules import load_rules
from wastestream.foundation import cliutil
from wastestream.foundation.settings import load_settings

OUT_DIR = Path(__file__).parent
DEFAULT_CITY = load_settings().city


def dashboards(rules_path: Path | None = None, city_table: str = DEFAULT_CITY) -> dict[str, dict[str, Any]]:
    """uid → dashboard JSON (as dicts), for the city's rules file and indicator table."""
    constants = CityConstants.from_rules(load_rules(rules_path))
    built = [
        city.build(constants, plan_targets(city_table)),
        facilities.build(),
        sorting.build(),
        trucks.build(),
        devices.build(),
        pipeline_health.build(),
    ]
    out: dict[str, dict[str, Any]] = {}
    for builder in built:
        model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
        _number_panels(model)
        out[model["uid"]] = model
    return out


def _number_panels(model: dict[str, Any]) -> None:
    """Stable panel ids in layout order (rows and their panels)."""
    n = 0
    for panel in model.get("panels", []):
        n += 1
        panel["id"] = n
        for inner in panel.get("panels", []):
            n += 1
            inner["id"] = n


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def file_name(uid: str) -> str:
    return f"{uid}.json"


def write_all(out_dir: Path = OUT_DIR, rules_path: Path | None = None,
              city_table: str = DEFAULT_CITY) -> list[Path]:
    paths = []
    for uid, model in dashboards(rules_path, city_table).items():
        path = out_dir / file_name(uid)
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Committed files that differ from what the code generates now (or are missing)."""
    return [file_name(uid) for uid, model in dashboards().items()
            if not (out_dir / file_name(uid)).exists()
            or (out_dir / file_name(uid)).read_text(encoding="utf-8") != render(model)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = cliutil.parser("wastestream dashboards generate", __doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR,
                        help="directory for the JSON files (made if missing)")
    parser.add_argument("--rules", type=Path, help="the city's stream rules (default: the Liuzhou example)")
    parser.add_argument("--city", default=DEFAULT_CITY, help="indicator table for the plan targets")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for name in bad:
            print(f"stale: {args.out / name} (run `wastestream dashboards generate`)", file=sys.stderr)
        return 1 if bad else 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"wastestream dashboards generate: cannot make {args.out}: {exc.strerror}", file=sys.stderr)
        return cliutil.EXIT_FAILURE
    for path in write_all(args.out, args.rules, args.city):
        print(path)
    return 0
