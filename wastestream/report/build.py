"""Build the self-contained HTML indicator report for a period (one file, inline SVG and CSS).

Sections: indicators against the city's targets; tonnage by facility and category with
capacity use; sorting by community; muck trucks (sealed rate, manifests) when there is data;
the alert log with evidence, each alert linked to the alert service's `/alerts/{id}`.

Targets are judged on whole local days only (the city's timezone): the period is split into its
whole past days (judged; per-day and annual figures say how many days they rest on) and the
partial pieces around them ("so far today": measured, shown, never judged or extrapolated).
Citations name the plan (title, 文号, section or table row), facilities their names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from stream.alerting.kinds import kind_name, severity_name
from stream.rules import Rules, load_rules
from wastestream.foundation.settings import Settings
from wastestream.indicators.alerts import AlertLog, load_alerts
from wastestream.indicators.config import CityTable, load_city, load_manual
from wastestream.indicators.data import PeriodData, fetch_period, split_whole_days
from wastestream.indicators.evaluate import STATUS_ZH, IndicatorResult, evaluate_table, period_year
from wastestream.indicators.formulas import HOUSEHOLD, Context
from wastestream.report.svg import CATEGORY_ZH, Bar, bar_chart
from wastestream.report.template import page

DEFAULT_ALERTS_URL = "http://127.0.0.1:18600"
KIND_ZH = {"incineration": "焚烧厂", "landfill": "填埋场", "food_waste": "餐厨处理厂",
           "kitchen_waste": "厨余处理厂", "transfer": "转运站",
           "construction_recycling": "建筑垃圾资源化厂", "disposal_site": "消纳场",
           "recycling_centre": "再生资源分拣中心"}
STATE_ZH = {"open": "待处理", "acknowledged": "已受理", "closed": "已办结"}


def _num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"


def _local(ts: datetime | str, tz: str) -> str:
    if isinstance(ts, str):
        if not ts:
            return ""
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _kind_zh(kind: str) -> str:
    """Chinese name of an alert kind; agents prefix some kinds (`weighbridge_double_weighing`)."""
    name = kind_name(kind)
    if name == kind and "_" in kind:
        name = kind_name(kind.split("_", 1)[1])
    return name


def facility_name(table: CityTable, rules: Rules, site: str) -> str:
    """The facility's name: the rules' if they carry one, else the city table's, else the id."""
    fac = rules.facility(site)
    return str(getattr(fac, "name", "") or "") or table.facility_names.get(site, "") or site


def _short(text: str, n: int = 14) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_badge(r: IndicatorResult) -> str:
    css = "s-" + r.status.value.split(":")[0].replace(" ", "-").replace("?", "")
    return f'<span class="badge {css}">{STATUS_ZH[r.status]} · {escape(r.status.value)}</span>'


def _inputs(inputs: dict[str, float | int | str]) -> str:
    return ", ".join(f"{escape(k)}={escape(str(v))}" for k, v in inputs.items())


def indicators_section(results: list[IndicatorResult], year: int, table: CityTable, heading: str,
                       basis: str) -> str:
    rows = []
    for i, r in enumerate(results, 1):
        ind = r.indicator
        star = "★" if ind.mandatory else ""
        digits = 3 if ind.unit in ("吨/万元", "kg/人/日") else 1
        target = (f"{escape(r.target.label())} <small>({r.target.year})</small>" if r.target else "—")
        feed = ("计算 computed" if ind.feed == "computed" else "手工录入 manual")
        note = " ".join(x for x in (r.note, ind.note) if x)
        rows.append(
            f"<tr><td>{i}</td><td><b>{escape(ind.name_zh)}{star}</b><br><small>{escape(ind.name_en)}</small></td>"
            f"<td>{escape(ind.unit)}</td><td>{escape(ind.baseline.label())}</td><td>{target}</td>"
            f'<td class="num"><b>{_num(r.value, digits)}</b></td><td>{_status_badge(r)}</td>'
            f'<td><small>{feed}</small><div class="inputs">{_inputs(r.inputs)}'
            f'{"<br>" + escape(note) if note else ""}</div></td>'
            f'<td class="src">{escape(table.cite(ind.source))}'
            f'{"<br><q>" + escape(ind.source.quote) + "</q>" if ind.source.quote else ""}</td></tr>')
    return (f"<h2>{heading} <small>{escape(basis)}</small></h2>"
            "<table><thead><tr><th>#</th><th>指标 Indicator</th><th>单位 Unit</th><th>基准 Baseline</th>"
            "<th>目标 Target</th><th class=num>本期 Value</th><th>状态 Status</th><th>来源数据 Inputs</th>"
            "<th>出处 Source</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<p class=inputs>★ 约束性指标 (starred in the plan). 状态 Status: 达标 met / 未达标 not met / "
            "逐年提高? rising every year (needs last year's value) / 无数值目标 no numeric target / "
            "手工录入 manual input / 无数据 no data / 不足整日，不评判 less than a whole local day: "
            "measured, not judged / 规划期已结束 after the plan period: its last target for reference. "
            f"出处 Source: the plan's title, 文号, section or table row. Targets of {year}.</p>")


