"""Read results back with InfluxQL (`/query`), which InfluxDB 1.x, 2.x (DBRP) and 3.x answer."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from wastestream.foundation.settings import Settings


class InfluxQueryError(RuntimeError):
    pass


def influxql(settings: Settings, query: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run one InfluxQL statement; return its rows as dicts (tags merged in), across all series."""
    params = {"db": settings.influx_db, "q": query, "epoch": "ns"}
    request = urllib.request.Request(f"{settings.influx_url}/query?{urllib.parse.urlencode(params)}")
    if settings.influx_token:
        request.add_header("Authorization", f"Token {settings.influx_token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except OSError as exc:
        raise InfluxQueryError(f"InfluxDB at {settings.influx_url} did not answer {query!r}: {exc}") from exc
    rows: list[dict[str, Any]] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQueryError(f"{query!r}: {result['error']}")
        for series in result.get("series", []):
            tags = series.get("tags", {})
            for values in series.get("values", []):
                rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
    return rows
