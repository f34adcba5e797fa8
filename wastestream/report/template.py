"""The report's HTML page: one file, inline CSS, no external assets, print-friendly."""

from __future__ import annotations

from string import Template

CSS = """
:root { --ink:#1d2733; --muted:#5b6775; --line:#d8dee6; --band:#f3f6f9; --ok:#1e7b34; --bad:#b3261e;
        --warn:#9a6700; --info:#35618f; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei","PingFang SC",
       "Helvetica Neue",Arial,sans-serif; color: var(--ink); margin: 0; font-size: 13px; line-height: 1.45; }
main { max-width: 1220px; margin: 0 auto; padding: 24px 28px 40px; }
header { border-bottom: 3px solid var(--ink); padding-bottom: 10px; margin-bottom: 14px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 small { font-size: 15px; color: var(--muted); font-weight: normal; }
h2 { font-size: 17px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h2 small, th small, td small { color: var(--muted); font-weight: normal; }
.meta { color: var(--muted); margin: 2px 0; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin: 12px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 170px;
        background: var(--band); }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 6px; text-align: left; vertical-align: top; }
th { background: var(--band); font-size: 12px; }
td.nw { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr { break-inside: avoid; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 8px; font-size: 11px; font-weight: bold;
         white-space: nowrap; border: 1px solid currentColor; }
.s-met { color: var(--ok); background: #e6f4ea; }
.s-not-met { color: var(--bad); background: #fce8e6; }
.s-rising { color: var(--warn); background: #fff4d6; }
.s-no-target, .s-no-data { color: var(--muted); background: #eef1f4; }
.s-manual { color: var(--info); background: #e7eef8; }
.sev-critical { color: var(--bad); font-weight: bold; }
.sev-warning { color: var(--warn); font-weight: bold; }
.inputs { color: var(--muted); font-size: 11px; }
.src { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; color: var(--muted); }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; word-break: break-all; }
.chart { display: block; margin: 6px 0 10px; max-width: 100%; height: auto; }
.chart .ct { font-size: 13px; font-weight: bold; fill: var(--ink); }
.chart .cl { font-size: 11px; fill: var(--ink); }
.chart .cv { font-size: 11px; fill: var(--muted); }
.chart .ax { stroke: var(--ink); stroke-width: 1; }
.chart .ref { stroke: var(--bad); stroke-width: 1.5; stroke-dasharray: 4 3; }
.chart .cref { font-size: 11px; fill: var(--bad); }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 28px; color: var(--muted); font-size: 11px; border-top: 1px solid var(--line);
         padding-top: 8px; }
a { color: var(--info); }
@media print {
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  .chart, table { break-inside: auto; }
  a { color: inherit; text-decoration: none; }
  @page { size: A4; margin: 14mm 12mm; }
}
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<main>
<header>
<h1>$heading</h1>
$meta
</header>
$body
<footer>$footer</footer>
</main>
</body>
</html>
""")


def page(*, title: str, heading: str, meta: str, body: str, footer: str) -> str:
    return PAGE.substitute(title=title, heading=heading, meta=meta, body=body, footer=footer, css=CSS)
