"""The officers' HTTP API (aiohttp, loopback by default; put a TLS proxy in front in production).

Auth: every route except `/healthz` needs `Authorization: Bearer <token>`; the token comes
from `api.token` in alerts.yaml (env `WS_ALERTS_TOKEN` by default, or a file).

    GET  /alerts?state=open&kind=..&site=..&limit=100   newest first
    GET  /alerts/{id}                 with evidence, repeats, events, deliveries
    POST /alerts/{id}/ack             {"officer": "...", "note": "..."}
    POST /alerts/{id}/close           {"officer": "...", "note": "..."}
    GET  /stats?since=ISO&until=ISO   counts by state and 办结率 (closed / all raised in the period)

Errors are JSON `{"error": reason}`: 400 bad input, 401 no/bad token, 404 unknown id,
409 a transition the alert's state does not allow.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from stream.alerting.store import TRANSITIONS, AlertStore, NotFound, TransitionError
from stream.sinks.line_protocol import to_ns

STATES = ("open", "acknowledged", "closed")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


def _aware_ns(text: str) -> int:
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError("naive time")
    return to_ns(ts)


def make_app(store: AlertStore, token: str, on_change: Callable[[], None] = lambda: None) -> web.Application:
    """`on_change` runs after an ack/close (the service wakes its InfluxDB exporter)."""
    if not token:
        raise ValueError("the alerts API needs a token")
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong bearer token")
        return await handler(request)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def list_alerts(request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state")
        if state and state not in STATES:
            return _error(400, f"state must be one of {', '.join(STATES)}")
        try:
            limit = min(int(q.get("limit", "100")), 1000)
        except ValueError:
            return _error(400, "limit must be an integer")
        return _json(store.find(state=state, kind=q.get("kind"), site=q.get("site"), limit=limit))

    async def get_alert(request: web.Request) -> web.Response:
        try:
            return _json(store.get(request.match_info["id"]))
        except NotFound:
            return _error(404, f"no alert {request.match_info['id']}")

    def transition(action: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "body must be JSON {\"officer\": ..., \"note\": ...}")
            if not isinstance(body, dict) or not str(body.get("officer") or "").strip():
                return _error(400, "officer is required")
            alert_id = request.match_info["id"]
            try:
                result = store.transition(alert_id, action, str(body["officer"]), str(body.get("note") or ""))
            except NotFound:
                return _error(404, f"no alert {alert_id}")
            except TransitionError as exc:
                return _error(409, str(exc))
            on_change()
            return _json(result)

        return handler

    async def stats(request: web.Request) -> web.Response:
        try:
            bounds = [_aware_ns(request.query[k]) if k in request.query else None for k in ("since", "until")]
        except ValueError:
            return _error(400, "since/until: ISO 8601 with a UTC offset, e.g. 2025-03-01T00:00:00+08:00")
        return _json(store.stats(*bounds))

    app = web.Application(middlewares=[auth])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/alerts", list_alerts)
    app.router.add_get("/alerts/{id}", get_alert)
    for action in TRANSITIONS:
        app.router.add_post(f"/alerts/{{id}}/{action}", transition(action))
    app.router.add_get("/stats", stats)
    return app
