"""Sorting analytics against the real Kafka and InfluxDB: accuracy, participation, bin_full, exact alerts."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.events import BinLevel, Deposit, Envelope, Verdict, VerdictSource, WasteCategory
from stream.alerting.make import alert_id
from tests.integration.test_stream_tonnage_analytics import (
    DAYS,
    MAR1,
    MAR2,
    TZ,
    alert_offsets,
    expect_alerts,
    produce,
    q,
    skip_history,
    start_worker,
    stop,
    wait_until,
    write_rules,
)
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

C, X, U = Verdict.CORRECT, Verdict.INCORRECT, Verdict.UNCHECKED
T0 = datetime(2026, 3, 1, 2, tzinfo=UTC)  # 10:00 Beijing, 1 March


def pseudonym(household: str) -> str:
    """A household as the edge writes it (16 lowercase hex chars; the contract refuses anything else)."""
    return hashlib.sha256(household.encode()).hexdigest()[:16]


def dep(r: str, st: str, seq: int, v: Verdict, kg: float, hh: str, ts: datetime = T0) -> Deposit:
    return Deposit(msg_id=f"{st}-{r}:1:{seq}", device_id=f"{st}-{r}", site_id=f"s-{r}",
                   ts=ts + timedelta(minutes=seq), community_id=f"cm-{r}", bin=WasteCategory.KITCHEN, kg=kg,
                   household="anonymous" if hh == "anon" else pseudonym(f"{r}-{hh}"), verdict=v,
                   verdict_source=VerdictSource.NONE if v == U else VerdictSource.CAMERA)


def lvl(r: str, st: str, seq: int, fill: float, b: WasteCategory = WasteCategory.KITCHEN) -> BinLevel:
    return BinLevel(msg_id=f"{st}-{r}:1:{seq}", device_id=f"{st}-{r}", site_id=f"s-{r}",
                    ts=T0 + timedelta(minutes=seq), community_id=f"cm-{r}", bin=b, fill_pct=fill)


def test_sorting_accuracy_participation_and_alerts(settings: Settings, run_id: str,
                                                   tmp_path: Path) -> None:
    r = run_id
    deposits = [
        dep(r, "st1", 1, C, 2.0, "1"), dep(r, "st1", 2, X, 1.0, "2"), dep(r, "st1", 3, C, 3.0, "3"),
        dep(r, "st1", 4, X, 1.0, "1"),  # 4th checked: 2/4 = 50 % < 80 % -> low_sorting_accuracy
        dep(r, "st1", 5, C, 2.0, "anon"), dep(r, "st1", 6, U, 5.0, "2"),
        dep(r, "st1", 7, C, 1.0, "1", ts=T0 + timedelta(hours=14)),  # 00:07 Beijing, 2 March
        dep(r, "st2", 1, C, 4.0, "2"), dep(r, "st2", 2, C, 1.0, "4"), dep(r, "st2", 3, U, 2.0, "5"),
    ]
    levels = [lvl(r, "st1", 8, 40), lvl(r, "st1", 9, 91), lvl(r, "st1", 10, 95), lvl(r, "st1", 11, 10),
              lvl(r, "st1", 12, 93), lvl(r, "st2", 4, 85, WasteCategory.RECYCLABLE)]
    skip_history(settings, "weighing", "deposit", "bin_level", "truck_telemetry")
    start = alert_offsets(settings)
    events: list[Envelope] = [*deposits, *levels, *deposits, levels[1], levels[4]]  # all duplicated
    asyncio.run(produce(settings, events))
    rules, log = write_rules(tmp_path / "rules.yaml", r), tmp_path / "worker.log"
    expected_alerts = {alert_id("low_sorting_accuracy", f"s-{r}/st1-{r}|2026-03-01"),  # site/device
                       alert_id("bin_full", f"kitchen|s-{r}/st1-{r}:1:9"),
                       alert_id("bin_full", f"kitchen|s-{r}/st1-{r}:1:12")}
    proc = start_worker(settings, rules, log)
    try:
        def community_day() -> None:
            acc = q(settings, f"SELECT sum(correct) AS c, sum(checked) AS k, sum(deposits) AS n, "
                              f"sum(correct_kg) AS ckg, sum(checked_kg) AS kkg, "
                              f"sum(correct) / sum(checked) * 100 AS pct FROM sorting_daily "
                              f"WHERE community = 'cm-{r}' AND {DAYS} GROUP BY time(1d) {TZ}", r)
            got = [(x["time"], x["c"], x["k"], x["n"], x["ckg"], x["kkg"], round(x["pct"], 2)) for x in acc
                   if x["k"]]
            # 1 March: st1 C I C I C U (anon's correct counts) + st2 C C U; 2 March: st1 C
            assert got == [(MAR1, 5, 7, 9, 12.0, 14.0, 71.43), (MAR2, 1, 1, 1, 1.0, 1.0, 100.0)], got
            part = q(settings, f"SELECT count(distinct(household)) AS hh FROM deposit "
                               f"WHERE community = 'cm-{r}' AND {DAYS} GROUP BY time(1d) {TZ}", r)
            assert [(x["time"], x["hh"]) for x in part] == [(MAR1, 5), (MAR2, 1)]  # of 10 registered
            n = q(settings, f"SELECT count(kg) AS n FROM deposit WHERE community = 'cm-{r}'", r)
            b = q(settings, f"SELECT count(fill_pct) AS n FROM bin_level WHERE community = 'cm-{r}'", r)
            assert n and b, (n, b)  # the bin_level points may land after the deposits': wait for them
            assert (n[0]["n"], b[0]["n"]) == (10, 6)  # duplicates overwrote, not added
        wait_until(community_day, 60, proc, log)
        wait_until(expect_alerts(settings, start, r, expected_alerts, log), 30, proc, log)
        time.sleep(2.0)
        community_day()
        expect_alerts(settings, start, r, expected_alerts, log)()
        st1 = q(settings, f"SELECT accuracy_pct, weight_accuracy_pct FROM sorting_daily "
                          f"WHERE device = 'st1-{r}' AND time = {MAR1}", r)
        assert [(x["accuracy_pct"], round(x["weight_accuracy_pct"], 3)) for x in st1] == [(60.0, 77.778)]
    finally:
        stop(proc)
