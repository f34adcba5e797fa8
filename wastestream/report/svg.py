"""Inline SVG charts for the report: horizontal (stacked) bar charts, no external assets.

Text is escaped; sizes are in CSS pixels; colours are fixed per waste category so the same
category has the same colour in every chart (and prints legibly in greyscale by order).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

CATEGORY_COLOURS: dict[str, str] = {
    "kitchen": "#3d8b37", "recyclable": "#1f6fb2", "hazardous": "#c0392b", "residual": "#6b6b6b",
    "construction": "#b7791f", "bulky": "#8e44ad", "industrial": "#2c3e50", "hazardous_industrial": "#7b241c",
}
CATEGORY_ZH: dict[str, str] = {
    "kitchen": "厨余", "recyclable": "可回收", "hazardous": "有害", "residual": "其他",
    "construction": "建筑垃圾", "bulky": "大件", "industrial": "工业", "hazardous_industrial": "危废",
}
FALLBACK = "#95a5a6"


@dataclass
class Bar:
    label: str
    segments: list[tuple[str, float]]
    """(series key, value) in drawing order."""
    note: str = ""
    """Printed right of the bar (e.g. "72 % of capacity")."""


def _fmt(v: float) -> str:
    return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def bar_chart(bars: list[Bar], *, title: str, unit: str, colours: dict[str, str] | None = None,
              legend: dict[str, str] | None = None, width: int = 760, reference: float | None = None,
              reference_label: str = "", max_value: float | None = None) -> str:
    """Horizontal bars (stacked when a bar has several segments); an optional reference line.

    `legend` maps series key -> legend text (drawn when given); `reference` draws a dashed
    vertical line at that value (e.g. a target of 90 %)."""
    colours = colours or CATEGORY_COLOURS
    label_w, note_w, row_h, top = 190, 150, 26, 34
    legend_h = 24 if legend else 0
    plot_w = width - label_w - note_w
    height = top + legend_h + max(len(bars), 1) * row_h + 26 + (14 if reference is not None else 0)
    peak = max([sum(v for _, v in b.segments) for b in bars] + [reference or 0, max_value or 0, 1e-9])
    scale = plot_w / peak
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="0" y="18" class="ct">{escape(title)}</text>']
    if legend:
        x: float = 0
        for key, text in legend.items():
            out.append(f'<rect x="{x}" y="{top - 6}" width="12" height="12" '
                       f'fill="{colours.get(key, FALLBACK)}"/>'
                       f'<text x="{x + 16}" y="{top + 4}" class="cl">{escape(text)}</text>')
            x += 24 + 8 * len(text) + 6 * sum(1 for ch in text if ord(ch) > 0x2e80)
    y0 = top + legend_h + (14 if reference is not None else 0)
    if not bars:
        out.append(f'<text x="{label_w}" y="{y0 + 16}" class="cl">无数据 no data</text>')
    for i, bar in enumerate(bars):
        y = y0 + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="cl">'
                   f'{escape(bar.label)}</text>')
        x = float(label_w)
        for key, value in bar.segments:
            w = max(value * scale, 0.0)
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                           f'fill="{colours.get(key, FALLBACK)}">'
                           f'<title>{escape(key)}: {_fmt(value)} {escape(unit)}'
                           f'</title></rect>')
            x += w
        total = sum(v for _, v in bar.segments)
        note = f"{_fmt(total)} {unit}" + (f" · {bar.note}" if bar.note else "")
        nx = label_w + plot_w + 8 if reference is not None else x + 6  # clear of the reference line
        out.append(f'<text x="{nx:.1f}" y="{y + 16}" class="cv">{escape(note)}</text>')
    axis_y = y0 + max(len(bars), 1) * row_h + 4
    out.append(f'<line x1="{label_w}" y1="{y0}" x2="{label_w}" y2="{axis_y}" class="ax"/>')
    out.append(f'<text x="{label_w}" y="{axis_y + 16}" class="cl">0</text>'
               f'<text x="{label_w + plot_w}" y="{axis_y + 16}" text-anchor="end" class="cl">'
               f'{_fmt(peak)} {escape(unit)}</text>')
    if reference is not None:
        rx = label_w + reference * scale
        out.append(f'<line x1="{rx:.1f}" y1="{y0 - 2}" x2="{rx:.1f}" y2="{axis_y}" class="ref"/>'
                   f'<text x="{rx - 4:.1f}" y="{y0 - 4}" text-anchor="end" class="cref">'
                   f'{escape(reference_label)}</text>')
    out.append("</svg>")
    return "".join(out)
