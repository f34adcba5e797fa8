"""Weighbridge integrity (pure): one alert per anti-cheat flag on a ticket.

The flags are raised by the indicator or the edge (double weighing, unstable capture, tare
deviation, gross above rating, remote-control jump, clock skew); the stream turns each into
an alert `weighbridge_<flag>` (each registered, with its severity, in stream/alertkinds.py).
This runs inside the tonnage step rather than as its own agent: it then shares the tonnage
de-duplication mark, so a duplicated ticket raises nothing twice, with no second consumer or table.
"""

from __future__ import annotations

from contract.events import Alert, Weighing, WeighingFlag
from contract.msgid import site_msg_id
from stream.alerting.make import make_alert

WHAT: dict[WeighingFlag, str] = {
    WeighingFlag.DOUBLE_WEIGHING: "weighed twice within minutes",
    WeighingFlag.UNSTABLE_CAPTURE: "captured on an unstable weight",
    WeighingFlag.TARE_DEVIATION: "tare far from the registered tare",
    WeighingFlag.OVER_RATING: "gross above the vehicle's rating",
    WeighingFlag.REMOTE_JUMP: "weight jumped as if remote-controlled",
    WeighingFlag.CLOCK_SKEW: "indicator clock skewed",
    WeighingFlag.OVERLOAD: "indicator overloaded (beyond its range): gross is a lower bound",
    WeighingFlag.MOTION: "indicator kept reporting motion while the weights were at rest",
    WeighingFlag.NET_MODE: "weighed in the indicator's net mode (its tare, not the registry's)",
    WeighingFlag.UNREGISTERED_VEHICLE: "plate unread or not in the vehicle registry (category, tare unknown)",
    WeighingFlag.PASS_EXPIRED: "weighed in but never weighed out in time: no measured tare, net not counted",
}


def kind(flag: WeighingFlag) -> str:
    return f"weighbridge_{flag.value}"


def integrity_alerts(w: Weighing) -> list[Alert]:
    """One alert per distinct flag; dedup key site/msg_id|flag, evidence the ticket."""
    return [
        make_alert(
            kind(flag), site_id=w.site_id, device_id=w.device_id,
            subject=w.device_id if flag == WeighingFlag.CLOCK_SKEW else w.plate,
            summary=f"ticket {w.ticket_id} of {w.plate} at {w.site_id}/{w.device_id}: {WHAT[flag]} "
                    f"(gross {w.gross_kg:g} kg, tare {w.tare_kg:g} kg, net {w.net_kg:g} kg)",
            evidence=[w.msg_id], ts=w.ts, dedup_key=f"{site_msg_id(w.site_id, w.msg_id)}|{flag.value}",
        )
        for flag in dict.fromkeys(w.flags)
    ]
