"""The officers' HTTP API (aiohttp, loopback by default; put a TLS proxy in front in production).

Auth: every route except `/healthz` and `/openapi.json` needs `Authorization: Bearer <token>`;
the token comes from `api.token` in alerts.yaml (env `WS_ALERTS_TOKEN` by default, or a file).

    GET  /alerts?state=open&kind=..&site=..&limit=100   newest first (limit 1..1000)
    GET  /alerts/{id}                 with evidence, repeats, events, deliveries
    POST /alerts/{id}/ack             {"officer": "...", "note": "..."}
    POST /alerts/{id}/assign          {"officer": "...", "assignee": "username", "note": "..."}
    POST /alerts/{id}/note            {"officer": "...", "note": "..."}
    POST /alerts/{id}/close           {"officer": "...", "note": "...", "outcome": "confirmed",
                                       "case_no": "..."}   (outcome: confirmed/false_alarm/referred)
    POST /alerts/{id}/reopen          {"officer": "...", "note": "..."}
    GET  /stats?since=ISO&until=ISO   counts by state and 办结率 (closed / all raised in the period)
    GET  /openapi.json                the OpenAPI 3 description of all this (openapi.yaml beside this file)

Every error is JSON `{"error": reason}`: 400 bad input, 401 no/bad token, 404 unknown id or
path, 405 wrong method, 409 a transition the alert's state does not allow, 413 a body over
MAX_BODY_BYTES. The API is the trust boundary for officers' clients: input is parsed strictly
(typed body, bounded strings and numbers) so that nothing a client sends can reach a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import yaml
from aiohttp import web

from contract.codec import TS_MAX, TS_MIN
from contract.events import Ident
from stream.alerting.store import (
    MAX_ID_CHARS,
    MAX_LIST,
    TRANSITIONS,
    AlertStore,
    InvalidInput,
    NotFound,
    TransitionError,
)
from stream.sinks.line_protocol import to_ns

log = logging.getLogger(__name__)

STATES = ("open", "acknowledged", "closed")
MAX_BODY_BYTES = 16 * 1024
"""An ack/close body is two short strings; anything larger is refused unread (413)."""
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})
_LIMIT_RE = re.compile(r"[0-9]{1,4}")  # ASCII only: int() also takes "١٢", " 12 " and "1_0"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OFFICER_PREFIX = "/o/"
"""The officers' pages (stream/alerting/officer/pages.py): their own sessions and HTML errors."""
OFFICER_MOUNTED = web.AppKey("officer_mounted", bool)


class ActionBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of a workflow step; typed, so `officer: {"a": 1}` is a 400, not stored as text.
    close may carry `outcome` (+ `case_no`); assign carries `assignee`."""

    officer: str
    note: str = ""
    outcome: str | None = None
    case_no: str = ""
    assignee: str = ""


_action_decoder = msgspec.json.Decoder(ActionBody)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": reason}, status, headers)


def _shown(text: str) -> str:
    """Client input quoted in an error: bounded, and escaped (repr) so no control character or
    lone surrogate reaches the log or the response encoder."""
    return repr(text[:80]) + ("..." if len(text) > 80 else "")


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string, refused when it names a parameter twice or one the route does not take
    (`stat=open` silently ignored would list every alert)."""
    query: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise InvalidInput(f"unknown query parameter {_shown(key)}; this route takes: "
                               f"{', '.join(allowed) or 'none'}")
        if key in query:
            raise InvalidInput(f"query parameter {key} given twice")
        query[key] = value
    return query


