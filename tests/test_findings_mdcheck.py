"""The self-check catches every way a findings file can break the contract."""

from __future__ import annotations

import pytest

from findings_samples import gpt_oss_decode, heuristic_sample, mixtral_comparative, no_data
from jarvis_moe.findings import render_findings
from jarvis_moe.mdcheck import FindingsContractError, ensure_findings, split_cells, verify_findings
from jarvis_moe.output import write_outputs


@pytest.fixture
def sample():
    metrics = gpt_oss_decode()
    return metrics, render_findings(metrics)


def problems(text, metrics):
    found = verify_findings(text, metrics)
    assert found, "the broken text was accepted"
    return " | ".join(found)


def test_an_injected_heading_is_rejected(sample):
    metrics, text = sample
    text = text.replace("## Warnings\n", "## Warnings\n\n### P9: forged\n")
    assert "unexpected level-3 heading" in problems(text, metrics)


def test_an_unknown_section_is_rejected(sample):
    metrics, text = sample
    assert "unknown section" in problems(text.replace("## Warnings", "## Notes"), metrics)


def test_a_setext_heading_is_rejected(sample):
    metrics, text = sample
    forged = text.replace("## Warnings\n\n", "## Warnings\n\nforged\n===\n\n")
    assert "setext heading" in problems(forged, metrics)


def test_html_other_than_markers_and_br_is_rejected(sample):
    metrics, text = sample
    assert "inline HTML" in problems(text.replace("Status: OK.", "Status: <b>OK</b>."), metrics)
    assert "not a marker" in problems(text.replace("## Warnings\n", "## Warnings\n\n<div>x</div>\n"), metrics)


def test_an_unbalanced_comment_is_rejected(sample):
    metrics, text = sample
    assert "comment" in problems(text.replace("Status: OK.", "Status: OK. <!-- open"), metrics)


def test_a_marker_outside_a_card_is_rejected(sample):
    metrics, text = sample
    forged = text.replace("## Warnings\n", "## Warnings\n\n<!-- impact-end -->\n")
    assert "outside a card" in problems(forged, metrics)


def test_a_marker_that_disagrees_with_the_metrics_is_rejected(sample):
    metrics, text = sample
    assert "differs from impact_score" in problems(text.replace("mid=25.11", "mid=99.00"), metrics)
    assert "differs from impact_score_high" in problems(
        text.replace("detail_estimate low=21.53 high=28.70", "detail_estimate low=21.53 high=1.00"), metrics)


def test_a_row_with_an_unescaped_pipe_is_rejected(sample):
    metrics, text = sample
    broken = text.replace("| 3.762 | 35.02 |", "| 3.762 | a|b | 35.02 |")
    assert "table row has" in problems(broken, metrics)


def test_a_missing_card_is_rejected(sample):
    metrics, text = sample
    start = text.index("### P2:")
    end = text.index("## Detailed Analysis")
    assert "P-cards [1] should be [1, 2]" in problems(text[:start] + text[end:], metrics)


def test_host_sections_out_of_order_are_rejected(sample):
    metrics, _ = sample
    empty = dict(metrics, category_findings=[])
    text = render_findings(empty)
    swapped = text.replace("## Recommendations\n\n## Detailed Analysis\n", "## Detailed Analysis\n\n## Recommendations\n")
    assert "last sections" in problems(swapped, empty)
    trailing = text + "\n## Warnings\n"
    assert "last sections" in problems(trailing, empty)


def test_a_heuristic_card_without_its_warning_is_rejected():
    metrics = heuristic_sample()
    text = render_findings(metrics)
    broken = "\n".join(line for line in text.splitlines() if not line.startswith("> **Warning"))
    assert "Warning — estimated" in problems(broken, metrics)


def test_comparative_blocks_need_the_comparative_columns():
    metrics = mixtral_comparative()
    text = render_findings(metrics).replace("| Args (T1) |", "| Args |")
    assert "Data table header" in problems(text, metrics)


def test_data_cells_must_be_verbatim(sample):
    metrics, text = sample
    broken = text.replace("| triton/runtime/jit.py(574): run |", "| triton > jit |", 1)
    broken = broken.replace("| triton/runtime/jit.py(574): run | _matmul", "| elsewhere | _matmul", 1)
    assert "not verbatim" in problems(broken, metrics)


def test_findings_in_a_no_data_file_are_rejected():
    metrics = no_data()
    text = render_findings(gpt_oss_decode())
    assert problems(text, metrics)


def test_split_cells_keeps_escaped_pipes():
    assert split_cells("| a\\|b | c |") == ["a|b", "c"]
    assert split_cells("| a\\\\|b | c |") == ["a\\|b", "c"]


def test_ensure_raises_with_every_problem(sample):
    metrics, text = sample
    with pytest.raises(FindingsContractError) as info:
        ensure_findings(text.replace("mid=25.11", "mid=0.00").replace("## Warnings", "## Notes"), metrics)
    assert len(info.value.problems) == 2
    assert "breaks the findings format" in str(info.value)


def test_the_writer_refuses_a_broken_file_and_writes_nothing(tmp_path, sample):
    metrics, text = sample
    with pytest.raises(FindingsContractError):
        write_outputs(tmp_path, "moe_unfused", metrics, text.replace("mid=25.11", "mid=0.00"))
    assert not (tmp_path / "category_data").exists()
    assert not (tmp_path / "category_findings").exists()
