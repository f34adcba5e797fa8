"""Export rows → contract `Weighing`s with stable msg_ids, or rejections that say why.

msg_id = `{device}.import:{epoch}:{seq}` (contract.msgid), chosen so that the workers'
de-duplication (stream/dedup.py) counts a re-imported row once and two distinct rows twice:
- device: the weighbridge's id with `.import`: history must not share the live device's mark,
  whose epoch (its outbox's creation, recent) is after every historical one and would make
  all history look like duplicates;
- epoch: the Unix second of the ticket's local midnight (never after now, ASCII digits);
- seq: the ticket's rank (1, 2, ...) within that device and day, ordered by time and then by
  the row's content hash, so the same file gives the same ids, whatever its row order.
A day's rows must come from one export to keep their ranks: the same day imported from two
different exports (with different rows) is not de-duplicated row by row (see README.md).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from contract.codec import decode, encode
from contract.events import Direction, TareSource, WasteCategory, Weighing
from contract.msgid import make_msg_id
from contract.text import IDENT
from wastestream.importer.mapping import Mapping

PLATE = re.compile(r"^[\u4e00-\u9fff][A-Z][A-Z0-9]{4,5}[A-Z0-9挂学警港澳领使]$")
"""A Chinese plate: province character, issuing-office letter, 5 (or 6, new energy) more."""
TICKET = re.compile(IDENT)
"""The contract's id rule (contract.text.IDENT); lengths are checked where it is used."""
NET_TOLERANCE_KG = 0.5
"""As the contract (Weighing.__post_init__): net must be gross - tare within half a kilo."""


@dataclass(frozen=True)
class Reject:
    row: int
    column: str
    reason: str
    raw: dict[str, str]


@dataclass(frozen=True)
class Ticket:
    row: int
    site: str
    device: str
    ts: datetime
    fields: dict[str, object]
    digest: str


class _Bad(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def _get(row: dict[str, str], header: str) -> str:
    return row.get(header, "").strip() if header else ""


def _kg(row: dict[str, str], header: str, factor: float, *, required: bool = True) -> float | None:
    text = _get(row, header).replace(",", "")
    if not text:
        if required:
            raise _Bad(header, "empty")
        return None
    try:
        value = float(text) * factor
    except ValueError:
        raise _Bad(header, f"not a number: {text!r}") from None
    if not 0 <= value <= 200_000 or value != value:
        raise _Bad(header, f"{value:g} kg is outside 0–200000 kg")
    return round(value, 3)


def _time(text: str, header: str, mapping: Mapping, now: datetime) -> datetime:
    tz = ZoneInfo(mapping.timezone)
    ts: datetime | None = None
    for fmt in mapping.time_formats:
        try:
            ts = datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    if ts is None:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(header, f"not a time: {text!r} (formats: {', '.join(mapping.time_formats)})") from None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=tz)
    if ts > now + timedelta(minutes=5):
        raise _Bad(header, f"{text} is in the future")
    return ts


def _mapped(text: str, table: dict[str, str], default: str | None, header: str, what: str) -> str:
    value = table.get(text, text) if text else (default or "")
    if not value:
        raise _Bad(header or what, f"no {what} (empty, and no default)")
    return value


def convert_row(n: int, row: dict[str, str], mapping: Mapping, now: datetime) -> Ticket | Reject:
    """One row: every check the contract makes, with the export's column named."""
    c, d = mapping.columns, mapping.defaults
    factor = 1000.0 if mapping.units == "t" else 1.0
    try:
        plate = _get(row, c.plate).upper().replace(" ", "").replace("·", "")
        if not PLATE.match(plate):
            raise _Bad(c.plate, f"not a plate: {_get(row, c.plate)!r}")
        ts = _time(_get(row, c.time), c.time, mapping, now)
        gross = _kg(row, c.gross, factor)
        tare = _kg(row, c.tare, factor)
        assert gross is not None and tare is not None
        if tare > gross:
            raise _Bad(c.tare, f"tare {tare:g} kg exceeds gross {gross:g} kg")
        net = _kg(row, c.net, factor, required=False)
        if net is None:
            net = round(gross - tare, 3)
        elif abs(gross - tare - net) > NET_TOLERANCE_KG:
            raise _Bad(c.net, f"net {net:g} kg is not gross - tare = {gross - tare:g} kg")
        category = _mapped(_get(row, c.category), mapping.categories, d.category, c.category, "category")
        if category not in set(WasteCategory):
            raise _Bad(c.category or "category", f"unknown category {category!r} (map it under categories:)")
        site = _mapped(_get(row, c.site), mapping.sites, d.site, c.site, "site")
        device = _mapped(_get(row, c.device), mapping.devices, d.device, c.device, "device")
        origin = _mapped(_get(row, c.origin), mapping.origins, d.origin, c.origin, "origin")
        for value, header, what in ((site, c.site, "site"), (device, c.device, "device"),
                                    (origin, c.origin, "origin")):
            if not TICKET.match(value) or len(value) > 48:
                raise _Bad(header or what, f"{what} {value!r} is not an id (map it under {what}s:)")
    except _Bad as bad:
        return Reject(n, bad.column, str(bad), row)
    digest = hashlib.sha256(repr(sorted(row.items())).encode("utf-8")).hexdigest()
    ticket = _get(row, c.ticket)
    ticket_id = ticket if TICKET.match(ticket) and len(ticket) <= 64 else f"imp-{digest[:16]}"
    fields: dict[str, object] = {
        "ticket_id": ticket_id, "plate": plate, "direction": Direction.INBOUND, "gross_kg": gross,
        "tare_kg": tare, "net_kg": net, "category": category, "origin": origin,
        "tare_source": TareSource.MEASURED}
    return Ticket(n, site, f"{device}.import", ts, fields, digest)


def number(tickets: list[Ticket], tz: str) -> tuple[list[Weighing], list[Reject]]:
    """Stable msg_ids (module doc), and the contract's own decode of each encoded message."""
    zone = ZoneInfo(tz)
    by_day: dict[tuple[str, str, int], list[Ticket]] = defaultdict(list)
    for t in tickets:
        midnight = t.ts.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        by_day[(t.site, t.device, int(midnight.timestamp()))].append(t)
    out: list[Weighing] = []
    rejects: list[Reject] = []
    seen: dict[str, int] = {}
    for (site, device, epoch), day in sorted(by_day.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        for seq, t in enumerate(sorted(day, key=lambda t: (t.ts, t.digest)), start=1):
            if t.digest in seen:
                rejects.append(Reject(t.row, "", f"same row as row {seen[t.digest]} (a duplicate line)", {}))
                continue
            seen[t.digest] = t.row
            try:
                event = Weighing(msg_id=make_msg_id(device, epoch, seq), device_id=device, site_id=site,
                                 ts=t.ts, **t.fields)  # type: ignore[arg-type]
                checked = decode(encode(event), Weighing)  # what the bridge will check
                assert isinstance(checked, Weighing)
                out.append(checked)
            except (ValueError, TypeError, msgspec.ValidationError) as exc:
                rejects.append(Reject(t.row, "", f"contract: {exc}", {}))
    return out, rejects
