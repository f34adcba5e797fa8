"""The demo's officers: two accounts made for the run, and a signed link to one of its alerts.

The demo prints the link (as a push carries it), the accounts and their one-off passwords, so a
newcomer can open the officer's page of an alert the pipeline has just raised, on a phone or in a
browser: the map of the truck's track with the disposal sites, the workflow, the supervisor page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from stream.alerting.officer.accounts import AccountStore, Role
from stream.alerting.officer.links import LinkSigner, stored_key
from stream.alerting.store import AlertStore
from stream.rules import Rules

LINK_KINDS = ("illegal_dumping", "uncovered_transport", "manifest_mismatch", "bin_full")
"""Which alert the printed link opens: the first of these kinds the run raised."""


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: Role
    districts: tuple[str, ...]


def make_accounts(db: Path, rules: Rules) -> list[DemoAccount]:
    """An officer of every district of the city's rules and a supervisor, with fresh passwords."""
    accounts = AccountStore(db)
    try:
        made = []
        districts = tuple(d.id for d in rules.districts)
        for username, role, scope, name in (("demo.officer", Role.OFFICER, districts, "演示执法员"),
                                            ("demo.supervisor", Role.SUPERVISOR, (), "演示主管")):
            if role is Role.OFFICER and not scope:
                continue  # a city without districts: only supervisors see its alerts
            password = secrets.token_urlsafe(9)
            accounts.add(username, password, role=role, districts=scope, display_name=name)
            made.append(DemoAccount(username, password, role, scope))
        return made
    finally:
        accounts.close()


def render(db: Path, public_url: str, config_path: Path, made: list[DemoAccount], rules: Rules) -> list[str]:
    """The lines the demo prints: the link to one alert, the accounts, how to open it again."""
    store = AlertStore(db)
    try:
        alert = next((a for kind in LINK_KINDS for a in store.find(kind=kind, limit=1)), None)
    finally:
        store.close()
    names = {d.id: d.name for d in rules.districts}
    lines = ["", "Officer pages (the link a push carries, signed, valid 7 days):"]
    if alert is None:
        lines.append(f"  no alert to link to; the inbox: {public_url}/o/")
    else:
        link = LinkSigner(stored_key(db), public_url, 7 * 86400).link(alert["alert_id"])
        lines.append(f"  {alert['kind']} {alert['subject']}: {link}")
    for a in made:
        scope = "、".join(names.get(d, d) for d in a.districts) or "all districts"
        lines.append(f"  sign in as {a.username} / {a.password}  ({a.role.value}; {scope})")
    lines.append(f"  supervisor page: {public_url}/o/supervisor. The demo's alert service stops with the "
                 "demo; to browse on: WS_ALERTS_TOKEN=demo .venv/bin/wastestream alerts serve --config "
                 f"{config_path}")
    return lines
