"""The bench's CPU-per-message table (wastestream/bench/proccost.py) and its targets (targets.py)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wastestream.bench.city import SCALES, model_for
from wastestream.bench.proccost import (
    cost_table,
    group_ticks,
    kind_costs,
    kind_of,
    machine_shares,
    parse_stat,
    read_stats,
    total_cost,
)
from wastestream.bench.run import parse_args
from wastestream.bench.targets import Target, bench_targets, city_targets

# /proc/<pid>/stat of a process whose name holds a space and a ')': pgrp 4000, utime 250, stime 75.
STAT = ("4321 (my (odd) proc) S 1 4000 4000 0 -1 4194560 812 0 3 0 250 75 9 2 20 0 4 0 1234 "
        "123456789 2500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0")


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    assert parse_stat(STAT) == (4000, 325)


def test_read_stats_parses_every_process_directory_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "4321").mkdir()
    (tmp_path / "4321" / "stat").write_text(STAT)
    (tmp_path / "77").mkdir()  # exited between the listing and the read: no stat file
    (tmp_path / "self").mkdir()
    (tmp_path / "stat").write_text("cpu 1 2 3 4")
    assert read_stats(tmp_path) == {4321: (4000, 325)}


def test_own_process_is_read_from_the_real_proc() -> None:
    group, ticks = read_stats()[os.getpid()]
    assert group == os.getpgrp() and ticks >= 0


def test_a_group_leader_counts_its_whole_group_another_process_only_itself() -> None:
    stats = {10: (10, 100), 11: (10, 40), 12: (10, 5), 20: (19, 7), 19: (19, 1000)}
    ticks = group_ticks({"worker-0": 10, "loadgen-0": 20, "kafka": 30}, stats)
    assert ticks == {"worker-0": 145, "loadgen-0": 7, "kafka": None}


def test_a_child_spawned_by_a_measured_process_counts_for_it() -> None:
    """Real processes: a shell in its own session whose child burns CPU; the shell's group has it."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    shell = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{burn}" & wait'], start_new_session=True)
    try:
        deadline, children = time.monotonic() + 20, 0
        while children < 0.25 * os.sysconf("SC_CLK_TCK") and time.monotonic() < deadline:  # its 0.3 s
            time.sleep(0.2)
            stats = read_stats()
            grouped = group_ticks({"worker-0": shell.pid}, stats)["worker-0"]
            assert grouped is not None
            children = grouped - stats[shell.pid][1]
        assert children >= 0.25 * os.sysconf("SC_CLK_TCK"), "the child's CPU is not in its leader's group"
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(10)


def test_kinds_from_the_bench_names() -> None:
    names = ("loadgen-1", "city-pub-0", "bridge-1", "worker-0", "mosquitto", "kafka", "influxdb", "topics")
    assert [kind_of(n) for n in names] == ["load generator", "load generator", "bridges", "workers",
                                           "Mosquitto", "Kafka", "InfluxDB", "other"]


def test_cost_per_kind_between_two_snapshots() -> None:
    a = {"t": 100.0,
         "procs": {"worker-0": 100, "worker-1": 0, "kafka": 50, "loadgen-0": 10, "bridge-0": None}}
    b = {"t": 110.0, "procs": {"worker-0": 300, "worker-1": 100, "kafka": 100, "bridge-0": 40}}
    costs = kind_costs(a, b, 1000, hz=100, cpus=2)
    assert list(costs) == ["Kafka", "workers"]  # the load generator ended, the bridge started: left out
    assert costs["workers"] == {"cpu_s": 3.0, "core_pct": 30.0, "machine_pct": 15.0, "us_per_msg": 3000.0,
                                "procs": 2}
    assert costs["Kafka"]["us_per_msg"] == 500.0
    assert total_cost(costs)["machine_pct"] == 17.5
    assert math.isnan(kind_costs(a, b, 0, hz=100, cpus=2)["workers"]["us_per_msg"])  # idle: no messages


def test_cost_table_sums_the_pipeline_without_the_load_generator_and_names_the_bound() -> None:
    a = {"t": 0.0, "procs": {"loadgen-0": 0, "bridge-0": 0, "worker-0": 0, "kafka": 0}}
    b = {"t": 10.0, "procs": {"loadgen-0": 900, "bridge-0": 100, "worker-0": 300, "kafka": 50}}
    lines = cost_table(kind_costs(a, b, 10_000, hz=100, cpus=2), "title")
    text = "\n".join(lines)
    pipeline = next(line for line in lines if line.strip().startswith("pipeline"))
    assert pipeline.split()[1:4] == ["4.50", "45.0", "450"]  # bridges + workers + Kafka
    assert "the next bound: workers (300 µs of CPU per message)" in text


