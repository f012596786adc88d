"""Atomic writes and the two output files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from jarvis_moe import output
from jarvis_moe.findings import render
from jarvis_moe.metrics import METRICS_ADAPTER
from jarvis_moe.output import OutputError, metrics_json, write_outputs, write_text_atomic
from samples import GPT_OSS_DECODE, SYNTHETIC, error_metrics, fixture_metrics, write_and_check


def both(metrics) -> list[tuple[str, bytes]]:
    """The two standard outputs of ``metrics``, as the run writes them."""
    return [(f"category_data/{metrics.category}_metrics.json", metrics_json(metrics).encode()),
            (f"category_findings/{metrics.category}_findings.md", render(metrics).encode())]


def mixtral_standalone():
    return fixture_metrics(SYNTHETIC)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.md"
    assert write_text_atomic(target, "héllo\n") == target
    assert target.read_text(encoding="utf-8") == "héllo\n"
    write_text_atomic(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert leftovers(tmp_path) == []


def test_atomic_write_replaces_a_symlink_without_touching_its_target(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "out.md"
    link.symlink_to(victim)
    write_text_atomic(link, "new")
    assert not link.is_symlink()
    assert link.read_text(encoding="utf-8") == "new"
    assert victim.read_text(encoding="utf-8") == "keep me"


def test_a_failed_write_removes_its_temp_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.md"
    target.write_text("old", encoding="utf-8")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_text_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert leftovers(tmp_path) == []


def test_new_files_are_readable_by_others(tmp_path):
    target = write_text_atomic(tmp_path / "x.md", "x")
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_outputs_writes_json_and_markdown(tmp_path):
    metrics = fixture_metrics(GPT_OSS_DECODE)
    markdown = render(metrics)
    js, md = write_outputs(tmp_path, both(metrics))
    assert js == tmp_path / "category_data" / "moe_unfused_metrics.json"
    assert md == tmp_path / "category_findings" / "moe_unfused_findings.md"
    assert METRICS_ADAPTER.validate_json(js.read_text(encoding="utf-8")) == metrics
    assert md.read_text(encoding="utf-8") == markdown
    assert js.read_text(encoding="utf-8").startswith('{\n  "category": "moe_unfused"')
    assert leftovers(js.parent) == leftovers(md.parent) == []


def test_json_keeps_non_ascii_text(tmp_path):
    metrics = error_metrics()
    js, _ = write_outputs(tmp_path, both(metrics))
    assert "µs" in js.read_text(encoding="utf-8")


def test_nan_and_infinity_become_null():
    metrics = mixtral_standalone()
    op = metrics.operations[0].model_copy(update={"cov": math.nan})
    spec = metrics.category_specific.model_copy(update={"peak_maf_tflops": math.inf})
    broken = metrics.model_copy(update={"operations": [op], "category_specific": spec})
    text = metrics_json(broken)
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)
    assert saved["operations"][0]["cov"] is None
    assert saved["category_specific"]["peak_maf_tflops"] is None


def test_values_that_are_not_json_fail_loudly():
    metrics = mixtral_standalone()
    broken = metrics.model_copy(update={"options": {**metrics.options, "odd": object()}})
    with pytest.raises(OutputError, match="cannot be written as JSON"):
        metrics_json(broken)


@pytest.mark.parametrize("blocked", ["category_findings", "category_data"])
def test_an_output_dir_that_is_a_file_is_reported_and_nothing_is_written(tmp_path, blocked):
    (tmp_path / blocked).write_text("not a directory", encoding="utf-8")
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="is not a directory"):
        write_outputs(tmp_path, both(metrics))
    other = "category_data" if blocked == "category_findings" else "category_findings"
    assert not (tmp_path / other / "moe_fused_metrics.json").exists()
    assert not (tmp_path / other / "moe_fused_findings.md").exists()


def test_a_target_that_is_a_directory_is_reported(tmp_path):
    (tmp_path / "category_findings" / "moe_fused_findings.md").mkdir(parents=True)
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="is a directory"):
        write_outputs(tmp_path, both(metrics))
    assert not (tmp_path / "category_data" / "moe_fused_metrics.json").exists()


def test_missing_output_dir_and_odd_paths_are_reported(tmp_path):
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="does not exist"):
        write_outputs(tmp_path / "absent", both(metrics))
    for odd in ("category_data/../x.json", "elsewhere/x.json", "category_findings/.hidden", "category_data/a/b"):
        with pytest.raises(OutputError, match="not a plain file"):
            write_outputs(tmp_path, [(odd, b"x")])
    assert not (tmp_path / "category_data").exists()


def test_a_failed_markdown_write_is_reported_after_the_json(tmp_path, monkeypatch):
    metrics = mixtral_standalone()
    real = output.write_bytes_atomic

    def fail_on_markdown(path, data):
        if str(path).endswith(".md"):
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(output, "write_bytes_atomic", fail_on_markdown)
    with pytest.raises(OutputError, match="No space left"):
        write_outputs(tmp_path, both(metrics))
    assert (tmp_path / "category_data" / "moe_fused_metrics.json").exists()
    assert leftovers(tmp_path / "category_findings") == []


def test_a_rerun_on_fixed_input_replaces_both_files(tmp_path):
    assert write_and_check(tmp_path, error_metrics()) == []
    assert write_and_check(tmp_path, mixtral_standalone()) == []
    saved = json.loads((tmp_path / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    assert saved["status"] == "OK"
    text = (tmp_path / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "Status: ERROR" not in text and "### P1:" in text


def test_the_output_symlinks_are_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("keep me", encoding="utf-8")
    (tmp_path / "category_findings").mkdir()
    (tmp_path / "category_findings" / "moe_fused_findings.md").symlink_to(elsewhere)
    assert write_and_check(tmp_path, mixtral_standalone()) == []
    assert elsewhere.read_text(encoding="utf-8") == "keep me"


def test_check_output_dir_reports_blocked_directories(tmp_path):
    output.check_output_dir(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        output.check_output_dir(tmp_path / "absent")
    (tmp_path / "category_findings").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not a directory"):
        output.check_output_dir(tmp_path)


def test_output_error_is_the_engines_error_type():
    from jarvis_moe import errors

    assert OutputError is errors.OutputError


# -- the output directory as the engine's run finds it ------------------------

from jarvis_moe.run import analyse  # noqa: E402


def test_symlinked_findings_dir_leading_outside_is_refused(fixture_copy, tmp_path):
    out = fixture_copy(SYNTHETIC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "category_findings").symlink_to(elsewhere, target_is_directory=True)
    result = analyse(out, category="moe_fused", options={"roofline_plot": True})
    assert result.status.value == "ERROR" and result.exit_code == 2
    assert "outside the output directory" in result.message
    assert list(elsewhere.iterdir()) == []


def test_symlinked_findings_dir_inside_the_output_dir_is_used(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "reports").mkdir()
    (out / "category_findings").symlink_to(out / "reports", target_is_directory=True)
    assert analyse(out, category="moe_fused").status.value == "OK"
    assert (out / "reports" / "moe_fused_findings.md").is_file()


def test_failed_write_creates_no_directory(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "category_data" / "moe_fused_metrics.json").mkdir()
    result = analyse(out, category="moe_fused")
    assert result.status.value == "ERROR"
    assert not (out / "category_findings").exists()


def test_output_dir_that_is_a_file_is_named_as_such(tmp_path):
    target = tmp_path / "not_a_dir"
    target.write_text("x", encoding="utf-8")
    result = analyse(target, category="moe_fused")
    assert result.status.value == "ERROR" and "is not a directory" in result.message


def test_a_run_without_a_plot_removes_the_stale_one(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    svg = out / "category_findings" / "moe_fused_roofline.svg"
    # A chart of an earlier version is an output of ours too.
    legacy = out / "category_findings" / "moe_fused_roofline.png"
    legacy.parent.mkdir(exist_ok=True)
    legacy.write_bytes(b"\x89PNG old")
    assert analyse(out, category="moe_fused", options={"roofline_plot": True}).status.value == "OK"
    assert svg.is_file() and not legacy.exists()
    (out / "metadata" / "moe_fused_metadata.json").write_text("{", encoding="utf-8")
    assert analyse(out, category="moe_fused", options={"roofline_plot": True}).status.value == "ERROR"
    assert not svg.exists()
    assert "roofline" not in (out / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
