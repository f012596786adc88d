"""Roofline chart: ``category_findings/<cat>_roofline.svg``.

The chart is written as SVG by this module alone: no plotting library, no
font files, no raster step. That keeps it off the cost of a run (a few
milliseconds), makes it byte-identical for the same metrics, and lets any
markdown viewer or browser show it at full resolution.

Each op of the findings table is a point at (arithmetic intensity, achieved
TFLOP/s), its area proportional to its time, numbered as its table row. The
legend names each point the way the table does (``#3 up, decode-like``).
For memory-bound MoE ops a bar spans the intensity the op would have at the
low and high active-expert bounds: FLOPs and measured time do not depend on
routing, only the weight bytes do. Ops rated against different peaks (an
FP8 kernel beside a bf16 one) get one roof each.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from jarvis_moe.metrics import MetricsOk, Operation
from jarvis_moe.safetext import plain_text

# Canvas and plot area, in SVG user units.
WIDTH, HEIGHT = 900, 560
LEFT, RIGHT, TOP, BOTTOM = 72, 590, 62, 500
LEGEND_X = 612
FONT = "font-family='DejaVu Sans,Helvetica,Arial,sans-serif'"
# Ten distinguishable hues (the usual categorical palette of plotting tools).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# Beyond what the page drops (safetext): characters XML 1.0 does not allow.
_NOT_XML = re.compile("[\ufffe\uffff]")
# Rough advance width of one character at the label size, for overlap tests.
CHAR_W = 6.2


class Point(NamedTuple):
    row: int
    label: str
    name: str
    x: float
    y: float
    time_ms: float
    bar: tuple[float, float] | None


class Scale(NamedTuple):
    """Log-log mapping from data to the plot area, snapped to whole decades."""

    x_lo: int
    x_hi: int
    y_lo: int
    y_hi: int

    def px(self, x: float) -> float:
        return LEFT + (math.log10(x) - self.x_lo) / (self.x_hi - self.x_lo) * (RIGHT - LEFT)

    def py(self, y: float) -> float:
        return BOTTOM - (math.log10(y) - self.y_lo) / (self.y_hi - self.y_lo) * (BOTTOM - TOP)


def text(raw: object, limit: int = 60) -> str:
    """Any value as SVG character data: one line, no control characters, escaped."""
    value = _NOT_XML.sub("", plain_text(raw)).strip()
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _f(value: float) -> str:
    """A coordinate with one decimal, so equal inputs give equal bytes."""
    return f"{value:.1f}"


def row_label(op: Operation, row: int) -> str:
    """The op as the table names it: its row number, role and phase."""
    if op.moe is None:
        return f"#{row}"
    return f"#{row} {op.moe.kind}, {op.moe.phase}-like"


def points(m: MetricsOk, max_rows: int) -> list[Point]:
    """The drawable ops of the findings table: positive intensity and throughput."""
    found = []
    for row, op in enumerate(m.operations[:max_rows], start=1):
        x, y = op.efficiency.flops_per_byte, op.efficiency.tflops_achieved
        if not x or not y or x <= 0 or y <= 0 or not math.isfinite(x) or not math.isfinite(y):
            continue
        bar = None
        active = op.moe.active_experts if op.moe is not None else None
        if op.efficiency.bound_type == "memory" and active and active.low > 0 and active.high > 0:
            # Bytes scale with active experts, so intensity scales inversely.
            bar = (x * active.expected / active.high, x * active.expected / active.low)
        found.append(Point(row, row_label(op, row), op.name, x, y, max(op.time_ms, 0.0), bar))
    return found


def roofs(m: MetricsOk, max_rows: int) -> list[tuple[float, float]]:
    """Each distinct (compute TFLOP/s, bandwidth TB/s) pair the table's ops were rated against."""
    spec = m.category_specific
    default = (spec.peak_maf_tflops, spec.peak_hbm_bw_tbs)
    found: list[tuple[float, float]] = []
    for op in m.operations[:max_rows]:
        pair = (op.efficiency.resolved_peak_maf or default[0], op.efficiency.resolved_peak_hbm_bw or default[1])
        if pair[0] and pair[1] and pair[0] > 0 and pair[1] > 0 and pair not in found:
            found.append(pair)
    if not found and default[0] and default[1] and default[0] > 0 and default[1] > 0:
        found.append(default)
    return sorted(found, reverse=True)


