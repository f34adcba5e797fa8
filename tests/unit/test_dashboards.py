"""Dashboards as code: the committed JSON is what the code generates; queries are raw InfluxQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dashboards import pipeline_health
from dashboards.generate import OUT_DIR, dashboards, file_name, render, stale

VARIABLE = re.compile(r"\$(\w+)")
BUILTIN = {"timeFilter", "__interval", "tag_site", "tag_category", "tag_community", "tag_device", "tag_bin",
           "tag_host"}


def test_committed_json_is_fresh() -> None:
    assert stale() == [], "run `wastestream dashboards generate` and commit dashboards/*.json"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = {uid: render(m) for uid, m in dashboards().items()}
    second = {uid: render(m) for uid, m in dashboards().items()}
    assert first == second
    assert sorted(p.name for p in OUT_DIR.glob("ws-*.json")) == sorted(file_name(uid) for uid in first)


def _panels(model: dict) -> list[dict]:
    out = []
    for panel in model["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def influx_dashboards() -> dict[str, dict]:
    """Every dashboard but pipeline health, which reads Prometheus (test_dashboard_pipeline_health.py)."""
    return {uid: m for uid, m in dashboards().items() if uid != pipeline_health.UID}


def test_every_target_is_raw_influxql_on_the_one_datasource() -> None:
    for uid, model in influx_dashboards().items():
        assert model["timezone"] == "Asia/Shanghai"
        names = {v["name"] for v in model["templating"]["list"]}
        ids = [p["id"] for p in _panels(model)]
        assert len(ids) == len(set(ids)), uid
        for panel in _panels(model):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "influxdb", "uid": "wastestream-influx"}, panel["title"]
            assert panel["targets"], f"{uid}: {panel['title']} has no query"
            for target in panel["targets"]:
                q = target["query"]
                assert target["rawQuery"] is True and target["datasource"]["uid"] == "wastestream-influx"
                assert q.startswith("SELECT ") and "$timeFilter" in q, (uid, panel["title"], q)
                used = set(VARIABLE.findall(q)) | set(VARIABLE.findall(target.get("alias", "")))
                assert used <= BUILTIN | names, (uid, panel["title"], used - BUILTIN - names)
                if "time(1d)" in q or "time(1h)" in q:
                    assert "tz('Asia/Shanghai')" in q, (uid, panel["title"])


def test_template_variables_are_show_tag_values() -> None:
    wanted = {"facility", "community", "truck"}
    seen = set()
    for model in influx_dashboards().values():
        for var in model["templating"]["list"]:
            if var["type"] == "query":
                assert var["query"].startswith("SHOW TAG VALUES "), var
                assert var["datasource"]["uid"] == "wastestream-influx"
                seen.add(var["name"])
    assert wanted <= seen


def test_json_files_are_sorted_and_stable() -> None:
    for path in OUT_DIR.glob("ws-*.json"):
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