def _aware_ns(name: str, text: str) -> int:
    """An ISO 8601 time with a UTC offset, within the contract's range, as epoch ns."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        ts = None
    if ts is None or ts.tzinfo is None:
        raise InvalidInput(f"{name}: ISO 8601 with a UTC offset, e.g. 2025-03-01T00:00:00+08:00; "
                           f"got {_shown(text)}")
    try:
        in_range = TS_MIN <= ts.astimezone(UTC) < TS_MAX
    except OverflowError:  # year 1 at +08:00 is before year 1 in UTC
        in_range = False
    if not in_range:
        raise InvalidInput(f"{name} must be from {TS_MIN:%Y-%m-%d} to before {TS_MAX:%Y-%m-%d} (UTC)")
    return to_ns(ts)


def _ident_param(query: dict[str, str], name: str) -> str | None:
    """kind and site are contract identifiers: anything else matches no alert, and is refused."""
    value = query.get(name)
    if value is None:
        return None
    try:
        return msgspec.convert(value, Ident)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{name} {_shown(value)}: {exc}") from None


def _limit(query: dict[str, str]) -> int:
    text = query.get("limit", "100")
    if not _LIMIT_RE.fullmatch(text) or not 1 <= int(text) <= MAX_LIST:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST}; got {_shown(text)}")
    return int(text)


def _alert_id(request: web.Request) -> str:
    """The path's id; one that no alert can have (too long, not printable) is simply unknown."""
    alert_id = request.match_info["id"]
    if len(alert_id) > MAX_ID_CHARS or not alert_id.isprintable():
        raise NotFound(alert_id)
    return alert_id


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI description (openapi.yaml), parsed once."""
    return yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as `{"error": ...}` with its status; an unexpected one is logged and a 500.
    The officers' pages answer their own errors, as pages."""
    if request.path.startswith(OFFICER_PREFIX) and request.config_dict.get(OFFICER_MOUNTED):
        return await handler(request)
    try:
        return await handler(request)
    except InvalidInput as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, f"no alert {_shown(str(exc.args[0]) if exc.args else '')}")
    except TransitionError as exc:
        return _error(409, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _error(exc.status, exc.reason, keep)
    except Exception:
        log.exception("alerts API: %s %s failed", request.method, _shown(request.path))
        return _error(500, "internal error (logged)")




def make_app(store: AlertStore, token: str, on_change: Callable[[], None] = lambda: None,
             officer_pages: web.Application | None = None) -> web.Application:
    """`on_change` runs after an ack/close (the service wakes its InfluxDB exporter);
    `officer_pages` is mounted at /o/ with its own sign-in instead of the bearer token."""
    if not token:
        raise ValueError("the alerts API needs a token")
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if officer_pages is not None and request.path.startswith(OFFICER_PREFIX):
            return await handler(request)
        if request.path not in PUBLIC_PATHS:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def openapi(request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def list_alerts(request: web.Request) -> web.Response:
        query = _query(request, ("state", "kind", "site", "limit"))
        state = query.get("state")
        if state is not None and state not in STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES)}")
        found = store.find(state=state, kind=_ident_param(query, "kind"), site=_ident_param(query, "site"),
                           limit=_limit(query))
        return _json(found)

    async def get_alert(request: web.Request) -> web.Response:
        _query(request, ())
        return _json(store.get(_alert_id(request)))

    def transition(action: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            _query(request, ())
            alert_id = _alert_id(request)
            raw = await request.read()  # 413 past client_max_size
            try:
                body = _action_decoder.decode(raw)
            except (msgspec.DecodeError, RecursionError) as exc:
                raise InvalidInput(f'body must be JSON {{"officer": "...", "note": "..."}}: {exc}') from None
            result = store.transition(alert_id, action, body.officer, body.note, outcome=body.outcome,
                                      case_no=body.case_no, assignee=body.assignee)
            on_change()
            return _json(result)

        return handler

    async def stats(request: web.Request) -> web.Response:
        query = _query(request, ("since", "until"))
        since, until = (_aware_ns(k, query[k]) if k in query else None for k in ("since", "until"))
        if since is not None and until is not None and since > until:
            raise InvalidInput("since must not be after until")
        return _json(store.stats(since, until))

    app = web.Application(middlewares=[json_errors, auth], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/alerts", list_alerts)
    app.router.add_get("/alerts/{id}", get_alert)
    for action in TRANSITIONS:
        app.router.add_post(f"/alerts/{{id}}/{action}", transition(action))
    app.router.add_get("/stats", stats)
    if officer_pages is not None:
        app[OFFICER_MOUNTED] = True
        app.add_subapp(OFFICER_PREFIX, officer_pages)
    return app