def tonnage_section(data: PeriodData, rules: Rules, table: CityTable, heading: str) -> str:
    """Tonnes by facility and category; per-day figures and capacity use only over whole days."""
    days = data.whole_days
    sites = sorted({s for s, _ in data.tonnage}, key=lambda s: -data.net_t({s}))
    categories = sorted({c for _, c in data.tonnage}, key=lambda c: -data.net_t(None, {c}))
    bars = []
    for s in sites:
        fac = rules.facility(s)
        use = ""
        if fac and days:
            use = f"{100 * data.net_t({s}) / days / fac.capacity_t_per_day:.1f}% 负荷 load"
        segments = [(c, data.net_t({s}, {c})) for c in categories]
        bars.append(Bar(_short(facility_name(table, rules, s)), segments, use))
    legend = {c: f"{CATEGORY_ZH.get(c, c)} {c}" for c in categories}
    chart = bar_chart(bars, title="分设施、分类别净重 Net tonnes by facility and category", unit="t",
                      legend=legend)
    rows = []
    for s in sites:
        fac = rules.facility(s)
        cap = fac.capacity_t_per_day if fac else None
        per_day = data.net_t({s}) / days if days else None
        cells = "".join(f'<td class="num">{_num(data.net_t({s}, {c}), 2)}</td>' for c in categories)
        kind = (f"{KIND_ZH.get(fac.kind, fac.kind)}<br><small>{fac.kind}</small>" if fac
                else "<small>not in rules</small>")
        peak = data.peak_load_pct.get(s) if days else None
        name = facility_name(table, rules, s)
        ident = f"<br><small>{escape(s)}</small>" if name != s else ""
        use_pct = 100 * per_day / cap if cap and per_day is not None else None
        rows.append(f"<tr><td><b>{escape(name)}</b>{ident}</td><td>{kind}</td>{cells}"
                    f'<td class="num"><b>{_num(data.net_t({s}), 2)}</b></td>'
                    f'<td class="num">{data.tickets({s})}</td>'
                    f'<td class="num">{_num(per_day, 1)}</td><td class="num">{_num(cap, 0)}</td>'
                    f'<td class="num">{_num(use_pct)}</td>'
                    f'<td class="num">{_num(peak)}</td></tr>')
    head = "".join(f'<th class="num">{CATEGORY_ZH.get(c, c)}<br><small>{c} t</small></th>'
                   for c in categories)
    household = data.net_t(None, HOUSEHOLD)
    tbl = ("<table><thead><tr><th>设施 Facility</th><th>类型 Kind</th>" + head +
             "<th class=num>合计 Total t</th><th class=num>磅单 Tickets</th><th class=num>t/d</th>"
             "<th class=num>设计能力 Capacity t/d</th><th class=num>负荷 Use %</th>"
             "<th class=num>峰值日负荷 Peak day %</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    basis = (f"{days} whole local day{'s' if days != 1 else ''}: Use % = (net t / {days}) / design capacity "
             "t/d; peak day % from facility_load." if days else
             f"Less than a whole local day ({data.days * 24:.2f} h): tonnes measured so far; per-day figures "
             "and capacity use are computed on whole days only.")
    return (f"<h2>{heading} <small>Tonnage by facility and category, with capacity use</small></h2>"
            + (chart + tbl if sites
               else '<p class="empty">本期无过磅数据 No weighing tickets in the period.</p>')
            + f"<p class=inputs>Household categories total {household:,.2f} t. {basis}</p>")