def _scale(pts: list[Point], peaks: list[tuple[float, float]]) -> Scale:
    ridges = [c / b for c, b in peaks]
    xs = [p.x for p in pts] + [v for p in pts if p.bar for v in p.bar]
    x_min, x_max = min(min(xs) / 4, min(ridges) / 100), max(max(xs) * 4, max(ridges) * 10)
    top = max(c for c, _ in peaks)
    y_min, y_max = min(min(p.y for p in pts) / 4, top / 1000), max(top, max(p.y for p in pts)) * 2
    return Scale(math.floor(math.log10(x_min)), math.ceil(math.log10(x_max)),
                 math.floor(math.log10(y_min)), math.ceil(math.log10(y_max)))


def _decade(exponent: int) -> str:
    return f"{10.0 ** exponent:g}" if -3 <= exponent <= 4 else f"1e{exponent}"


def _axes(s: Scale) -> list[str]:
    out = [f"<rect x='{LEFT}' y='{TOP}' width='{RIGHT - LEFT}' height='{BOTTOM - TOP}' fill='white' "
           "stroke='#444'/>"]
    for e in range(s.x_lo, s.x_hi + 1):
        x = _f(s.px(10.0 ** e))
        out.append(f"<line x1='{x}' y1='{TOP}' x2='{x}' y2='{BOTTOM}' stroke='#ddd'/>")
        out.append(f"<text x='{x}' y='{BOTTOM + 16}' text-anchor='middle' font-size='11'>{_decade(e)}</text>")
    for e in range(s.y_lo, s.y_hi + 1):
        y = _f(s.py(10.0 ** e))
        out.append(f"<line x1='{LEFT}' y1='{y}' x2='{RIGHT}' y2='{y}' stroke='#ddd'/>")
        out.append(f"<text x='{LEFT - 6}' y='{y}' dy='4' text-anchor='end' font-size='11'>{_decade(e)}</text>")
    mid_y = (TOP + BOTTOM) / 2
    out.append(f"<text x='{(LEFT + RIGHT) / 2}' y='{BOTTOM + 38}' text-anchor='middle' font-size='12'>"
               "arithmetic intensity (FLOP/byte)</text>")
    out.append(f"<text x='18' y='{mid_y}' text-anchor='middle' font-size='12' "
               f"transform='rotate(-90 18 {mid_y})'>achieved TFLOP/s</text>")
    return out


def _roof_lines(s: Scale, peaks: list[tuple[float, float]]) -> list[str]:
    out = []
    x_lo, x_hi = 10.0 ** s.x_lo, 10.0 ** s.x_hi
    for i, (compute, bandwidth) in enumerate(peaks):
        ridge = compute / bandwidth
        start = max(x_lo, 10.0 ** s.y_lo / bandwidth)
        path = [(start, bandwidth * start), (ridge, compute), (x_hi, compute)]
        coords = " ".join(f"{_f(s.px(x))},{_f(s.py(y))}" for x, y in path)
        dash = "" if i == 0 else " stroke-dasharray='6 3'"
        out.append(f"<polyline points='{coords}' fill='none' stroke='black' stroke-width='1.6'{dash}/>")
        rx = _f(s.px(ridge))
        out.append(f"<line x1='{rx}' y1='{TOP}' x2='{rx}' y2='{BOTTOM}' stroke='#888' stroke-dasharray='2 3'/>")
        # Labels where points rarely are: above the flat roof, at the foot of the ridge.
        out.append(f"<text x='{RIGHT - 4}' y='{_f(s.py(compute) - 5)}' text-anchor='end' font-size='10' "
                   f"fill='#555'>{compute:g} TFLOP/s, {bandwidth:g} TB/s</text>")
        out.append(f"<text x='{_f(s.px(ridge) + 4)}' y='{BOTTOM - 6 - 13 * i}' font-size='10' "
                   f"fill='#555'>ridge {ridge:.1f} FLOP/B</text>")
    return out


