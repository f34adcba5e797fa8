"""`wastestream report` and `wastestream indicators`: the period's indicators, as HTML or a table."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from wastestream.foundation import cliutil
from wastestream.foundation.influxql import InfluxQueryError
from wastestream.foundation.settings import load_settings
from wastestream.indicators.alerts import AlertSourceError
from wastestream.indicators.config import IndicatorConfigError, available_cities


def parse_time(text: str, tz: str = "Asia/Shanghai") -> datetime:
    """ISO 8601 (`2026-11-27`, `2026-11-27T08:00`, `...+08:00`, `...Z`); naive means local `tz`.

    Also `now` and `now-6h` / `now-2d` / `now-30m`."""
    text = text.strip()
    if text.startswith("now"):
        now = datetime.now(ZoneInfo(tz))
        rest = text[3:]
        if not rest:
            return now
        unit = {"m": "minutes", "h": "hours", "d": "days"}.get(rest[-1])
        if rest[0] != "-" or unit is None:
            raise ValueError(f"bad relative time {text!r}: use now-30m, now-6h, now-2d")
        return now - timedelta(**{unit: float(rest[1:-1])})
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=ZoneInfo(tz))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, help="period start (ISO 8601; naive = local)")
    parser.add_argument("--to", dest="end", default="now", help="period end, exclusive (default now)")
    parser.add_argument("--city", default=load_settings().city, choices=available_cities(),
                        help="indicator table (default $WS_CITY)")
    parser.add_argument("--rules", type=Path, help="stream rules file (default $WS_RULES, else $WS_CITY's)")
    parser.add_argument("--manual", type=Path, help="manual inputs YAML (GDP-based, surveys, population)")
    parser.add_argument("--alerts-api", help="alert service URL (token from $WS_ALERTS_TOKEN)")
    parser.add_argument("--alerts-db", type=Path, help="alert store (default $WS_RUN_DIR/alerts/alerts.db)")
    parser.add_argument("--rules-sites-only", action="store_true",
                        help="only facilities listed in the rules (a shared InfluxDB holds others)")


def _sites(rules_path: Path | None, only: bool) -> set[str] | None:
    if not only:
        return None
    from stream.rules import load_rules

    return {f.id for f in load_rules(rules_path).facilities}


def report_main(argv: list[str]) -> int:
    parser = cliutil.parser("wastestream report", "self-contained HTML indicator report")
    _common(parser)
    parser.add_argument("--out", type=Path, default=Path("report.html"))
    parser.add_argument("--alerts-base-url", help="base URL of the evidence links (/alerts/{id})")
    args = parser.parse_args(argv)
    from wastestream.foundation.settings import load_settings
    from wastestream.report.build import build_report

    try:
        out = build_report(load_settings(), parse_time(args.start), parse_time(args.end), args.out,
                           city=args.city, alerts_api=args.alerts_api, alerts_db=args.alerts_db,
                           rules_path=args.rules, manual_path=args.manual,
                           alerts_base_url=args.alerts_base_url,
                           sites=_sites(args.rules, args.rules_sites_only))
    except (IndicatorConfigError, InfluxQueryError, AlertSourceError, ValueError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    print(out.resolve())
    return 0


def indicators_main(argv: list[str]) -> int:
    parser = cliutil.parser("wastestream indicators",
                            "the city's indicators for a period against their targets")
    _common(parser)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args(argv)
    from stream.rules import load_rules
    from wastestream.foundation.settings import load_settings
    from wastestream.indicators import Context, evaluate_table, load_city, load_manual
    from wastestream.indicators.alerts import load_alerts
    from wastestream.indicators.data import fetch_period

    settings = load_settings()
    try:
        start, end = parse_time(args.start), parse_time(args.end)
        table, rules = load_city(args.city), load_rules(args.rules)
        data = fetch_period(settings, start, end, timezone=rules.timezone,
                            sites=_sites(args.rules, args.rules_sites_only))
        log = load_alerts(start, end, run_dir=settings.run_dir, alerts_api=args.alerts_api,
                          alerts_db=args.alerts_db)
        results = evaluate_table(table, Context(data, rules, log, load_manual(args.manual)))
    except (IndicatorConfigError, InfluxQueryError, AlertSourceError, ValueError) as exc:
        print(f"indicators: {exc}", file=sys.stderr)
        return 1
    for r in results:
        ind = r.indicator
        if args.json:
            print(json.dumps({"id": ind.id, "value": r.value, "unit": ind.unit, "status": r.status.value,
                              "target": r.target.label() if r.target else None, "inputs": r.inputs,
                              "source": table.cite(ind.source), "note": r.note}, ensure_ascii=False))
        else:
            value = "—" if r.value is None else f"{r.value:,.3f}"
            target = r.target.label() if r.target else "—"
            print(f"{ind.id:<28} {value:>14} {ind.unit:<8} {r.status.value:<10} "
                  f"target {target:<18} {table.cite(ind.source)}")
    return 0
