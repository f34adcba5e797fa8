"""`wastestream import` without services: row checks with reasons, stable and distinct msg_ids."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from contract.msgid import parse_msg_id
from wastestream.importer.convert import Reject, Ticket, convert_row, number
from wastestream.importer.mapping import load_mapping
from wastestream.importer.rows import read_rows

HERE = Path(__file__).resolve().parents[2] / "wastestream" / "importer"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _convert(path: Path) -> tuple[list[Ticket], list[Reject]]:
    mapping = load_mapping(HERE / "sample_mapping.yaml")
    out = [convert_row(n, row, mapping, NOW) for n, row in read_rows(path)]
    return [t for t in out if isinstance(t, Ticket)], [r for r in out if isinstance(r, Reject)]


def test_sample_rows_checked_with_column_and_reason() -> None:
    tickets, rejects = _convert(HERE / "sample.csv")
    assert len(tickets) == 3
    assert [(r.row, r.column) for r in rejects] == [(5, "车号"), (6, "皮重")]
    assert "exceeds gross" in rejects[1].reason
    t = tickets[0]
    assert (t.site, t.device, t.fields["net_kg"], t.fields["category"]) == (
        "lz-jm-incinerator", "wb-jm-1.import", 8220.0, "residual")


def test_msg_ids_stable_under_reordering_and_distinct(tmp_path: Path) -> None:
    lines = (HERE / "sample.csv").read_text(encoding="utf-8").splitlines()
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="gb18030")
    first, _ = number(_convert(HERE / "sample.csv")[0], "Asia/Shanghai")
    again, _ = number(_convert(shuffled)[0], "Asia/Shanghai")
    assert {e.ticket_id: e.msg_id for e in first} == {e.ticket_id: e.msg_id for e in again}
    assert len({e.msg_id for e in first}) == len(first)
    for e in first:
        key = parse_msg_id(e.msg_id)  # canonical: ASCII digits, epoch a past local midnight
        assert key.device_id == e.device_id and key.epoch < NOW.timestamp() and key.seq >= 1


def test_bad_time_unknown_category_and_net(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("车号,进场时间,毛重,皮重,净重,垃圾类别,场站,磅号\n"
                   "桂B12345,2025-02-30 08:00:00,18,10,8,其他垃圾,融安焚烧厂,融安1号磅\n"
                   "桂B12345,2025-03-01 08:00:00,18,10,8,神秘垃圾,融安焚烧厂,融安1号磅\n"
                   "桂B12345,2025-03-01 08:00:00,18,10,7.9,其他垃圾,融安焚烧厂,融安1号磅\n"
                   "桂B12345,2099-03-01 08:00:00,18,10,8,其他垃圾,融安焚烧厂,融安1号磅\n", encoding="utf-8")
    _, rejects = _convert(src)
    expected = [("进场时间", "not a time"), ("垃圾类别", "unknown category '神秘垃圾'"),
                ("净重", "net 7900 kg is not gross - tare = 8000 kg"), ("进场时间", "is in the future")]
    assert len(rejects) == len(expected)
    for r, (column, words) in zip(rejects, expected, strict=True):
        assert r.column == column and words in r.reason, r
