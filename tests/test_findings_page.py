"""The findings page: its forms, the host's contract, and sentences true for their numbers.

Every page here is what the engine writes for a fixture. Most tests assert a
sentence (or its absence) that an earlier version got wrong.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conformance.check_findings import check
from jarvis_moe.findings import ReplayRef, render
from jarvis_moe.replay.ref import ReplayCaseRef
from jarvis_moe.findings.check import verify_findings
from jarvis_moe.run import analyse
from samples import (
    FIXTURES, GPT_OSS_DECODE, GPT_OSS_PREFILL, REAL_H200, SYNTHETIC, SYNTHETIC_VS, error_metrics, fixture_metrics,
    hostile, no_data, to_json_data, write_and_check,
)

FAM_SGLANG = "fam-sglang-triton-mixtral-fp8-mi300x"
FAM_CK = "fam-ck-two-stage-dsv2lite-mi300x"
ALL = sorted(p.name for p in FIXTURES.iterdir() if (p / "category_data").is_dir()
             and any((p / "category_data").glob("moe_*_ops.csv")))


def page(name: str, scope: str = "standalone") -> str:
    return render(fixture_metrics(name, scope))


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def reader_part(text: str) -> str:
    return text.split("## Recommendations", 1)[0]


# --- every form conforms ---------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_page_passes_both_checkers(tmp_path, name):
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    category = "moe_unfused" if (out / "category_data" / "moe_unfused_ops.csv").exists() else "moe_fused"
    result = analyse(out, category=category, options={"roofline_plot": False})
    assert not result.internal_error, result.message
    metrics, errors = check(out, category)
    assert errors == []
    text = (out / "category_findings" / f"{category}_findings.md").read_text(encoding="utf-8")
    assert verify_findings(text, metrics) == []


def test_comparative_page_passes_both_checkers(tmp_path):
    assert write_and_check(tmp_path, fixture_metrics(SYNTHETIC_VS, "comparative")) == []


@pytest.mark.parametrize("metrics", [no_data(), no_data("moe_unfused", "moe_fused"), error_metrics()])
def test_missing_and_error_pages_pass_the_shared_checker(tmp_path, metrics):
    assert write_and_check(tmp_path, metrics) == []


def test_host_sections_come_last_cards_in_rank_order_with_library_suffix():
    text = page(GPT_OSS_DECODE)
    headings = re.findall(r"(?m)^## (.+)$", text)
    assert headings[-2:] == ["Recommendations", "Detailed Analysis"]
    assert re.findall(r"(?m)^### (P\d+): .*\((\w+)\)$", text) == [("P1", "Triton"), ("P2", "Triton")]


def test_markers_copy_the_scores_of_the_findings():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    text = render(metrics)
    for f in metrics.category_findings:
        assert (f"<!-- impact-begin kind=p_item low={f.impact_score_low:.2f} mid={f.impact_score:.2f} "
                f"high={f.impact_score_high:.2f} -->") in text
        assert f"<!-- impact-begin kind=detail_estimate low={f.impact_score_low:.2f} high={f.impact_score_high:.2f} -->" in text


def test_data_rows_are_verbatim_and_tell_role_and_phase_apart():
    metrics = fixture_metrics(REAL_H200)
    text = render(metrics)
    op = metrics.operations[0]
    row = f"| {op.name} | {op.args} | {op.launcher_path} | {op.kernel_name_trunc} | {op.time_ms:.3f} |"
    assert row in text
    assert "| up projection | prefill-like |" in section(text, "Detailed Analysis")


def test_an_anomalous_card_says_anomalous_and_keeps_the_warning_marker():
    text = page(REAL_H200)
    # #4 (down, decode-like) is at 112.03% of roofline: it has a model, its figure is anomalous.
    assert ("> **Warning — estimated:** Its roofline figure (112.03%) is anomalous, above the anomaly threshold; "
            "impact is derived from its E2E GPU-time share (1.91%), not a gap projection.") in text
    assert "No performance model for this op" not in text


def test_an_op_without_a_model_keeps_the_no_model_warning():
    text = render(hostile("pseudo_op::moe", heuristic=True))
    assert "> **Warning — estimated:** No performance model for this op" in text


def test_comparative_cards_speak_of_faster_and_slower():
    text = page(SYNTHETIC_VS, "comparative")
    assert "32.69% faster in trace 2" in text
    assert "| Args (T1) |" in text and "trace2/trace1" not in text


def test_zero_findings_leave_both_host_sections_empty():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    text = render(metrics.model_copy(update={"category_findings": []}))
    assert text.endswith("## Recommendations\n\n## Detailed Analysis\n")


def test_missing_category_whose_sibling_has_moe_says_the_model_uses_moe(tmp_path):
    out = tmp_path / GPT_OSS_DECODE
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    assert analyse(out, category="moe_fused").status.value == "NO_DATA"
    text = (out / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "Model does not use Mixture of Experts architecture" not in text
    assert "The model does use Mixture of Experts" in text
    assert "`category_findings/moe_unfused_findings.md`" in text


def test_missing_category_without_any_moe_keeps_the_standard_note(tmp_path):
    out = tmp_path / "dense"
    shutil.copytree(FIXTURES / "qwen3-8b-dense-mi300x-decode", out)
    for category in ("moe_fused", "moe_unfused"):
        assert analyse(out, category=category).status.value == "NO_DATA"
        text = (out / "category_findings" / f"{category}_findings.md").read_text(encoding="utf-8")
        assert "- Model does not use Mixture of Experts architecture" in text


def test_error_page_names_the_file_the_place_and_the_problem():
    text = render(error_metrics())
    assert "Status: ERROR" in text
    assert "- File: `category_data/moe_fused_ops.csv`." in text
    assert "- Where: row 3, column 'Kernel Time (µs)\\_sum'." in text


# --- sentences true for their numbers (one test per point found wrong) --------


def test_padding_is_advised_only_for_compute_bound_ops_with_its_saving():
    assert "Padding" not in section(page(GPT_OSS_DECODE), "Optimisation Paths")
    paths = section(page(GPT_OSS_PREFILL), "Optimisation Paths")
    item = next(line for line in paths.splitlines() if line.startswith("- Padding:"))
    assert "128-row blocks, from the kernel name" in item
    assert re.search(r"at most \d+\.\d{3} ms \(\d+\.\d{2}% of GPU time\)", item)
    assert "Smaller blocks or a token-gathering layout" not in page(GPT_OSS_PREFILL)


def test_fusion_says_which_traffic_a_fused_kernel_would_save():
    sglang = section(page(REAL_H200), "Optimisation Paths")
    assert "activation runs as its own kernel, so the intermediate crosses memory three times over" in sglang
    ck = page(FAM_CK)
    assert "keeps the intermediate on chip" not in ck
    assert "applies the activation itself" in ck or "fusing the pipeline" in ck


def test_skew_reads_both_ends_of_the_spread():
    routing = section(page(GPT_OSS_DECODE), "Routing and Load Balance")
    down = next(line for line in routing.splitlines() if "unfused_down`:" in line)
    assert "from 0.61× to 1.05× the median" in down
    # The down stage streams at 0.97 of 5.3 TB/s, under 20 %: its time does not follow its bytes, so
    # it takes the verdict of its up stage (2.2 TB/s), whose spread fits uniform routing.
    assert "its own durations do not decide it (it streams far below the bandwidth" in down
    assert "shares that stage's verdict (the spread fits uniform routing)" in down
    assert "no duration evidence of routing skew" not in page(GPT_OSS_DECODE)


def test_topk_is_a_model_change_and_counts_the_compute_bound_ops():
    decode = section(page(GPT_OSS_DECODE), "Optimisation Paths")
    model = decode.split("**Model changes**", 1)[1].split("**Path B", 1)[0]
    assert "would read the weights of 27.94 instead of 31.55 experts per call" in model
    assert "model-quality decision" in model and "Top-k" not in decode.split("**Model changes**", 1)[0]
    metrics = fixture_metrics(GPT_OSS_PREFILL)
    prefill = section(render(metrics), "Optimisation Paths")
    assert "compute-bound, would do half their FLOPs" in prefill
    # Both prefill ops are compute-bound at top-4: top-2 halves their FLOPs, so half their time.
    topk = next(t for t in metrics.category_specific.lever_sums if t.kind == "topk")
    half = sum(metrics.operations[i].time_ms for i in topk.op_indexes) / 2
    assert topk.path == "model" and topk.saving_ms == pytest.approx(half, abs=0.002)


def test_a_stage_far_below_its_sibling_is_singled_out():
    paths = section(page(GPT_OSS_DECODE), "Optimisation Paths")
    item = next(line for line in paths.splitlines() if line.startswith("- Sibling stages:"))
    assert "`pseudo_op::moe_triton_unfused_down` reaches 0.97 TB/s against 2.2 TB/s" in item
    assert "moving 0.50× its bytes" in item


def test_fp8_compute_names_its_kernel_or_is_not_offered():
    item = next(line for line in section(page(REAL_H200), "Optimisation Paths").splitlines()
                if line.startswith("- FP8 compute:"))
    assert "use\\_fp8\\_w8a8" in item and "790 TFLOP/s matrix peak" in item and "1580 TFLOP/s FP8 peak" in item
    # MXFP4 and int4 weights: no library names an FP8 kernel for them, so no lever.
    assert "FP8 compute:" not in page(GPT_OSS_PREFILL)
    assert "FP8 compute:" not in page("fam-gptq-awq-qwen3-30b-a3b-mi300x")


def test_expert_parallelism_carries_its_worth_and_spares_prefill():
    item = next(line for line in page(GPT_OSS_DECODE).splitlines() if line.startswith("- Expert parallelism:"))
    assert "all-to-all dispatch and combine" in item and "Tensor parallelism" in item
    assert re.search(r"at most \d+\.\d{3} ms \(\d+\.\d{2}% of GPU time\) on each GPU", item)
    # Compute-bound prefill ops read all experts; they are never counted as weight reads to split.
    assert "Expert parallelism" not in page(GPT_OSS_PREFILL)


def test_peaks_are_named_for_what_they_are_and_savings_as_upper_bounds():
    overview = section(page(GPT_OSS_DECODE), "Overview")
    assert "(a maximum achievable figure)" in overview and "(the datasheet peak)" in overview
    assert "upper bounds" in overview
    assert "save up to" not in page(GPT_OSS_DECODE)


def test_one_rounding_for_each_figure():
    text = page(GPT_OSS_DECODE)
    assert "31.55" in text and "31.60" not in text
    assert "30.46" in text and "30.47" not in text  # the up op's share, same everywhere
    synthetic = page(SYNTHETIC)
    assert "7.92" in synthetic and "7.90" not in synthetic


def test_small_batches_are_called_decode_like():
    text = page(GPT_OSS_DECODE)
    assert "decode-like" in text
    assert "which a small chunked prefill also matches" in text
    assert not re.search(r"\| decode \|", text)


def test_the_gpt_oss_decode_page_is_short_and_says_each_fact_once():
    text = page(GPT_OSS_DECODE)
    assert len(text.splitlines()) <= 110
    assert text.count("has no fp4 matrix peak") == 1
    assert reader_part(text).count("275") == 1  # the up op's crossover batch
    # The down op's efficiency interval (4 to 32 experts read) is stated once, under routing.
    assert text.count("2.39%") == 1


def test_identifiers_are_code_spans_in_the_reader_sections():
    reader = reader_part(page(GPT_OSS_DECODE))
    assert "`pseudo_op::moe_triton_unfused_down`" in reader
    assert "pseudo\\_op" not in reader


def _decode_evidence(name: str) -> list[dict]:
    ops = fixture_metrics(name).model_dump(mode="json")["operations"]
    return [op["moe"]["skew"] for op in ops if op["moe"]["skew"]["direction"] == "fewer_experts"]


def test_more_than_100_percent_on_a_memory_bound_op_is_read_as_routing_first():
    text = page(REAL_H200)
    assert "the measurement or the peak is wrong" not in text
    routing = section(text, "Routing and Load Balance")
    assert "Its 107.00% of roofline counts the weights of 8 experts per call" in routing
    evidence = _decode_evidence(REAL_H200)
    assert len(evidence) == 2  # the decode-like up and down launches
    up = next(skew for skew in evidence if skew["verdict_source"] == "own")
    passes, uniform, experts = up["implied_passes"], up["uniform_passes"], up["implied_active_experts"]
    assert f"the fastest calls make about {passes['low']} passes" in routing
    assert f"makes {uniform['low']:.0f}–{uniform['high']:.0f} over {up['calls']} calls" in routing
    assert f"those passes are {experts['low']:.0f}–{experts['high']:.0f} of 8 experts" in routing


def test_prefill_compute_bound_durations_are_not_claimed_as_routing_evidence():
    routing = section(page(REAL_H200), "Routing and Load Balance")
    assert "Compute-bound (prefill-like): routing does not change the bound" in routing


def test_routing_balance_is_no_lever_where_concentration_made_decode_faster():
    text = page(REAL_H200)
    assert "Routing balance:" not in section(text, "Optimisation Paths")
    routing = section(text, "Routing and Load Balance")
    assert "evening the routing out would not speed them up" in routing and "expert parallelism" in routing


@pytest.mark.parametrize("name", ALL)
def test_every_recommended_lever_is_worth_one_percent_of_gpu_time(name):
    metrics = fixture_metrics(name)
    paths = section(render(metrics), "Optimisation Paths")
    for line in paths.splitlines():
        if not line.startswith("- ") or line.startswith("- Roofline gaps"):
            continue
        shares = [float(x) for x in re.findall(r"\((\d+\.\d+)% of GPU time\)", line)]
        reach = [float(x) for x in re.findall(r"take (\d+\.\d+)% of GPU time", line)]
        if shares or reach:
            assert max(shares + reach) >= 1.0, line
    small = [line for line in paths.splitlines() if line.startswith("Checked and worth less")]
    for line in small:
        assert all(float(x) < 1.0 for x in re.findall(r"\((\d+\.\d+)%\)", line)), line


def test_rendering_is_pure():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    before = to_json_data(metrics)
    render(metrics)
    assert to_json_data(metrics) == before


def test_the_documented_example_is_what_the_engine_writes(tmp_path):
    out = tmp_path / GPT_OSS_DECODE
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    # Default options, as a user's run: the page links the roofline chart.
    analyse(out, category="moe_unfused")
    example = (out / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")
    doc = (Path(__file__).parents[1] / "docs" / "findings.md").read_text(encoding="utf-8")
    assert f"````markdown\n{example}````\n" in doc, "regenerate the example in docs/findings.md"


def test_the_metrics_json_round_trips(tmp_path):
    metrics = fixture_metrics(REAL_H200)
    assert write_and_check(tmp_path, metrics) == []
    saved = json.loads((tmp_path / "category_data" / "moe_unfused_metrics.json").read_text(encoding="utf-8"))
    assert saved == to_json_data(metrics)


GPTQ = "fam-gptq-awq-qwen3-30b-a3b-mi300x"
FP8_BLOCK = "fam-fp8-blockscale-dsv3-tp8-mi300x"


def test_sglang_fp8_activations_are_quantised_per_128_column_group():
    routing = section(page("fam-sglang-triton-mixtral-fp8-mi300x"), "Routing and Load Balance")
    assert "bf16 activations quantised to FP8, one scale per 128-column group of each token" in routing
    assert "bf16 activations;" not in routing


def test_tokens_are_counted_per_expert_read_not_per_expert():
    # DeepSeek-V3 decode: M=32, top-8 of 256. M·k/E = 1, but the 256 picks fall
    # on 256·(1 − (1 − 8/256)^32) = 163.31 experts: 256 / 163.31 = 1.57 each.
    text = page(FP8_BLOCK)
    assert not re.search(r"(?<![\d.])1 tokens", text)  # "5241 tokens" (a crossover) is not "1 tokens"
    assert "163.31 of 256 experts active per call, serving 1.57 tokens each on average" in text
    assert "(1.57 tokens per expert read)" in section(text, "Optimisation Paths")
    assert "for 1.57 tokens per expert read" in section(text, "Recommendations")


def test_scale_bytes_that_move_no_figure_are_not_reported():
    # DeepSeek-V3's 128x128 block scales add 0.22 MB to 150 MB a call: +0.0%.
    metrics = fixture_metrics(FP8_BLOCK)
    decode = metrics.operations[0].moe
    assert decode is not None and decode.scale_bytes_per_call
    assert decode.scale_bytes_per_call / decode.bytes_per_call < 0.01
    assert "- Scales:" not in section(render(metrics), "Routing and Load Balance")
    assert "- Scales:" in section(page(GPT_OSS_DECODE), "Routing and Load Balance")  # MXFP4: +6.2%


def test_an_action_points_at_a_replay_case_only_when_one_was_written():
    metrics = fixture_metrics(GPT_OSS_DECODE)
    without = section(render(metrics), "Recommendations")
    assert "replay case" not in without
    with_replay = section(render(metrics, replay=ReplayRef("category_findings/x.py", (ReplayCaseRef(1, 0, "torch"),))),
                          "Recommendations")
    actions = [line for line in with_replay.splitlines() if line.startswith("**Action**")]
    assert "starting from its replay case" in actions[0] and "replay case" not in actions[1]


def test_an_fp8_kernel_is_rated_on_the_fp8_peak_and_the_page_opens_with_it():
    text = page("fam-aiter-1stage-llama4-scout-fp8-mi325x")
    overview = section(text, "Overview")
    # fmoe_bf16_pertokenFp8_g1u1: the pipeline wrote matrix_bf16, the kernel multiplies in FP8 (MI325X: 1519).
    assert "matrix compute 1519 TFLOP/s for fp8" in overview and "843" not in overview
    assert "not the bf16 matrix peak of the Compute Spec" in overview
    assert "FP8 compute:" not in text and "8-bit weights:" not in text


def test_phase_shares_are_rounded_once_from_unrounded_times():
    # Qwen3-235B: 4.618 ms decode-like and 2.667 ms prefill-like (rounded); shares from the unrounded
    # times add up to 100%, where rounded ms over rounded total gave 63.38% + 36.60%.
    metrics = fixture_metrics("fam-cktile-two-stage-qwen3-235b-a22b-fp8-tp4-mi300x")
    split = metrics.category_specific.phase_split
    assert (split.decode_pct, split.prefill_pct) == (63.39, 36.61)
    assert "decode-like 4.618 ms (63.39%), prefill-like 2.667 ms (36.61%)" in render(metrics)


def test_the_rest_of_the_table_is_summed_by_the_engine():
    import polars as pl

    from jarvis_moe.engine.category import table_rest

    # The H200 ops' times: with 2 rows shown, #3 and #4 (7.514 + 3.742 ms) of 117.765 ms are the rest.
    figures = pl.DataFrame({"time_ms": [71.377, 35.132, 7.514, 3.742]})
    rest = table_rest(figures, 2)
    assert (rest.signatures, rest.time_ms, rest.percent_of_category) == (2, 11.256, 9.56)
    assert table_rest(figures, 4) is None
