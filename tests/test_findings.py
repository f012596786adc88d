"""The findings markdown: host sections, reader sections, and honest advice."""

from __future__ import annotations

import copy
import re

import pytest

from findings_samples import (
    error_metrics, gpt_oss_decode, heuristic_sample, many_ops, mixtral_comparative,
    mixtral_standalone, no_data, with_findings, write_and_check, zero_findings,
)
from jarvis_moe.findings import (
    COMPARATIVE_COLUMNS, MAX_DATA_ROWS, STANDALONE_COLUMNS, render_error, render_findings,
    render_no_data,
)
from jarvis_moe.mdcheck import verify_findings

SAMPLES = {
    "gpt_oss_decode": gpt_oss_decode,
    "mixtral_standalone": mixtral_standalone,
    "mixtral_comparative": mixtral_comparative,
    "heuristic": heuristic_sample,
    "zero_findings": zero_findings,
    "many_ops": many_ops,
    "no_data": no_data,
    "error": error_metrics,
}


def _section(text: str, heading: str) -> str:
    """The body of one ``## `` section."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize("name", SAMPLES)
def test_every_form_passes_the_shared_checker(tmp_path, name):
    metrics = SAMPLES[name]()
    assert write_and_check(tmp_path, metrics) == []


@pytest.mark.parametrize("name", SAMPLES)
def test_every_form_passes_the_self_check(name):
    metrics = SAMPLES[name]()
    assert verify_findings(render_findings(metrics), metrics) == []


def test_sections_come_in_reading_order_with_host_sections_last():
    text = render_findings(gpt_oss_decode())
    headings = re.findall(r"(?m)^## (.+)$", text)
    assert headings == ["Overview", "Operations", "Routing and Load Balance", "MoE Layer Structure",
                        "Fusion Payoff", "Warnings", "Optimisation Paths",
                        "What This Trace Cannot Show", "Recommendations", "Detailed Analysis"]
    assert text.startswith("# MoE Analysis Summary\n")


def test_cards_follow_rank_order_with_library_suffix():
    metrics = gpt_oss_decode()
    text = render_findings(metrics)
    titles = re.findall(r"(?m)^### (P\d+: .+)$", text)
    assert titles == ["P1: Memory-bound MoE kernel at 18% of HBM bandwidth (Triton)",
                      "P2: Memory-bound MoE kernel at 41% of HBM bandwidth (Triton)"]
    assert re.findall(r"(?m)^#### (P\d+): ", text) == ["P1", "P2"]


def test_markers_copy_the_finding_scores_with_two_decimals():
    metrics = mixtral_standalone()
    text = render_findings(metrics)
    assert "<!-- impact-begin kind=p_item low=34.04 mid=39.71 high=45.38 -->" in text
    assert "**Impact**: impact_score: 39.71 (% of end-to-end GPU time, range 34.04–45.38)" in text
    assert "<!-- impact-begin kind=detail_estimate low=34.04 high=45.38 -->" in text
    metrics["category_findings"][0]["impact_score_high"] = 45.4
    assert "high=45.40 -->" in render_findings(metrics)


def test_detail_block_labels_each_stand_on_their_own_line():
    text = render_findings(mixtral_standalone())
    block = text[text.index("<!-- reasoning-candidate tier=compute rank=1 -->"):]
    lines = block.splitlines()
    for label in ("**Identification:**", "**Reasoning for Slowdown:**", "**Resolution:**"):
        i = next(n for n, line in enumerate(lines) if line.startswith(label))
        assert lines[i - 1] == "" or label == "**Identification:**"
        assert lines[i + 1] == ""
    i = lines.index("**Data:**")
    assert lines[i - 1] == lines[i + 1] == ""
    assert lines[i + 2] == "| " + " | ".join(STANDALONE_COLUMNS) + " |"
    assert "**Impact estimate:**" in lines


def test_standalone_data_row_is_verbatim_from_operations():
    metrics = mixtral_standalone()
    op = metrics["operations"][0]
    row = ("| pseudo_op::moe_aiter_fused_1stage | " + op["args"] + " | " + op["launcher_path"] + " | "
           + op["kernel_name_trunc"] + " | 34.932 | 88.59 | 32 | 4.04 | 48.77% of 5.3 TB/s | memory-bound |")
    assert row in render_findings(metrics)


def test_comparative_uses_trace_columns_and_speed_words():
    text = render_findings(mixtral_comparative())
    assert "| " + " | ".join(COMPARATIVE_COLUMNS) + " |" in text
    assert "| 34.932 | 23.513 | 32/32 | -11.419 | 4.04 | memory-bound | 32.69% faster |" in text
    assert "### P1: Memory-bound MoE kernel 32.69% faster in trace 2 (AITER)" in text
    # Speed differences are words, never ratios such as "1.49x".
    assert not re.search(r"\d(\.\d+)?x\b", text)
    assert "slower" not in text


def test_comparative_slowdown_is_called_slower():
    metrics = mixtral_comparative()
    op = metrics["operations"][0]
    op.update(t2_time_ms=40.0, difference_ms=5.068, speedup_pct=-14.51)
    text = render_findings(metrics)
    assert "14.51% slower" in text


def test_heuristic_card_carries_the_estimated_warning():
    text = render_findings(heuristic_sample())
    assert "### P2: Unmodelled MoE op vllm::custom\\_moe\\_align\\_block\\_size at 12% of GPU time\n" in text
    assert ("<!-- impact-end -->\n> **Warning — estimated:** No performance model for this op; impact "
            "is derived from its E2E GPU-time share (12.00%), not a gap projection.") in text
    row = "| vllm::custom_moe_align_block_size | (16,2) Int | Not found | moe_align_block_size_kernel | 4.732 | 12.00 | 32 | — | — | — |"
    assert row in text


def test_zero_findings_leave_both_host_sections_empty():
    metrics = zero_findings()
    assert metrics["category_findings"] == []
    text = render_findings(metrics)
    assert text.endswith("## Recommendations\n\n## Detailed Analysis\n")
    assert "## Operations" in text


def test_no_data_is_the_exact_missing_category_form():
    expected = ("# MoE Analysis Summary\n\n## Overview\nNo MoE operations detected in this trace.\n\n"
                "## Additional Notes\n- Model does not use Mixture of Experts architecture\n\n"
                "## Recommendations\n\n## Detailed Analysis\n")
    assert render_no_data("moe_fused") == expected
    assert render_findings(no_data("moe_fused")) == expected


def test_missing_unfused_category_does_not_claim_the_model_has_no_moe():
    text = render_findings(no_data("moe_unfused"))
    assert "No MoE operations detected in this trace." in text
    assert "does not use Mixture of Experts" not in text
    assert "No unfused MoE pipeline" in text
    assert text.endswith("## Recommendations\n\n## Detailed Analysis\n")


def test_error_names_the_file_and_the_problem():
    text = render_error("moe_fused", "The column 'Kernel Time (µs)_sum' holds text.",
                        "category_data/moe_fused_ops.csv", "row 3")
    assert "\nStatus: ERROR\n" in text
    assert "category\\_data/moe\\_fused\\_ops.csv" in text
    assert "row 3" in text and "holds text" in text
    assert text.endswith("## Recommendations\n\n## Detailed Analysis\n")
    assert render_findings(error_metrics()).count("Status: ERROR") == 1


def test_operations_table_caps_rows_and_summarises_the_rest():
    metrics = many_ops(30)
    text = _section(render_findings(metrics), "## Operations")
    rows = [line for line in text.splitlines() if line.startswith("| pseudo")]
    assert len(rows) == 15
    rest = sum(op["time_ms"] for op in metrics["operations"][15:])
    share = rest / metrics["total_time_ms"] * 100
    assert f"15 more signatures, {rest:.3f} ms ({share:.2f}% of MoE time)." in text


def test_data_table_caps_members_and_counts_the_rest():
    metrics = many_ops(30)
    finding = metrics["category_findings"][0]
    text = render_findings(metrics)
    block = text[text.index("<!-- reasoning-candidate tier=compute rank=1 -->"):]
    block = block[: block.find("<!-- impact-end -->")]
    assert sum(1 for line in block.splitlines() if line.startswith("| pseudo")) == MAX_DATA_ROWS
    more = finding["member_count"] - MAX_DATA_ROWS
    assert f"{more} more members of this finding are not shown." in block


def test_fp4_ops_never_get_lower_precision_advice():
    text = render_findings(gpt_oss_decode()).lower()
    assert "lower precision" not in text and "lower-precision" not in text
    assert "8-bit" not in text
    assert "already use 4-bit weights" in text


def test_wide_weights_that_are_memory_bound_get_the_precision_lever():
    text = render_findings(mixtral_standalone())
    assert "is memory-bound on bf16 weights. An 8-bit weight format halves the weight bytes" in text


def test_batching_advice_states_the_crossover_size():
    text = render_findings(gpt_oss_decode())
    batch_lines = [line for line in text.splitlines() if "batch" in line.lower()]
    assert batch_lines
    assert all(re.search(r"about \d+", line) for line in batch_lines)
    assert "crossover about 283" in text


def test_no_batching_advice_without_a_crossover_number():
    metrics = gpt_oss_decode()
    for op in metrics["operations"]:
        op["moe"]["crossover_tokens"] = None
    text = render_findings(metrics)
    assert "batch" not in text.lower()


def test_compute_bound_ops_get_no_batching_advice():
    metrics = mixtral_standalone()
    op = metrics["operations"][0]
    op["efficiency"]["bound_type"] = "compute"
    op["moe"].update(crossover_tokens=None, efficiency_interval=None)
    text = render_findings(with_findings(metrics))
    assert "Batch more tokens" not in text and "Batching toward" not in text
    assert "already compute-bound" in text
    assert "48.77% of 708 TFLOPS" in text


def test_flagged_skew_is_reported_as_indirect_evidence():
    metrics = mixtral_standalone()
    metrics["operations"][0]["moe"]["skew"] = {"max_over_median": 3.26, "cov": 0.45, "flagged": True}
    text = render_findings(metrics)
    routing = _section(text, "## Routing and Load Balance")
    assert "max/median 3.26, cov 0.45" in routing
    assert "consistent with routing skew or with contention" in routing
    assert "indirect evidence" in routing
    assert "Cannot assess expert load balance from trace data." in routing


def test_routing_section_prints_interval_crossover_and_padding_estimate():
    routing = _section(render_findings(gpt_oss_decode()), "## Routing and Load Balance")
    assert "31.60 expected under uniform routing; between 4 and 32" in routing
    assert "2.40% to 18.30% of roofline; the measured 18.04% assumes the expected count" in routing
    assert "about 283 tokens per call" in routing
    assert "Padding waste (estimate, uniform routing, 16-row blocks): 74.60%" in routing


def test_fusion_payoff_only_for_unfused_pipelines():
    unfused = render_findings(gpt_oss_decode())
    payoff = _section(unfused, "## Fusion Payoff")
    assert "1.57 MB" in payoff and "0.007 ms" in payoff and "0.07% of GPU time" in payoff
    assert "## Fusion Payoff" not in render_findings(mixtral_standalone())


def test_reproducer_prints_the_exact_shapes():
    text = render_findings(gpt_oss_decode())
    assert ("M=32, K=3072, N=3072, E=32, k=4, weights fp4, activations bf16, gated no") in text
    assert "c10::" not in text


def test_precision_substitution_is_a_warning():
    warnings = _section(render_findings(gpt_oss_decode()), "## Warnings")
    assert ("- pseudo\\_op::moe\\_triton\\_unfused\\_down: MI300X has no matrix\\_fp4 peak; the op is "
            "rated against the matrix\\_bf16 peak (708 TFLOP/s)") in warnings
    # The same warning arrives three ways (top level, op, efficiency); it is listed once per op.
    assert warnings.count("MI300X has no matrix") == 2


def test_anomaly_and_variance_are_warned():
    metrics = mixtral_standalone()
    op = metrics["operations"][0]
    op["efficiency"].update(efficiency_percent=123.4, is_anomaly=True)
    op.update(high_variance=True, cov=1.3)
    warnings = _section(render_findings(with_findings(metrics)), "## Warnings")
    assert "efficiency 123.40% is above 110% of roofline" in warnings
    assert "cov 1.30" in warnings


def test_library_suffix_is_omitted_when_unknown():
    metrics = mixtral_standalone()
    metrics["category_findings"][0]["library"] = "Unknown"
    assert "### P1: Memory-bound MoE kernel at 49% of HBM bandwidth\n" in render_findings(metrics)
    metrics["category_findings"][0]["library"] = None
    assert "### P1: Memory-bound MoE kernel at 49% of HBM bandwidth\n" in render_findings(metrics)


def test_missing_optional_keys_render_dashes_not_errors(tmp_path):
    metrics = mixtral_standalone()
    for key in ("e2e_time_ms", "platform", "operations_total", "options", "warnings"):
        metrics.pop(key)
    metrics["category_specific"] = {}
    op = metrics["operations"][0]
    for key in ("display_name", "moe", "count", "cov", "percent_of_total"):
        op.pop(key)
    op["efficiency"] = None
    text = render_findings(metrics)
    assert "unknown platform" in text
    assert "No operation has a recognisable MoE shape" in text
    assert verify_findings(text, metrics) == []
    assert write_and_check(tmp_path, metrics) == []


def test_plot_is_linked_only_when_named():
    metrics = gpt_oss_decode()
    assert "![Roofline]" not in render_findings(metrics)
    assert "![Roofline](moe_unfused_roofline.png)" in render_findings(metrics, "moe_unfused_roofline.png")
    with pytest.raises(ValueError):
        render_findings(metrics, "../x.png")


def test_rendering_leaves_the_metrics_untouched():
    metrics = gpt_oss_decode()
    before = copy.deepcopy(metrics)
    render_findings(metrics)
    assert metrics == before


def test_wording_is_vendor_neutral():
    for sample in (gpt_oss_decode, mixtral_standalone, mixtral_comparative, heuristic_sample):
        text = render_findings(sample())
        for word in ("CUDA", "HIP graph", "hipGraph", "cudaGraph", "NVIDIA", "AMD", "ROCm"):
            assert word not in text


def test_raw_dtype_names_are_shortened_in_sentences():
    metrics = mixtral_comparative()
    metrics["operations"][0]["moe"].update(weight_dtype="c10::BFloat16", input_dtype="c10::BFloat16")
    text = render_findings(metrics)
    assert "weights bf16, activations bf16" in text
    assert "c10::" not in text
    assert "is memory-bound on bf16 weights" in text


def test_comparative_routing_does_not_call_the_trace_ratio_a_roofline_figure():
    metrics = mixtral_comparative()
    routing = _section(render_findings(metrics), "## Routing and Load Balance")
    assert "13.55% to 54.19% of roofline." in routing
    assert "67.31" not in routing
    metrics["operations"][0]["efficiency"]["roofline_efficiency_percent"] = 48.77
    routing = _section(render_findings(metrics), "## Routing and Load Balance")
    assert "the measured 48.77% assumes the expected count" in routing


def test_the_load_balance_limit_is_stated_once():
    metrics = gpt_oss_decode()
    metrics["category_specific"]["limits"] = [
        "Cannot assess expert load balance from trace data: per-expert token counts are not in a kernel trace."]
    limits = _section(render_findings(metrics), "## What This Trace Cannot Show")
    assert limits.count("Cannot assess expert load balance") == 1
    metrics["category_specific"]["limits"] = ["Occupancy is not in the trace."]
    limits = _section(render_findings(metrics), "## What This Trace Cannot Show")
    assert limits.splitlines()[1:] == ["- Cannot assess expert load balance from trace data.",
                                       "- Occupancy is not in the trace."]


@pytest.mark.parametrize("folder, category, scope", [
    ("gpt-oss-20b-mi300x-decode-bs32", "moe_unfused", "standalone"),
    ("gpt-oss-20b-mi300x-prefill-bs8192", "moe_unfused", "standalone"),
    ("synthetic-mixtral-decode-bf16", "moe_fused", "standalone"),
    ("synthetic-mixtral-decode-bf16-vs-faster", "moe_fused", "comparative"),
    ("qwen3-8b-dense-mi300x-decode", "moe_fused", "standalone"),
])
def test_engine_outputs_for_the_fixtures_conform(tmp_path, folder, category, scope):
    """End to end: the engine's real metrics through this writer, checked by the host's checker."""
    import json
    import shutil

    from conformance.check_findings import check
    from findings_samples import FIXTURES
    from jarvis_moe.run import analyse

    out = tmp_path / folder
    shutil.copytree(FIXTURES / folder, out)
    result = analyse(out, category=category, scope=scope, options={"roofline_plot": False})
    assert not result.internal_error, result.message
    metrics, errors = check(out, category)
    assert errors == []
    text = (out / "category_findings" / f"{category}_findings.md").read_text(encoding="utf-8")
    assert verify_findings(text, json.loads(json.dumps(metrics))) == []


def documented_example(tmp_path) -> str:
    """The findings the engine writes for the gpt-oss decode fixture."""
    import shutil

    from findings_samples import FIXTURES
    from jarvis_moe.run import analyse

    out = tmp_path / "gpt-oss"
    shutil.copytree(FIXTURES / "gpt-oss-20b-mi300x-decode-bs32", out)
    analyse(out, category="moe_unfused", scope="standalone", options={"roofline_plot": False})
    return (out / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")


def test_the_documented_example_is_what_the_engine_writes(tmp_path):
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "findings.md").read_text(encoding="utf-8")
    example = documented_example(tmp_path)
    assert f"````markdown\n{example}````\n" in doc, "regenerate the example in docs/findings.md"


def _key_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield prefix + (key,)
            yield from _key_paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:2]):
            yield prefix + (i,)
            yield from _key_paths(value, prefix + (i,))


@pytest.mark.parametrize("make", [gpt_oss_decode, mixtral_comparative, heuristic_sample])
def test_any_single_value_set_to_none_renders_without_error(make):
    base = make()
    for path in _key_paths(base):
        metrics = copy.deepcopy(base)
        parent = metrics
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = None
        render_findings(metrics)  # must not raise
