"""Puts the officers' side together for the alert service from its config and the city's rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from stream.alerting.config import AlertsConfig
from stream.alerting.officer.accounts import AccountStore
from stream.alerting.officer.evidence import influx_query
from stream.alerting.officer.links import LinkSigner, stored_key
from stream.alerting.officer.pages import Officers
from stream.alerting.officer.sessions import SessionStore
from stream.alerting.store import AlertStore
from stream.rules import Rules
from wastestream.foundation.settings import Settings


def link_signer(config: AlertsConfig, db_path: Path) -> LinkSigner:
    """The signer of push links: the configured key, or the one kept in the store's file."""
    officer = config.officer
    key = officer.link_key.resolve("officer link key").encode() if officer.link_key else stored_key(db_path)
    return LinkSigner(key, officer.public_url, officer.link_ttl_s)


def officer_app(config: AlertsConfig, settings: Settings, rules: Rules, store: AlertStore,
                on_change: Callable[[], None]) -> tuple[web.Application, Officers]:
    officer = config.officer
    accounts = AccountStore(store.path)
    sessions = SessionStore(store.path, accounts, ttl_s=officer.session_ttl_s,
                            max_failures=officer.login_max_failures, failure_window_s=officer.login_window_s)
    tile_key = officer.tiles.key.resolve("tile key") if officer.tiles and officer.tiles.key else ""
    pages = Officers(store, accounts, sessions, link_signer(config, store.path), officer, rules,
                     influx_query(settings), tile_key, on_change)
    return pages.routes(), pages