def sorting_section(data: PeriodData, rules: Rules, target_accuracy: float = 90.0) -> str:
    registered = {c.id: c.households for c in rules.communities}
    ids = sorted(set(registered) | set(data.sorting))
    if not ids:
        return ("<h2>三、分类投放 <small>Sorting by community</small></h2>"
                '<p class="empty">No communities and no deposits.</p>')
    bars, rows = [], []
    for cid in ids:
        c = data.sorting.get(cid)
        acc = 100 * c.correct / c.checked if c and c.checked else None
        if acc is not None:
            bars.append(Bar(cid, [("accuracy", acc)], f"{c.correct}/{c.checked} 正确" if c else ""))
        hh = registered.get(cid)
        part = 100 * c.households / hh if c and hh else None
        rows.append(
            f"<tr><td><b>{escape(cid)}</b>{'' if hh else ' <small>(not registered)</small>'}</td>"
            f'<td class="num">{hh or "—"}</td><td class="num">{c.households if c else 0}</td>'
            f'<td class="num">{_num(part)}</td><td class="num">{c.deposits if c else 0}</td>'
            f'<td class="num">{c.checked if c else 0}</td><td class="num">{c.correct if c else 0}</td>'
            f'<td class="num"><b>{_num(acc)}</b></td><td class="num">{_num(c.kg if c else 0, 1)}</td>'
            f'<td class="num">{len(c.stations) if c else 0}</td></tr>')
    chart = bar_chart(bars, title="各小区投放准确率 Sorting accuracy by community", unit="%",
                      colours={"accuracy": "#1f6fb2"}, max_value=100, reference=target_accuracy,
                      reference_label=f"目标 target {target_accuracy:g}%")
    return ("<h2>三、分类投放 <small>Sorting by community (accuracy, participation)</small></h2>" + chart +
            "<table><thead><tr><th>小区 Community</th><th class=num>登记户数 Registered</th>"
            "<th class=num>参与户数 Active</th><th class=num>参与率 Participation %</th>"
            "<th class=num>投放 Deposits</th><th class=num>已核查 Checked</th><th class=num>正确 Correct</th>"
            "<th class=num>准确率 Accuracy %</th><th class=num>kg</th>"
            "<th class=num>在线站点 Live stations</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<p class=inputs>Accuracy = correct / checked (unchecked excluded); participation = distinct "
            "households / registered households.</p>")


def trucks_section(data: PeriodData) -> str:
    if data.loaded_km is None and not data.manifests:
        return ""
    parts = ["<h2>四、渣土车 <small>Muck trucks: sealed transport and "
             "electronic manifests (电子联单)</small></h2>"
             '<div class="cards">']
    if data.loaded_km is not None and data.sealed_km is not None:
        rate = 100 * data.sealed_km / data.loaded_km if data.loaded_km else None
        parts.append(f'<div class="card"><b>{_num(rate)}%</b><span>密闭化运输率 sealed rate</span></div>'
                     f'<div class="card"><b>{_num(data.sealed_km, 2)} / {_num(data.loaded_km, 2)}</b>'
                     f"<span>密闭 / 重载 km sealed / loaded km ({data.trucks} trucks)</span></div>")
    labels = {"matched": "相符 matched", "mismatch": "重量不符 mismatch", "missing": "未到达 missing"}
    for status in ("matched", "mismatch", "missing"):
        if data.manifests or status == "matched":
            parts.append(f'<div class="card"><b>{data.manifests.get(status, 0)}</b>'
                         f"<span>联单 {labels[status]}</span></div>")
    parts.append("</div>")
    return "".join(parts)


