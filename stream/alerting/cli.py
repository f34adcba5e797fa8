"""`wastestream alerts ...`: run the service, or act on alerts through its HTTP API.

`serve` runs the service. `list`, `show`, `ack`, `close` and `stats` are clients of the
HTTP API (not of the SQLite file), so an officer's action from the CLI goes through the
same checks, is recorded the same way and reaches InfluxDB, and works from another host.
Client settings: `--url` (or $WS_ALERTS_URL, default http://127.0.0.1:$WS_ALERTS_PORT or
18600) and the bearer token from `--token-file` or $WS_ALERTS_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.alerting.config import DEFAULT_API_PORT, ConfigError, load_config
from stream.alerting.kinds import kind_name
from stream.alerting.officer import users_cli
from wastestream.foundation import cliutil, logs
from wastestream.foundation.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    p = cliutil.parser("wastestream alerts", __doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="consume ws.alerts, push to enforcement, serve the API",
                           epilog=cliutil.EPILOG)
    serve.add_argument("--config", help="alerts.yaml (default: $WS_ALERTS_CONFIG; none = no channels)")
    serve.add_argument("--port", type=int, help="API port (default: $WS_ALERTS_PORT or the config's)")
    serve.add_argument("--db", help="SQLite path (default: $WS_RUN_DIR/alerts/alerts.db)")
    serve.add_argument("--metrics-port", type=int,
                       help="/metrics, /healthz, /readyz on this port (default: $WS_METRICS_PORT; 0: off)")
    cliutil.add_log_level(serve)
    for name, help_text in (("list", "list alerts"), ("show", "one alert with evidence and history"),
                            ("ack", "acknowledge an alert"), ("close", "close an alert"),
                            ("stats", "counts by state and 办结率")):
        c = sub.add_parser(name, help=help_text, epilog=cliutil.EPILOG)
        c.add_argument("--url", default=None, help="API base URL")
        c.add_argument("--token-file", default=None, help="file with the bearer token")
        c.add_argument("--json", action="store_true", help="print the API's JSON")
        if name == "list":
            c.add_argument("--state", choices=("open", "acknowledged", "closed"))
            c.add_argument("--kind")
            c.add_argument("--site")
            c.add_argument("--limit", type=int, default=100)
        if name in ("show", "ack", "close"):
            c.add_argument("alert_id")
        if name in ("ack", "close"):
            c.add_argument("--officer", required=True)
            c.add_argument("--note", default="")
        if name == "stats":
            c.add_argument("--since", help="ISO 8601 with offset")
            c.add_argument("--until", help="ISO 8601 with offset")
    users_cli.add_parser(sub)
    return p


# --- serve ---------------------------------------------------------------------------------

def serve(args: argparse.Namespace) -> int:
    from stream.alerting import metrics as alert_metrics
    from stream.alerting.service import AlertService
    from stream.rules import load_rules

    logs.configure(args.log_level)
    try:
        config = load_config(args.config or load_settings().alerts_config or None)
        token = config.api.token.resolve("api token")
    except ConfigError as exc:
        print(f"wastestream alerts: {exc}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else _env_port(config.api.port)
    default_cooldown = load_rules().alerts.cooldown_s if config.cooldown_s is None else config.cooldown_s
    try:
        service = AlertService(config, load_settings(), default_cooldown_s=default_cooldown, token=token,
                               port=port, db_path=Path(args.db) if args.db else None)
    except ConfigError as exc:
        print(f"wastestream alerts: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        settings = load_settings()
        metrics_port = settings.metrics_port if args.metrics_port is None else args.metrics_port
        with alert_metrics.endpoint(service, metrics_port, settings.metrics_host):
            await service.run(stop)

    asyncio.run(main())
    return 0


def _env_port(default: int) -> int:
    return load_settings().alerts_port or default


# --- API client ----------------------------------------------------------------------------

class ApiError(RuntimeError):
    pass


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    base = args.url or load_settings().alerts_url or f"http://127.0.0.1:{_env_port(DEFAULT_API_PORT)}"
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    else:
        token = load_settings().alerts_token
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", "")
        except ValueError:
            reason = exc.reason
        raise ApiError(f"HTTP {exc.code}: {reason}") from None
    except OSError as exc:
        raise ApiError(f"cannot reach the alerts API at {base}: {exc}") from None


def _quote(alert_id: str) -> str:
    return urllib.parse.quote(alert_id, safe="")


def _print_alert_line(a: dict[str, Any]) -> None:
    print(f"{a['alert_id']:<34} {a['state']:<12} {a['severity']:<8} {kind_name(a['kind'])}({a['kind']}) "
          f"{a['subject']} @{a['site_id']} {a['raised_at']} x{a['count']}")


def client(args: argparse.Namespace) -> int:
    if args.action == "list":
        query = {k: v for k, v in (("state", args.state), ("kind", args.kind), ("site", args.site),
                                   ("limit", str(args.limit))) if v}
        result = _call(args, "GET", "/alerts?" + urllib.parse.urlencode(query))
        if not args.json:
            for a in result:
                _print_alert_line(a)
            return 0
    elif args.action == "show":
        result = _call(args, "GET", f"/alerts/{_quote(args.alert_id)}")
    elif args.action in ("ack", "close"):
        result = _call(args, "POST", f"/alerts/{_quote(args.alert_id)}/{args.action}",
                       {"officer": args.officer, "note": args.note})
        if not args.json:
            last = result["events"][-1]
            print(f"{result['alert_id']}: {last['from_state']} -> {last['to_state']} by {last['actor']} "
                  f"at {last['at']}")
            return 0
    else:
        query = {k: v for k, v in (("since", args.since), ("until", args.until)) if v}
        result = _call(args, "GET", "/stats" + ("?" + urllib.parse.urlencode(query) if query else ""))
        if not args.json:
            rate = "n/a" if result["closure_rate"] is None else f"{result['closure_rate']:.1%}"
            print(f"open {result['open']}  acknowledged {result['acknowledged']}  closed {result['closed']}  "
                  f"total {result['total']}  办结率 {rate}")
            return 0
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "serve":
        return serve(args)
    if args.action == "users":
        return users_cli.run(args)
    try:
        return client(args)
    except ApiError as exc:
        print(f"wastestream alerts {args.action}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
