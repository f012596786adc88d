"""The roofline chart: an SVG written by the analyser itself."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.findings import plot
from samples import GPT_OSS_DECODE, fixture_metrics, hostile, write_and_check

SVG = "{http://www.w3.org/2000/svg}"


def parsed(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_chart_is_written_and_linked(tmp_path):
    metrics = fixture_metrics(GPT_OSS_DECODE)
    data = plot.roofline_svg(metrics, 15)
    assert data is not None and parsed(data).tag == f"{SVG}svg"
    assert write_and_check(tmp_path, metrics, plot_name="moe_unfused_roofline.svg") == []
    page = (tmp_path / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")
    assert "![Roofline](moe_unfused_roofline.svg)" in page


def test_points_are_named_as_the_table_names_them():
    # The bundled gpt-oss decode page lists #1 the down and #2 the up projection,
    # both decode-like (its operations table).
    root = parsed(plot.roofline_svg(fixture_metrics(GPT_OSS_DECODE), 15))
    legend = [t for t in texts(root) if t.startswith("#") and "ms" in t]
    assert legend == ["#1 down, decode-like · 3.762 ms", "#2 up, decode-like · 3.273 ms"]
    assert "pseudo_op::moe_triton_unfused_down" in texts(root)
    assert sorted(t for t in texts(root) if t in ("#1", "#2")) == ["#1", "#2"]


def test_the_ridge_sits_where_the_peaks_put_it():
    # MI300X as the pipeline rates it: 708 TFLOP/s and 5.3 TB/s, so the ridge is
    # at 708 / 5.3 = 133.58 FLOP/byte, between the decades 100 and 1000.
    root = parsed(plot.roofline_svg(fixture_metrics(GPT_OSS_DECODE), 15))
    assert {"708 TFLOP/s, 5.3 TB/s", "ridge 133.6 FLOP/B"} <= set(texts(root))
    ticks = {t.text: float(t.get("x")) for t in root.iter(f"{SVG}text") if t.get("y") == str(plot.BOTTOM + 16)}
    ridge_x = next(float(line.get("x1")) for line in root.iter(f"{SVG}line") if line.get("stroke") == "#888")
    # log10(133.58) = 2.1257: a quarter of the way from the tick "100" to "1000".
    expected = ticks["100"] + 0.1257 * (ticks["1000"] - ticks["100"])
    assert math.isclose(ridge_x, expected, abs_tol=0.3)


def test_every_point_is_inside_the_plot_area():
    root = parsed(plot.roofline_svg(fixture_metrics(GPT_OSS_DECODE), 15))
    marks = [c for c in root.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]
    assert len(marks) == 2
    for mark in marks:
        assert plot.LEFT <= float(mark.get("cx")) <= plot.RIGHT
        assert plot.TOP <= float(mark.get("cy")) <= plot.BOTTOM


def test_the_same_metrics_give_the_same_bytes():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    assert plot.roofline_svg(metrics, 15) == plot.roofline_svg(metrics, 15)


def test_nothing_to_draw_means_no_chart():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    no_peaks = metrics.model_copy(update={
        "category_specific": metrics.category_specific.model_copy(update={"peak_maf_tflops": None}),
        "operations": [op.model_copy(update={"efficiency": op.efficiency.model_copy(
            update={"resolved_peak_maf": None})}) for op in metrics.operations]})
    assert plot.roofline_svg(no_peaks, 15) is None
    assert plot.roofline_svg(metrics, 0) is None


def test_ops_rated_against_two_peaks_get_two_roofs():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    first = metrics.operations[0]
    fp8 = first.model_copy(update={"efficiency": first.efficiency.model_copy(update={"resolved_peak_maf": 1416.0})})
    root = parsed(plot.roofline_svg(metrics.model_copy(update={"operations": [fp8, *metrics.operations[1:]]}), 15))
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert {t for t in texts(root) if "TB/s" in t or "ridge" in t} == {
        "1416 TFLOP/s, 5.3 TB/s", "ridge 267.2 FLOP/B", "708 TFLOP/s, 5.3 TB/s", "ridge 133.6 FLOP/B"}


def test_trace_text_cannot_break_or_script_the_chart():
    name = "a<script>x</script>&\x1b]0;title\x07\u202egnp.\n<!-- b"
    data = plot.roofline_svg(hostile(name, platform="MI300X\x1b[2J<svg onload=x>"), 15)
    root = parsed(data)  # well-formed XML: every character was escaped or dropped
    assert not list(root.iter(f"{SVG}script"))
    assert not any(ch in data.decode("utf-8") for ch in "\x1b\x07\u202e")
    assert any("a<script>x</script>&" in t for t in texts(root))


def test_number_labels_of_nearby_points_do_not_overlap():
    taken: list[tuple[float, float, float, float]] = []
    spots = [plot._place(300.0, 200.0, 12.4, taken) for _ in range(4)]
    assert len(set(spots)) == 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-3, 1e5), st.floats(1e-4, 5e3)), min_size=1, max_size=12),
       st.floats(10, 5000), st.floats(0.5, 20))
def test_any_figures_stay_within_their_decades(pairs, compute, bandwidth):
    pts = [plot.Point(i, f"#{i}", "op", x, y, 1.0, None) for i, (x, y) in enumerate(pairs, 1)]
    scale = plot._scale(pts, [(compute, bandwidth)])
    for p in pts:
        assert plot.LEFT - 1e-6 <= scale.px(p.x) <= plot.RIGHT + 1e-6
        assert plot.TOP - 1e-6 <= scale.py(p.y) <= plot.BOTTOM + 1e-6
    assert scale.px(compute / bandwidth) <= plot.RIGHT


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_trace_text_is_well_formed_svg_character_data(raw):
    shown = plot.text(raw, limit=10_000)
    element = ET.fromstring(f"<t>{shown}</t>")  # raises on anything XML does not allow
    assert "\n" not in (element.text or "") and "\x1b" not in (element.text or "")