def test_targets_met_not_met_and_not_measured() -> None:
    summary = {"within_p99_target_msg_per_s": 2000.0, "slowest_raw_msg_per_s": 10_000.0,
               "naive_msg_per_s": 300.0}
    t = bench_targets(summary, {"worker_cpu_ms_per_msg": 0.08}, None)
    assert [x.met for x in t] == [False, True, True, None, None]  # 0.2 < 0.5; 6.7 >= 5; 80 µs <= 100;
    assert "NOT met" in t[0].line() and "not measured" in t[4].line()  # the live figure; no idle
    assert bench_targets({}, None, {"machine_pct": 3.2})[4].met is True
    drain = {"worker_cpu_us_per_msg": 140.0, "worker_cpu_ms_per_msg": 0.1}  # µs when the file has it
    assert bench_targets({}, drain, None)[2].value == 140.0
    assert Target("x", 5.0, 5.0, False).met and Target("y", 5.0, 5.0, True).met  # the bound itself meets


def test_the_live_worker_cpu_is_shown_beside_the_drain_target_never_judged() -> None:
    headline = {"offered_msg_per_s": 1600.0, "cost_by_kind": {"workers": {"us_per_msg": 295.3}}}
    drain = {"worker_cpu_us_per_msg": 61.0}
    target, live = bench_targets({}, drain, None, headline)[2:4]
    assert target.met is True and target.value == 61.0  # the target stays the drain's figure
    assert live.value == 295.3 and live.met is None
    assert "295 µs" in live.line() and "1600 msg/s" in live.line() and "not the target" in live.line()
    assert "met" not in live.line().replace("not the target", "")
    assert "-" in bench_targets({}, drain, None, None)[3].line()  # no headline step: not measured


def test_city_targets_judge_p99_keeping_up_and_the_machine() -> None:
    city = {"total": {"latency_p99_ms": 640.0}, "kept_up": False, "machine_cpu_pct": 31.0,
            "machine_shares": {"pipeline_pct": 20.5, "load_generator_pct": 6.0}}
    t = city_targets(city, {"machine_pct": 2.0}, "city")
    assert [x.met for x in t] == [True, False, False, None, None, True]  # the shares are not judged
    assert " no " in t[1].line()
    assert "20.5 %" in t[3].line() and "pipeline" in t[3].line() and "6.0 %" in t[4].line()
    assert len(city_targets(city, None, "province")) == 5  # the 25 % bar is the 4-million city's


def test_the_machine_busy_split_into_pipeline_load_generator_and_other_work() -> None:
    a = {"t": 0.0, "procs": {"city-pub-0": 0, "bridge-0": 0, "worker-0": 0, "kafka": 0, "influxdb": 0}}
    b = {"t": 100.0, "procs": {"city-pub-0": 1000, "bridge-0": 1000, "worker-0": 2000, "kafka": 500,
                               "influxdb": 500}}
    costs = kind_costs(a, b, 50_000, hz=100, cpus=2)  # CPU seconds: 10 load generator, 40 pipeline
    shares = machine_shares(costs, 30.0)
    assert shares == {"machine_pct": 30.0, "pipeline_pct": 20.0, "load_generator_pct": 5.0, "other_pct": 5.0}
    assert math.isnan(machine_shares({}, 12.0)["pipeline_pct"])


def test_the_province_is_ten_cities() -> None:
    city, province = SCALES["city"], model_for("province")
    assert province.population == 10 * city.population
    assert {k: v / city.devices()[k] for k, v in province.devices().items()} == pytest.approx(
        dict.fromkeys(city.devices(), 10.0), rel=0.01)
    peak = sum(province.peak_rates().values())
    assert peak == pytest.approx(10 * sum(city.peak_rates().values()), rel=0.01)
    assert 4_500 < peak < 4_900  # the issue's ~4,700 msg/s at the busiest minute
    assert model_for("province", 20_000_000).population == 20_000_000


def test_scale_options_imply_the_city_run() -> None:
    cfg, _ = parse_args(["--province"])
    assert cfg.city_scale and cfg.scale == "province" and cfg.city_model() == SCALES["province"]
    cfg, _ = parse_args(["--scale", "city", "--idle-seconds", "0"])
    assert cfg.city_scale and cfg.city_model() == SCALES["city"] and cfg.idle_s == 0
    cfg, _ = parse_args([])
    assert not cfg.city_scale and cfg.idle_s == 20.0


def test_one_bench_at_a_time_on_the_private_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second bench (another process, any checkout) finds the lock taken, and gets it afterwards."""
    from wastestream.bench import run

    monkeypatch.setattr(run.tempfile, "gettempdir", lambda: str(tmp_path))
    probe = ("import fcntl, sys\nwith open(sys.argv[1], 'a+') as f:\n    try:\n"
             "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n        print('free')\n"
             "    except BlockingIOError:\n        print('busy')\n")

    def other_bench(path: Path) -> str:
        return subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()

    with run.private_services_lock():
        path = next(tmp_path.glob("wastestream-bench-*.lock"))
        assert other_bench(path) == "busy"
        assert f"pid {os.getpid()}" in path.read_text()
    assert other_bench(path) == "free"
