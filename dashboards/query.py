"""An InfluxQL target for grafana-foundation-sdk panels (the SDK ships no InfluxDB query type).

Raw query mode only: the query text is what runs, so the proof test can run exactly it.
"""

from __future__ import annotations

from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_UID = "wastestream-influx"
DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQL(cogvariants.Dataquery):
    """Grafana's InfluxDB target JSON in raw (InfluxQL) mode."""

    def __init__(self, ref_id: str, query: str, result_format: ResultFormat, alias: str | None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": DATASOURCE.to_json(),
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class Query(cogbuilder.Builder[InfluxQL]):
    """`Query("SELECT ...").table().alias("$tag_site")`: one InfluxQL target."""

    def __init__(self, query: str, ref_id: str = "A") -> None:
        self._internal = InfluxQL(ref_id, " ".join(query.split()), "time_series", None)

    def build(self) -> InfluxQL:
        return self._internal

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    def ref(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self
