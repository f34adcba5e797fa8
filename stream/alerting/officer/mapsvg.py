"""The alert page's map, drawn on the server as SVG: no map library, no CDN, works offline.

Web Mercator at the largest zoom that fits the track, the event and the nearby geofences; raster
tiles (天地图 or a self-hosted server, `officer.tiles`) go underneath as <image>s when
configured, and the vectors (approved disposal sites, the track coloured by lid state, the
event, bed-raised and load-drop points) are drawn either way, so the page still shows the
evidence when tiles are unreachable. Below the map: speed along the track, with the stretches
driven uncovered (lid open) shaded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from html import escape

from stream.alerting.officer.evidence import Evidence, Fence, TrackPoint

WIDTH, HEIGHT, TILE = 360, 300, 256
NEAR_DEG = 0.15
"""Geofences within this many degrees of the track are drawn (and fitted); the others are off-map."""


def _world(lat: float, lon: float) -> tuple[float, float]:
    """Web Mercator at zoom 0, in tile units (0..1)."""
    lat = max(-85.05, min(85.05, lat))
    x = (lon + 180.0) / 360.0
    s = math.sin(math.radians(lat))
    y = 0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)
    return x, y


class Projection:
    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        xs, ys = zip(*(_world(a, b) for a, b in points), strict=True)
        self.x0, self.x1, self.y0, self.y1 = min(xs), max(xs), min(ys), max(ys)
        span = max(self.x1 - self.x0, self.y1 - self.y0, 1e-7)
        self.zoom = max(1, min(18, math.floor(math.log2(min(WIDTH, HEIGHT) * 0.8 / (TILE * span)))))
        self.scale = TILE * 2**self.zoom
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        self.ox, self.oy = cx * self.scale - WIDTH / 2, cy * self.scale - HEIGHT / 2

    def px(self, lat: float, lon: float) -> tuple[float, float]:
        x, y = _world(lat, lon)
        return round(x * self.scale - self.ox, 1), round(y * self.scale - self.oy, 1)

    def tiles(self) -> list[tuple[int, int, float, float]]:
        """(x, y, left, top) of the tiles covering the view."""
        n = 2**self.zoom
        out = []
        for tx in range(int(self.ox // TILE), int((self.ox + WIDTH) // TILE) + 1):
            for ty in range(int(self.oy // TILE), int((self.oy + HEIGHT) // TILE) + 1):
                if 0 <= ty < n:
                    out.append((tx % n, ty, tx * TILE - self.ox, ty * TILE - self.oy))
        return out


def _near(fence: Fence, points: Sequence[tuple[float, float]]) -> bool:
    return any(abs(a - pa) < NEAR_DEG and abs(b - pb) < NEAR_DEG
               for a, b in fence.polygon for pa, pb in points)


def tile_url(template: str, z: int, x: int, y: int, key: str = "", subdomains: Sequence[str] = ()) -> str:
    s = subdomains[(x + y) % len(subdomains)] if subdomains else ""
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y)) \
        .replace("{s}", s).replace("{tk}", key)


def _segments(track: Sequence[TrackPoint], proj: Projection) -> list[str]:
    out = []
    for a, b in itertools.pairwise(track):
        (x1, y1), (x2, y2) = proj.px(a.lat, a.lon), proj.px(b.lat, b.lon)
        cls = "uncovered" if a.lid_closed is False else "covered"
        out.append(f'<line class="track {cls}" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>')
    return out


def render_map(ev: Evidence, tiles: tuple[str, str, Sequence[str]] | None = None) -> str:
    """The map as an <svg> element; `tiles` = (url template, key, subdomains) or None (vectors only)."""
    points = [(p.lat, p.lon) for p in ev.track] + ([ev.event] if ev.event else [])
    if not points:
        return ""
    fences = [f for f in ev.fences if _near(f, points)]
    proj = Projection(points + [v for f in fences for v in f.polygon])
    parts = [f'<svg class="map" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" '
             f'role="img" aria-label="轨迹与消纳场 (track and disposal sites)">',
             f'<rect class="land" width="{WIDTH}" height="{HEIGHT}"/>']
    if tiles is not None:
        template, key, subdomains = tiles
        for tx, ty, left, top in proj.tiles():
            url = escape(tile_url(template, proj.zoom, tx, ty, key, subdomains))
            parts.append(f'<image href="{url}" x="{left:.1f}" y="{top:.1f}" width="{TILE}" height="{TILE}"/>')
    for f in fences:
        pts = " ".join(f"{x},{y}" for x, y in (proj.px(a, b) for a, b in f.polygon))
        parts.append(f'<polygon class="fence" points="{pts}"><title>消纳场 {escape(f.id)}</title></polygon>')
    parts += _segments(ev.track, proj)
    for point, cls, label in ((ev.bed_raised, "bed", "举升 (bed raised)"),
                              (ev.load_drop, "drop", "载重下降 (load dropped)")):
        if point is not None:
            x, y = proj.px(point.lat, point.lon)
            parts.append(f'<circle class="{cls}" cx="{x}" cy="{y}" r="6"><title>{label}</title></circle>')
    if ev.event is not None:
        x, y = proj.px(*ev.event)
        parts.append(f'<path class="event" d="M{x} {y} l-7 -16 a8 8 0 1 1 14 0 z">'
                     f'<title>告警位置 (alert)</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def render_speed(track: Sequence[TrackPoint], width: int = WIDTH, height: int = 90) -> str:
    """Speed (km/h) along the track; stretches with the lid open shaded."""
    if len(track) < 2:
        return ""
    t0, t1 = track[0].t_ns, track[-1].t_ns
    top = max(10.0, max(p.speed for p in track))

    def x(t: int) -> float:
        return round((t - t0) / max(1, t1 - t0) * (width - 30) + 28, 1)

    def y(v: float) -> float:
        return round(height - 14 - v / top * (height - 24), 1)

    parts = [f'<svg class="speed" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
             f'role="img" aria-label="车速与密闭状态 (speed and lid)">']
    for a, b in itertools.pairwise(track):
        if a.lid_closed is False:
            wide = max(0.5, x(b.t_ns) - x(a.t_ns))
            parts.append(f'<rect class="uncovered" x="{x(a.t_ns)}" y="4" width="{wide}" '
                         f'height="{height - 18}"/>')
    line = " ".join(f"{x(p.t_ns)},{y(p.speed)}" for p in track)
    parts.append(f'<polyline class="speedline" points="{line}"/>')
    parts.append(f'<text x="2" y="12">{top:.0f}</text><text x="2" y="{height - 14}">0</text>'
                 f'<text x="{width - 60}" y="{height - 2}">km/h</text></svg>')
    return "".join(parts)
