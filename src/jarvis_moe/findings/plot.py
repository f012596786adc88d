"""Optional roofline plot: ``category_findings/<cat>_roofline.png``.

Drawn only when matplotlib is installed (the ``plot`` extra). The figure is
built with the object-oriented API on an Agg canvas, so it never touches
pyplot's global backend or opens a window. Ops are points at (arithmetic
intensity, achieved TFLOP/s), sized by time. For memory-bound MoE ops a
horizontal bar spans the intensity the op would have if the real number of
active experts were at the low or high bound: the FLOPs and the measured time
do not depend on routing, only the weight bytes do.
"""

from __future__ import annotations

import importlib.util
import io
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

from jarvis_moe.output import OutputError, write_bytes_atomic

_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def available() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def _label(raw: Any, limit: int = 48) -> str:
    """A raw op name as plain plot text: one line, no mathtext."""
    text = _BREAKS.sub(" ", "" if raw is None else str(raw)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # A `$` pair would switch matplotlib into mathtext and can fail to parse.
    return text.replace("$", r"\$")


def _ops(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [op for op in metrics.get("operations") or [] if isinstance(op, Mapping)]


def _peaks(metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The peaks the efficiencies were computed against (substitutions included)."""
    spec = metrics.get("category_specific") or {}
    compute, bandwidth = _num(spec.get("peak_maf_tflops")), _num(spec.get("peak_hbm_bw_tbs"))
    for op in _ops(metrics):
        eff = op.get("efficiency") or {}
        compute = _num(eff.get("resolved_peak_maf")) or compute
        bandwidth = _num(eff.get("resolved_peak_hbm_bw")) or bandwidth
        if compute and bandwidth:
            break
    return compute, bandwidth


def _points(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    points = []
    for op in _ops(metrics):
        eff = op.get("efficiency") or {}
        x, y, t = _num(eff.get("flops_per_byte")), _num(eff.get("tflops_achieved")), _num(op.get("time_ms"))
        if not x or not y or x <= 0 or y <= 0:
            continue
        point = {"x": x, "y": y, "t": t or 0.0, "name": _label(op.get("name")), "bar": None}
        moe = op.get("moe") if isinstance(op.get("moe"), Mapping) else {}
        active = moe.get("active_experts") or {}
        low, mid, high = (_num(active.get(k)) for k in ("low", "expected", "high"))
        if eff.get("bound_type") == "memory" and low and mid and high:
            # Bytes scale with active experts, so intensity scales inversely.
            point["bar"] = (x * mid / high, x * mid / low)
        points.append(point)
    return points


def render_roofline(metrics: Mapping[str, Any], path: Path | str) -> Path | None:
    """Draw the roofline PNG at ``path``.

    :return: the path written, or None when matplotlib is not installed or the
        metrics hold nothing to draw (no peaks, no op with intensity and
        throughput). A drawing failure is reported as a RuntimeWarning and
        also returns None: the plot is an extra, never a reason to fail a run.
    :raises OutputError: when the directory cannot be created or written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    compute, bandwidth = _peaks(metrics)
    points = _points(metrics)
    if metrics.get("status") != "OK" or not compute or not bandwidth or not points:
        return None
    try:
        data = _draw(Figure, FigureCanvasAgg, metrics, compute, bandwidth, points)
    except Exception as exc:  # matplotlib raises many types; the plot is optional
        warnings.warn(f"roofline plot skipped: {exc}", RuntimeWarning, stacklevel=2)
        return None
    target = Path(path)
    if target.parent.exists() and not target.parent.is_dir():
        raise OutputError(f"{target.parent} exists but is not a directory; move it aside and rerun")
    try:
        target.parent.mkdir(exist_ok=True)
        return write_bytes_atomic(target, data)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


def write_roofline(output_dir: Path | str, category: str, metrics: Mapping[str, Any]) -> str | None:
    """Draw ``category_findings/<cat>_roofline.png`` under ``output_dir``.

    :return: the PNG's file name, to pass to ``render_findings(plot_name=...)``,
        or None when no plot was written.
    :raises OutputError: as :func:`render_roofline`.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]+", category):
        raise OutputError(f"category name {category!r} is not a plain name")
    written = render_roofline(metrics, Path(output_dir) / "category_findings" / f"{category}_roofline.png")
    return written.name if written else None


def _draw(figure_cls: Any, canvas_cls: Any, metrics: Mapping[str, Any], compute: float,
          bandwidth: float, points: list[dict[str, Any]]) -> bytes:
    ridge = compute / bandwidth
    xs = [p["x"] for p in points] + [v for p in points if p["bar"] for v in p["bar"]]
    x_min, x_max = min(min(xs) / 4, ridge / 100), max(max(xs) * 4, ridge * 10)
    fig = figure_cls(figsize=(8, 5.5), dpi=110)
    canvas_cls(fig)
    ax = fig.add_subplot()
    grid = [x_min * (x_max / x_min) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(compute, bandwidth * x) for x in grid], color="black", lw=1.5,
            label=f"roofline: {compute:g} TFLOP/s, {bandwidth:g} TB/s")
    ax.axvline(ridge, color="grey", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.1f} FLOP/B", (ridge, compute), textcoords="offset points",
                xytext=(4, -14), fontsize=8, color="grey")
    total = max(sum(p["t"] for p in points), 1e-9)
    for i, p in enumerate(points, 1):
        if p["bar"]:
            ax.hlines(p["y"], p["bar"][0], p["bar"][1], color=f"C{(i - 1) % 10}", lw=5, alpha=0.35)
        ax.scatter([p["x"]], [p["y"]], s=40 + 600 * p["t"] / total, color=f"C{(i - 1) % 10}",
                   edgecolor="black", zorder=3, label=f"{i}: {p['name']}")
        ax.annotate(str(i), (p["x"], p["y"]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(min(min(p["y"] for p in points) / 4, compute / 1000), compute * 2)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved TFLOP/s")
    platform = _label(metrics.get("platform") or "unknown platform", 40)
    title = f"{_label(metrics.get('category'), 30)} roofline on {platform}"
    if any(p["bar"] for p in points):
        title += "\nbars: intensity range over the active-expert bounds (memory-bound ops)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=7, loc="lower right", markerscale=0.4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
