"""The self-check catches every way a findings file can break the contract."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from jarvis_moe.findings import check, render
from jarvis_moe.findings.check import FindingsContractError, ensure_findings, split_cells, verify_findings
from jarvis_moe.run import analyse
from samples import GPT_OSS_DECODE, REAL_H200, SYNTHETIC_VS, fixture_metrics, no_data, to_json_data


@pytest.fixture
def sample():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    return to_json_data(metrics), render(metrics)


def problems(text, metrics):
    found = verify_findings(text, metrics)
    assert found, "the broken text was accepted"
    return " | ".join(found)


def test_an_injected_heading_is_rejected(sample):
    metrics, text = sample
    text = text.replace("## Operations\n", "## Operations\n\n### P9: forged\n")
    assert "unexpected level-3 heading" in problems(text, metrics)


def test_an_unknown_section_is_rejected(sample):
    metrics, text = sample
    assert "unknown section" in problems(text.replace("## Operations", "## Notes"), metrics)


def test_a_setext_heading_is_rejected(sample):
    metrics, text = sample
    forged = text.replace("## Operations\n\n", "## Operations\n\nforged\n===\n\n")
    assert "setext heading" in problems(forged, metrics)


def test_html_other_than_markers_and_br_is_rejected(sample):
    metrics, text = sample
    assert "inline HTML" in problems(text.replace("- MoE time:", "- MoE <b>time</b>:"), metrics)
    assert "not a marker" in problems(text.replace("## Operations\n", "## Operations\n\n<div>x</div>\n"), metrics)


def test_an_unbalanced_comment_is_rejected(sample):
    metrics, text = sample
    assert "comment" in problems(text.replace("- MoE time:", "- MoE time <!-- open:"), metrics)


def test_a_marker_outside_a_card_is_rejected(sample):
    metrics, text = sample
    forged = text.replace("## Operations\n", "## Operations\n\n<!-- impact-end -->\n")
    assert "outside a card" in problems(forged, metrics)


def test_a_marker_that_disagrees_with_the_metrics_is_rejected(sample):
    metrics, text = sample
    assert "differs from impact_score" in problems(text.replace("mid=25.11", "mid=99.00"), metrics)
    assert "differs from impact_score_high" in problems(
        text.replace("detail_estimate low=21.52 high=28.70", "detail_estimate low=21.52 high=1.00"), metrics)


def test_a_row_with_an_unescaped_pipe_is_rejected(sample):
    metrics, text = sample
    broken = text.replace("| 3.762 | 35.02 | 24 |", "| 3.762 | a|b | 35.02 | 24 |")
    assert "table row has" in problems(broken, metrics)


def test_a_missing_card_is_rejected(sample):
    metrics, text = sample
    start = text.index("### P2:")
    end = text.index("## Detailed Analysis")
    assert "P-cards [1] should be [1, 2]" in problems(text[:start] + text[end:], metrics)


def test_host_sections_out_of_order_are_rejected(sample):
    empty_model = fixture_metrics(GPT_OSS_DECODE).model_copy(update={"category_findings": []})
    empty = to_json_data(empty_model)
    text = render(empty_model)
    swapped = text.replace("## Recommendations\n\n## Detailed Analysis\n", "## Detailed Analysis\n\n## Recommendations\n")
    assert "last sections" in problems(swapped, empty)
    trailing = text + "\n## Operations\n"
    assert "last sections" in problems(trailing, empty)


def test_a_heuristic_card_without_its_warning_is_rejected():
    model = fixture_metrics(REAL_H200)
    assert any(f.estimate_method == "heuristic" for f in model.category_findings)
    text = render(model)
    broken = "\n".join(line for line in text.splitlines() if not line.startswith("> **Warning"))
    assert "Warning — estimated" in problems(broken, to_json_data(model))


def test_comparative_blocks_need_the_comparative_columns():
    model = fixture_metrics(SYNTHETIC_VS, "comparative")
    text = render(model).replace("| Args (T1) |", "| Args |")
    assert "Data table header" in problems(text, to_json_data(model))


def test_data_cells_must_be_verbatim(sample):
    metrics, text = sample
    broken = text.replace("| triton/runtime/jit.py(574): run |", "| triton > jit |", 1)
    broken = broken.replace("| triton/runtime/jit.py(574): run | _matmul", "| elsewhere | _matmul", 1)
    assert "not verbatim" in problems(broken, metrics)


def test_findings_in_a_no_data_file_are_rejected():
    text = render(fixture_metrics(GPT_OSS_DECODE))
    assert problems(text, to_json_data(no_data()))


def test_split_cells_keeps_escaped_pipes():
    assert split_cells("| a\\|b | c |") == ["a|b", "c"]
    assert split_cells("| a\\\\|b | c |") == ["a\\|b", "c"]


def test_ensure_raises_with_every_problem(sample):
    metrics, text = sample
    with pytest.raises(FindingsContractError) as info:
        ensure_findings(text.replace("mid=25.11", "mid=0.00").replace("## Operations", "## Notes"), metrics)
    assert len(info.value.problems) == 2
    assert "breaks the findings format" in str(info.value)


def test_a_run_whose_page_breaks_the_contract_writes_nothing(tmp_path, monkeypatch):
    import shutil

    from samples import FIXTURES

    out = tmp_path / GPT_OSS_DECODE
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    monkeypatch.setattr("jarvis_moe.findings.cards._score", lambda value: "0.00")
    result = analyse(out, category="moe_unfused", options={"roofline_plot": False})
    assert result.status.value == "ERROR" and result.internal_error
    assert "breaks the findings format" in result.message
    assert not (out / "category_findings" / "moe_unfused_findings.md").exists() or \
        "Status: ERROR" in (out / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")
    assert not (out / "category_data" / "moe_unfused_replay.json").exists()


# Pieces of page text around which markdown-it's inline rules turn: tags,
# code spans, escapes, entities, autolinks, table pipes, emphasis.
_INLINE_PIECES = ["<br>", "<b>", "</i>", "<!-- x -->", "<", ">", "`", "``", "\\<", "&lt;", "&amp;",
                  "<https://a.b>", "|", "*", "_", "[a](b)", "a", " ", "x<y", "\n"]


@given(st.lists(st.sampled_from(_INLINE_PIECES), max_size=30))
@settings(max_examples=300, deadline=None)
def test_inline_html_is_found_as_a_full_inline_parse_finds_it(pieces):
    """Parsing only the runs of text that hold a '<' finds the same inline HTML as parsing them all."""
    body = "".join(pieces)
    page = f"# T\n\n{body}\n\n| a | b |\n|---|---|\n| {body.replace(chr(10), ' ')} | c |\n"
    full = MarkdownIt("commonmark").enable("table").parse(page)
    expected = [t.content for t in check._inline_tokens(full) if t.type == "html_inline"]
    found = [p for p in check._check_inline_html(_selective_parse(page))]
    assert found == [f"inline HTML {c[:60]!r} (only <br> is allowed)" for c in expected
                     if c not in check._ALLOWED_INLINE_HTML]


def _selective_parse(text):
    md = MarkdownIt("commonmark").enable("table")
    md.core.ruler.at("inline", check._inline_where_tags_can_be)
    return md.parse(text)


def test_a_tag_in_a_table_cell_is_still_found(sample):
    metrics, text = sample
    rows = [line for line in text.split("\n") if line.startswith("| ") and "---" not in line]
    forged = text.replace(rows[1], rows[1].replace(" |", " <img src=x> |", 1), 1)
    assert "inline HTML '<img src=x>'" in problems(forged, metrics)
