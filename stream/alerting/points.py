"""The InfluxDB `alert` measurement: one point per lifecycle event (see stream/sinks/SCHEMA.md).

Idempotent: a point's timestamp comes from the store (the alert's own time for `raise`,
the recorded time of the ack/close), plus a sub-millisecond offset derived from the alert
id so two alerts of one kind/site/state at the same instant do not overwrite each other.
A `repeat` rewrites the alert's raise point with the new count (same series, same time).
"""

from __future__ import annotations

import hashlib
from typing import Any

from stream.sinks.line_protocol import Point

MEASUREMENT = "alert"


def id_offset_ns(alert_id: str) -> int:
    return int.from_bytes(hashlib.sha1(alert_id.encode()).digest()[:4], "big") % 1_000_000


def alert_point(event: dict[str, Any]) -> Point:
    """From a row of `AlertStore.unexported_events()`."""
    if event["action"] in ("raise", "repeat"):
        state, ts = "open", event["raised_ns"]
    else:
        state, ts = event["to_state"], event["at_ns"]
    fields: dict[str, float | int | bool | str] = {
        "alert_id": event["alert_id"], "subject": event["subject"], "count": int(event["count"]),
    }
    if event["lat"] is not None and event["lon"] is not None:
        fields["lat"], fields["lon"] = float(event["lat"]), float(event["lon"])
    tags = {"kind": event["kind"], "severity": event["severity"], "site": event["site_id"], "state": state}
    return Point(MEASUREMENT, tags, fields, ts + id_offset_ns(event["alert_id"]))
