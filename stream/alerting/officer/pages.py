"""The officers' pages under /o/: sign-in, the inbox, an alert with its evidence, the supervisor's view.

Mobile first and Chinese first, server-rendered (Jinja2, autoescaped) with one stylesheet served
from here and no script, so they work in DingTalk's and WeCom's in-app browsers and on closed
government networks. Every state change is a POST with the session's CSRF token and a same-origin
check; every alert read or action checks the officer's districts (403 otherwise, even with a valid
push link). Responses carry a strict Content-Security-Policy and are never cached.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from stream.alerting.config import OfficerConfig
from stream.alerting.kinds import kind_english, kind_name, severity_name
from stream.alerting.message import beijing_time, summary_zh
from stream.alerting.officer.accounts import AccountStore, Role, User
from stream.alerting.officer.evidence import Query, gather
from stream.alerting.officer.figures import open_overview, weekly
from stream.alerting.officer.links import LinkSigner
from stream.alerting.officer.mapsvg import render_map, render_speed
from stream.alerting.officer.sessions import COOKIE, Session, SessionStore
from stream.alerting.store import (
    MAX_ID_CHARS,
    OUTCOME_NAMES,
    TRANSITIONS,
    AlertStore,
    InvalidInput,
    NotFound,
    TransitionError,
)
from stream.rules import Rules

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PREFIX = "/o/"
STATE_NAMES = {"open": "待签收 (open)", "acknowledged": "处置中 (acknowledged)", "closed": "已办结 (closed)"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
MAX_FORM_BYTES = 8 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters["beijing"] = lambda t: beijing_time(t) if t else ""
_env.filters["kind_zh"] = kind_name
_env.filters["kind_en"] = kind_english
_env.filters["severity_zh"] = severity_name
_env.filters["state_zh"] = lambda s: STATE_NAMES.get(s, s)
_env.filters["outcome_zh"] = lambda o: OUTCOME_NAMES.get(o, o) if o else ""
_env.filters["ns_beijing"] = lambda ns: beijing_time(
    time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(ns) / 1e9))) if ns else ""


class Officers:
    """The pages' state: stores, signer, rules (geofences, districts) and the evidence query."""

    def __init__(self, store: AlertStore, accounts: AccountStore, sessions: SessionStore, signer: LinkSigner,
                 config: OfficerConfig, rules: Rules, query: Query, tile_key: str = "",
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.store, self.accounts, self.sessions, self.signer = store, accounts, sessions, signer
        self.config, self.rules, self.query, self.tile_key = config, rules, query, tile_key
        self.on_change = on_change
        self.district_names = {d.id: d.name for d in rules.districts}
        self.headers = self._headers()
        """Every page's security headers: fixed by the config, so made once."""

    # --- helpers ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        img = "'self' data:"
        if self.config.tiles is not None:
            parsed = urllib.parse.urlsplit(self.config.tiles.url.replace("{s}", "x"))
            host = parsed.netloc.replace("x.", "*.", 1) if "{s}" in self.config.tiles.url else parsed.netloc
            img += f" {parsed.scheme}://{host}"
        return {"Content-Security-Policy": f"default-src 'none'; style-src 'self'; img-src {img}; "
                                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                "Cache-Control": "no-store", "Referrer-Policy": "same-origin",  # no-referrer: Origin null
                "X-Content-Type-Options": "nosniff"}

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = _env.get_template(template).render(district_names=self.district_names, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers=self.headers)

    def error(self, status: int, message: str, session: Session | None = None) -> web.Response:
        return self.page("error.html", status, status_code=status, message=message, session=session)

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.lookup(request.cookies.get(COOKIE))

    def _same_origin(self, request: web.Request) -> bool:
        """A POST's Origin (or Referer) names this host: a second CSRF defence besides the token."""
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if not origin or origin == "null":
            return origin is None  # a browser always sends Origin on a form POST; "null" is a sandbox
        return urllib.parse.urlsplit(origin).netloc == request.host

    async def form(self, request: web.Request, session: Session) -> dict[str, str]:
        """The POSTed form, after the same-origin and CSRF checks (HTTPForbidden if they fail)."""
        if not self._same_origin(request):
            raise web.HTTPForbidden(reason="cross-origin request refused")
        data = await request.post()
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        if not session.csrf_ok(fields.get("csrf", "")):
            raise web.HTTPForbidden(reason="CSRF token missing or wrong: reload the page")
        return fields

    def alert_for(self, user: User, alert_id: str) -> dict[str, Any]:
        """The alert if `user` may see it; NotFound or HTTPForbidden."""
        if len(alert_id) > MAX_ID_CHARS or not alert_id.isprintable():
            raise NotFound(alert_id)
        alert = self.store.get(alert_id)
        if not user.may_see(alert.get("district", "")):
            log.warning("officer %s refused alert %s of district %r", user.username, alert_id,
                        alert.get("district"))
            raise web.HTTPForbidden(reason="此告警不属于您的辖区 (not in your districts)")
        return alert

    def scope(self, user: User) -> list[str] | None:
        return None if user.sees_all else list(user.districts)

    # --- routes ----------------------------------------------------------------------------

    def routes(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=MAX_FORM_BYTES)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/l/{id}", self.link)
        app.router.add_get("/", self.inbox)
        app.router.add_get("/alerts/{id}", self.alert_page)
        app.router.add_post("/alerts/{id}/{action}", self.act)
        app.router.add_get("/supervisor", self.supervisor)
        app.router.add_static("/static/", HERE / "static", show_index=False)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound:
            return self.error(404, "没有这条告警 (no such alert)", self.session_of(request))
        except (InvalidInput, TransitionError) as exc:
            status = 409 if isinstance(exc, TransitionError) else 400
            return self.error(status, str(exc), self.session_of(request))
        except web.HTTPRequestEntityTooLarge:
            return self.error(413, "提交内容过长 (form too large)")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self.error(exc.status, exc.reason, self.session_of(request))
        except Exception:
            log.exception("officer page %s %s failed", request.method, request.path[:100])
            return self.error(500, "内部错误，已记录 (internal error, logged)")

    def _signed_in(self, request: web.Request) -> Session:
        """The session, or a redirect to sign in that comes back here."""
        session = self.session_of(request)
        if session is None:
            raise web.HTTPSeeOther(PREFIX + "login?" + urllib.parse.urlencode({"next": request.path_qs}))
        return session

    async def login_form(self, request: web.Request) -> web.Response:
        return self.page("login.html", next=_safe_next(request.query.get("next", "")), message="")

    async def login(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            raise web.HTTPForbidden(reason="cross-origin request refused")
        data = await request.post()
        username = str(data.get("username", ""))[:64].strip().lower()
        password = str(data.get("password", ""))
        target = _safe_next(str(data.get("next", "")))
        keys = (f"user:{username}", f"ip:{request.remote or ''}")
        if self.sessions.limited(*keys):
            log.warning("sign-in refused (rate limit) for %r from %s", username, request.remote)
            return self.page("login.html", 429, next=target,
                             message="尝试次数过多，请稍后再试 (too many attempts: try again later)")
        user = self.accounts.authenticate(username, password)
        if user is None:
            self.sessions.record_failure(*keys)
            log.warning("sign-in failed for %r from %s", username, request.remote)
            return self.page("login.html", 401, next=target,
                             message="用户名或密码错误 (wrong name or password)")
        self.sessions.clear_failures(keys[0])
        token, _ = self.sessions.open(user)
        log.info("officer %s signed in from %s", user.username, request.remote)
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", secure=self.config.cookie_secure,
                            path=PREFIX, max_age=int(self.config.session_ttl_s))
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._signed_in(request)
        await self.form(request, session)
        self.sessions.close_session(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther(PREFIX + "login")
        response.del_cookie(COOKIE, path=PREFIX)
        raise response

    async def link(self, request: web.Request) -> web.Response:
        alert_id = request.match_info["id"]
        problem = self.signer.check(alert_id, request.query.get("e", ""), request.query.get("s", ""))
        if problem is not None:
            return self.error(403 if "expired" not in problem else 410, problem)
        self._signed_in(request)
        raise web.HTTPSeeOther(PREFIX + "alerts/" + urllib.parse.quote(alert_id, safe=""))

    async def inbox(self, request: web.Request) -> web.Response:
        session = self._signed_in(request)
        user = session.user
        active = self.store.find(states=["open", "acknowledged"], districts=self.scope(user), limit=500)
        active.sort(key=lambda a: (SEVERITY_ORDER.get(a["severity"], 9), a["raised_at"]), reverse=False)
        mine = [a for a in active if a.get("assignee") == user.username]
        return self.page("inbox.html", session=session, mine=mine, active=active,
                         refresh_s=30, now=time.time())

    async def alert_page(self, request: web.Request) -> web.Response:
        session = self._signed_in(request)
        alert = self.alert_for(session.user, request.match_info["id"])
        ev = gather(alert, self.rules, self.query)
        tiles = None
        if self.config.tiles is not None:
            tiles = (self.config.tiles.url, self.tile_key, self.config.tiles.subdomains)
        officers = [u for u in self.accounts.all() if not u.disabled and u.role is Role.OFFICER
                    and (not alert.get("district") or alert["district"] in u.districts)]
        return self.page("alert.html", session=session, alert=alert, ev=ev, summary_zh=summary_zh(alert),
                         map_svg=render_map(ev, tiles), speed_svg=render_speed(ev.track),
                         show_raw=request.query.get("raw") == "1", officers=officers,
                         actions=_actions(alert["state"]), outcomes=OUTCOME_NAMES,
                         attribution=self.config.tiles.attribution if self.config.tiles else "")

    async def act(self, request: web.Request) -> web.Response:
        session = self._signed_in(request)
        action = request.match_info["action"]
        if action not in TRANSITIONS:
            raise NotFound(action)
        alert = self.alert_for(session.user, request.match_info["id"])
        fields = await self.form(request, session)
        assignee = fields.get("assignee", "") if action == "assign" else ""
        if assignee:
            target = self.accounts.find(assignee)
            if target is None or target.disabled or not target.may_see(alert.get("district", "")):
                raise InvalidInput(f"无法指派给 {assignee} (not an officer of this district)")
        outcome = fields.get("outcome") or None if action == "close" else None
        if action == "close" and outcome is None:
            raise InvalidInput("办结需选择处置结果 (choose an outcome to close)")
        self.store.transition(alert["alert_id"], action, session.user.username, fields.get("note", ""),
                              outcome=outcome, case_no=fields.get("case_no", "") if action == "close" else "",
                              assignee=assignee)
        log.info("officer %s: %s %s", session.user.username, action, alert["alert_id"])
        self.on_change()
        raise web.HTTPSeeOther(PREFIX + "alerts/" + urllib.parse.quote(alert["alert_id"], safe=""))

    async def supervisor(self, request: web.Request) -> web.Response:
        session = self._signed_in(request)
        if session.user.role is Role.OFFICER:
            raise web.HTTPForbidden(reason="主管页面仅限主管 (supervisors only)")
        now_ns = time.time_ns()
        rows = self.store.workflow_rows(now_ns - 12 * 7 * 86400 * 10**9, now_ns + 10**9)
        open_rows = self.store.workflow_rows(0, now_ns + 10**9)
        return self.page("supervisor.html", session=session, weeks=weekly(rows)[::-1],
                         overview=open_overview(open_rows, now_ns))


def _actions(state: str) -> list[str]:
    """The workflow steps an alert in `state` allows (store.TRANSITIONS), in their order."""
    return [a for a, (allowed, _) in TRANSITIONS.items() if state in allowed]


def _safe_next(target: str) -> str:
    """Only a path of these pages: an open redirect would let a phishing link borrow our name."""
    if target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target and len(target) < 600:
        return target
    return PREFIX