def _place(x: float, y: float, width: float, taken: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """A spot for a point's number that overlaps no earlier one (first free of a few tries)."""
    tries = [(7, -7), (7, 13), (-7 - width, -7), (-7 - width, 13), (7, -19), (7, 25), (-7 - width, -19)]
    for dx, dy in tries:
        box = (x + dx, y + dy - 10, x + dx + width, y + dy + 2)
        if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in taken):
            taken.append(box)
            return x + dx, y + dy
    taken.append((x + 7, y - 17, x + 7 + width, y - 5))
    return x + 7, y - 7


def _marks(s: Scale, pts: list[Point]) -> list[str]:
    out: list[str] = []
    total = max(sum(p.time_ms for p in pts), 1e-12)
    taken: list[tuple[float, float, float, float]] = []
    for i, p in enumerate(pts):
        colour = PALETTE[i % len(PALETTE)]
        cx, cy = s.px(p.x), s.py(p.y)
        if p.bar:
            out.append(f"<line x1='{_f(s.px(p.bar[0]))}' y1='{_f(cy)}' x2='{_f(s.px(p.bar[1]))}' y2='{_f(cy)}' "
                       f"stroke='{colour}' stroke-width='6' stroke-opacity='0.35'/>")
        radius = 4 + 14 * math.sqrt(p.time_ms / total)
        out.append(f"<circle cx='{_f(cx)}' cy='{_f(cy)}' r='{_f(radius)}' fill='{colour}' fill-opacity='0.8' "
                   f"stroke='black' stroke-width='0.8'><title>{text(p.label)}: {text(p.name, 200)}</title></circle>")
        number = f"#{p.row}"
        lx, ly = _place(cx + radius - 4, cy, CHAR_W * len(number), taken)
        out.append(f"<text x='{_f(lx)}' y='{_f(ly)}' font-size='11' font-weight='bold'>{number}</text>")
    return out


def _legend(pts: list[Point]) -> list[str]:
    out = [f"<text x='{LEGEND_X}' y='{TOP + 4}' font-size='12' font-weight='bold'>Ops (findings table rows)</text>"]
    step = min(30.0, (HEIGHT - TOP - 40) / max(len(pts), 1))
    for i, p in enumerate(pts):
        y = TOP + 24 + i * step
        out.append(f"<circle cx='{LEGEND_X + 6}' cy='{_f(y - 4)}' r='5' fill='{PALETTE[i % len(PALETTE)]}' "
                   "stroke='black' stroke-width='0.6'/>")
        out.append(f"<text x='{LEGEND_X + 16}' y='{_f(y)}' font-size='11'>{text(p.label)} · {p.time_ms:.3f} ms"
                   "</text>")
        if step >= 24:
            out.append(f"<text x='{LEGEND_X + 16}' y='{_f(y + 12)}' font-size='9' fill='#555'>"
                       f"{text(p.name, 44)}</text>")
    return out


def roofline_svg(m: MetricsOk, max_rows: int) -> bytes | None:
    """The roofline chart of the findings table's ops, as SVG bytes.

    :param max_rows: how many ops the findings table lists (the chart draws those).
    :return: the SVG document, or None when there is nothing to draw (no peaks,
        no op with positive intensity and throughput).
    """
    pts, peaks = points(m, max_rows), roofs(m, max_rows)
    if not pts or not peaks:
        return None
    s = _scale(pts, peaks)
    title = f"{text(m.category, 30)} roofline on {text(m.platform or 'unknown platform', 40)}"
    note = "bars: intensity over the active-expert bounds (memory-bound ops)" if any(p.bar for p in pts) else ""
    body = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' {FONT}>",
        f"<title>{title}</title>",
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='white'/>",
        f"<text x='{LEFT}' y='24' font-size='15' font-weight='bold'>{title}</text>",
        f"<text x='{LEFT}' y='44' font-size='11' fill='#555'>{note}</text>",
        *_axes(s),
        f"<clipPath id='area'><rect x='{LEFT}' y='{TOP}' width='{RIGHT - LEFT}' height='{BOTTOM - TOP}'/>"
        "</clipPath>",
        "<g clip-path='url(#area)'>", *_roof_lines(s, peaks), *_marks(s, pts), "</g>",
        *_legend(pts),
        "</svg>",
    ]
    return ("\n".join(body) + "\n").encode("utf-8")
