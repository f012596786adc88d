"""The optional roofline PNG."""

from __future__ import annotations

import sys

import pytest

from jarvis_moe.findings.plot import render_roofline
from jarvis_moe.metrics import to_json_data
from samples import GPT_OSS_DECODE, fixture_metrics, hostile, no_data, write_and_check


def gpt_oss_decode() -> dict:
    return to_json_data(fixture_metrics(GPT_OSS_DECODE))

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_no_plot_is_written(tmp_path, monkeypatch):
    # A None entry in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    target = tmp_path / "category_findings" / "moe_unfused_roofline.png"
    assert render_roofline(gpt_oss_decode(), target) is None
    assert not target.exists()


def test_the_plot_is_written_and_linked(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = gpt_oss_decode()
    target = tmp_path / "category_findings" / "moe_unfused_roofline.png"
    assert render_roofline(metrics, target) == target
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    assert write_and_check(tmp_path, fixture_metrics(GPT_OSS_DECODE), plot_name=target.name) == []
    text = (tmp_path / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")
    assert "![Roofline](moe_unfused_roofline.png)" in text
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_nothing_to_draw_means_no_plot(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "roofline.png"
    assert render_roofline(to_json_data(no_data()), target) is None
    metrics = gpt_oss_decode()
    metrics["category_specific"]["peak_maf_tflops"] = None
    for op in metrics["operations"]:
        op["efficiency"]["resolved_peak_maf"] = None
    assert render_roofline(metrics, target) is None
    assert not target.exists()


def test_names_with_mathtext_and_markup_do_not_break_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = to_json_data(hostile("a$x^$\\frac{$ <!-- b\n### P9:"))
    target = tmp_path / "roofline.png"
    assert render_roofline(metrics, target) == target
    assert target.read_bytes().startswith(PNG_SIGNATURE)


def test_write_roofline_returns_the_name_to_link(tmp_path):
    pytest.importorskip("matplotlib")
    from jarvis_moe.findings.plot import write_roofline

    assert write_roofline(tmp_path, "moe_unfused", gpt_oss_decode()) == "moe_unfused_roofline.png"
    assert (tmp_path / "category_findings" / "moe_unfused_roofline.png").is_file()