def alerts_section(log: AlertLog | None, base_url: str, tz: str) -> str:
    head = "<h2>五、告警与执法记录 <small>Alert log with evidence</small></h2>"
    if log is None:
        return head + ('<p class="empty">No alert service data '
                       '(no API given and no alerts.db in the run dir).</p>')
    closed = log.count("closed")
    summary = (f"<p>{log.count()} alerts raised · {closed} closed (办结率 "
               f"{_num(100 * closed / log.count() if log.count() else None)}%) · source "
               f"<span class=mono>{escape(log.source)}</span></p>")
    if not log.alerts:
        return head + summary + '<p class="empty">本期无告警 No alerts in the period.</p>'
    rows = []
    base = base_url.rstrip("/")
    for a in log.alerts:
        url = f"{base}/alerts/{a.alert_id}"
        place = escape(a.site_id) + (f"<br><small>{a.lat:.5f}, {a.lon:.5f}</small>"
                                     if a.lat is not None and a.lon is not None else "")
        who = escape(a.closed_by) + (f"<br><small>{_local(a.closed_at, tz)}</small>" if a.closed_at else "")
        evidence = "<br>".join(escape(m) for m in a.evidence[:6]) + (
            f"<br><small>+{len(a.evidence) - 6} more</small>" if len(a.evidence) > 6 else "")
        rows.append(
            f'<tr><td class="mono"><a href="{escape(url)}">{escape(a.alert_id)}</a></td>'
            f"<td><b>{escape(_kind_zh(a.kind))}</b><br><small>{escape(a.kind)}</small></td>"
            f'<td class="sev-{escape(a.severity)}">{escape(severity_name(a.severity))}<br>'
            f"<small>{escape(a.severity)}</small></td>"
            f"<td>{_local(a.raised_at, tz)}</td><td>{place}</td><td>{escape(a.subject)}<br>"
            f"<small>{escape(a.summary)}</small>{f' <small>(×{a.count})</small>' if a.count > 1 else ''}</td>"
            f'<td class="nw">{STATE_ZH.get(a.state, a.state)}<br>'
            f"<small>{escape(a.state)}</small></td><td>{who}</td>"
            f'<td class="mono">{evidence}</td></tr>')
    return (head + summary + "<table><thead><tr><th>告警编号 Alert id</th><th>类型 Kind</th>"
            "<th>级别 Severity</th><th>时间 Time</th><th>地点 Place</th><th>对象 Subject</th>"
            "<th>状态 State</th><th>办结人 Closed by</th><th>证据 Evidence msg_ids</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            f"<p class=inputs>Each alert id links to the alert service API (<span class=mono>{escape(base)}"
            "/alerts/{id}</span>, bearer token) for its full evidence, events and deliveries.</p>")


def summary_cards(results: list[IndicatorResult], data: PeriodData, log: AlertLog | None) -> str:
    by_id = {r.indicator.id: r for r in results}

    def card(value: str, label: str) -> str:
        return f'<div class="card"><b>{value}</b><span>{label}</span></div>'

    cards = [card(f"{data.net_t(None, HOUSEHOLD):,.1f} t", "生活垃圾 household waste weighed"),
             card(f"{data.tickets()}", "磅单 weighbridge tickets")]
    for rid, label in (("recycling_rate", "回收利用率 recycling rate"),
                       ("sorting_accuracy", "投放准确率 accuracy")):
        if rid in by_id:
            cards.append(card(f"{_num(by_id[rid].value)}%", label))
    met = sum(1 for r in results if r.status.value == "met")
    judged = sum(1 for r in results if r.status.value in ("met", "not met"))
    cards.append(card(f"{met} / {judged}", "达标指标 indicators met (judged)"))
    if log is not None:
        cards.append(card(f"{log.count()} / {log.count('closed')}", "告警 / 办结 alerts raised / closed"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _span(start: datetime, end: datetime, tz: str) -> str:
    return f"{_local(start, tz)} — {_local(end, tz)}"


def _basis(ctx_data: PeriodData, table: CityTable, year: int, tz: str) -> str:
    """What the judgement rests on: N whole days, or a partial day; and the plan period."""
    days = ctx_data.whole_days
    periods = {d.period.label() for d in table.documents.values()}
    ended = all(year > d.period.end for d in table.documents.values())
    plan = (f"plan period {', '.join(sorted(periods))} ended: its last targets for reference, not judged"
            if ended else f"targets of {year}")
    if days:
        span = _span(ctx_data.start, ctx_data.end, tz)
        return f"judged on {days} whole local day{'s' if days != 1 else ''} ({span}); {plan}"
    return (f"{_span(ctx_data.start, ctx_data.end, tz)}: less than a whole local day, measured so far, "
            f"not judged (targets are judged on whole days only)")


def build_report(settings: Settings, start: datetime, end: datetime, out_path: Path | str, *,
                 city: str = "liuzhou", alerts_api: str | None = None, alerts_db: Path | str | None = None,
                 rules_path: Path | str | None = None, manual_path: Path | str | None = None,
                 alerts_base_url: str | None = None, sites: set[str] | None = None,
                 now: datetime | None = None) -> Path:
    """Write the report for `[start, end)` (aware datetimes) to `out_path`; return its path.

    The period's whole local days (before `now`, default the clock) are judged against the
    plan's targets; the partial pieces of days around them are shown as measured, not judged.
    `alerts_api` (URL; token from WS_ALERTS_TOKEN) or `alerts_db` (SQLite, read-only; default
    `$WS_RUN_DIR/alerts/alerts.db` if present) feed the alert log and 办结率. Evidence links
    point at `alerts_base_url` (default: alerts_api, else $WS_ALERTS_URL, else 127.0.0.1:18600).
    `sites` keeps only those facilities (a shared InfluxDB may hold other runs).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    table: CityTable = load_city(city)
    rules = load_rules(rules_path)
    tz = rules.timezone
    now = now or datetime.now(UTC)
    whole, partials = split_whole_days(start, end, now, tz)
    log = load_alerts(start, end, run_dir=settings.run_dir, alerts_api=alerts_api, alerts_db=alerts_db)
    manual = load_manual(manual_path)

    def period(a: datetime, b: datetime) -> tuple[PeriodData, list[IndicatorResult], Context]:
        data = fetch_period(settings, a, b, timezone=tz, sites=sites)
        data.now = now
        ctx = Context(data=data, rules=rules, alerts=log, manual=manual)
        return data, evaluate_table(table, ctx), ctx

    base_url = alerts_base_url or alerts_api or settings.alerts_url or DEFAULT_ALERTS_URL
    accuracy = table.indicator("sorting_accuracy")
    target_acc = next((t.value for t in (accuracy.targets if accuracy else []) if t.value is not None), 90.0)
    parts: list[str] = []
    main_data: PeriodData | None = None
    if whole:
        main_data, results, ctx = period(*whole)
        year = period_year(ctx)
        parts += [summary_cards(results, main_data, log),
                  indicators_section(results, year, table,
                                     "一、指标对照目标 Indicators against the plan's targets",
                                     _basis(main_data, table, year, tz)),
                  tonnage_section(main_data, rules, table, "二、设施吨位")]
    for n, (a, b) in enumerate(partials):
        data, results, ctx = period(a, b)
        main_data = main_data or data
        label = "今日截至目前 So far today" if b >= now else "不足整日 Part of a day"
        year = period_year(ctx)
        if not whole and n == 0:
            parts.append(summary_cards(results, data, log))
        first = not whole and n == 0
        parts += [indicators_section(results, year, table, f"{'一' if first else '·'}、{label}: "
                                     "指标实测值 measured, not judged", _basis(data, table, year, tz)),
                  tonnage_section(data, rules, table, f"{'二' if first else '·'}、{label}: 设施吨位")]
    if main_data is None:  # an empty period
        main_data, results, ctx = period(start, max(end, start))
    parts += [sorting_section(main_data, rules, target_acc), trucks_section(main_data),
              alerts_section(log, base_url, tz)]
    body = "".join(parts)
    judged = (f"评判 Judged: <b>{_span(*whole, tz)}</b> ({main_data.whole_days} 整日 whole days)"
              if whole else "评判 Judged: none (no whole local day in the period)")
    unjudged = "; ".join(_span(a, b, tz) for a, b in partials)
    docs = " · ".join(escape(d.citation()) + f" <small>规划期 {escape(d.period.label())}</small>"
                      for d in table.documents.values())
    meta = (f'<p class="meta">报告期 Period: <b>{_local(start, tz)} — {_local(end, tz)}</b> '
            f'({escape(tz)}) · {judged}'
            + (f" · 实测未评判 Measured, not judged: {unjudged} (less than a whole day)" if unjudged else "")
            + "</p>"
            f'<p class="meta">依据 Plan: {escape(table.cite(table.plan_source))} · {docs}'
            f"{' · ' + escape(table.note) if table.note else ''}</p>"
            f'<p class="meta">数据 Data: InfluxDB <span class="src">{escape(settings.influx_url)} / '
            f"{escape(settings.influx_db)}</span> (InfluxQL) · "
            f"rules <span class=src>{escape(rules.city)}</span>"
            f" · generated {_local(datetime.now(UTC), tz)}</p>")
    html = page(
        title=f"{table.name_zh} 无废城市指标报告 {_local(start, tz)[:10]}",
        heading=f"{escape(table.name_zh)}“无废城市”建设指标报告 <small>{escape(table.name_en)} "
                f"zero-waste city indicator report</small>",
        meta=meta, body=body,
        footer="wastestream · formulas: wastestream/indicators/formulas.py "
               "(each with its formula and source) · "
               "city table: wastestream/foundation/cities/" + escape(table.city) + "/indicators.yaml")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
