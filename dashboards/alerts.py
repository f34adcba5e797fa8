"""Alert panels generated from the kind registry (stream/alertkinds.py): a new kind registered for
a dashboard shows up in that dashboard's panels once the JSON is regenerated (a test checks)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table

from dashboards.common import table_panel
from dashboards.query import Query
from stream.alertkinds import on_dashboard


def kinds_regex(uid: str) -> str:
    """`^(a|b|...)$` over the kinds registered for dashboard `uid` (codes are [a-z0-9_])."""
    return "^(" + "|".join(on_dashboard(uid)) + ")$"


def alerts_by_kind(uid: str, title: str, where: str = "$timeFilter", description: str = "",
                   w: int = 12) -> table.Panel:
    """Open alerts per kind (and site) of the dashboard's registered kinds; `count` sums cool-down repeats."""
    return table_panel(title, Query(
        f'SELECT count("alert_id") AS "alerts", sum("count") AS "occurrences" FROM "alert" '
        f'WHERE "kind" =~ /{kinds_regex(uid)}/ AND "state" = \'open\' AND {where} '
        'GROUP BY "site", "kind"').table(), description=description, w=w)
