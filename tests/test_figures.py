"""The shared per-op figures of analysis §1–3 on cases computed by hand.

Numbers in the comments were worked out from the formulas of analysis.md
with the metadata peaks (708 TFLOP/s BF16, 1273 FP8, 5.3 TB/s) before the
code ran. Every frame is a validated ops frame: a CSV written to a
temporary directory and read back through ``load_inputs``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from conftest import GPT_OSS_DECODE, read_metrics
from csvbuild import OLD_METADATA, write_output_dir
from jarvis_moe.engine import impact
from jarvis_moe.engine.category import significance
from jarvis_moe.engine.figures import KERNEL_DTYPE
from jarvis_moe.engine.contract import CategoryPaths, Metadata
from jarvis_moe.engine.figures import POSITION, category_figures, ranked_figures
from jarvis_moe.engine.peaks import PeakChoice, resolve_peak
from jarvis_moe.engine.load import Inputs, load_inputs
from jarvis_moe.manifest import default_options
from jarvis_moe.options import build_options
from jarvis_moe.run import analyse

FIXTURES = Path(__file__).parent / "fixtures"
T = "Kernel Time (µs)_"
OPTIONS = build_options(default_options("moe_fused"))


def load(root: Path, category: str = "moe_fused") -> Inputs:
    inputs = load_inputs(CategoryPaths(root, category))
    assert inputs is not None
    return inputs


def figures_of(inputs: Inputs, scope: str = "standalone") -> pl.DataFrame:
    return ranked_figures(inputs.frame, inputs.metadata, scope=scope, options=OPTIONS).frame()


def by_name(figures: pl.DataFrame, name: str, index: int = 0) -> dict[str, Any]:
    return figures.filter(pl.col("name") == name).row(index, named=True)


def findings(figures: pl.DataFrame, inputs: Inputs, scope: str = "standalone") -> list[tuple]:
    est = impact.estimates(figures, scope=scope, e2e_ms=inputs.metadata.e2e_time_ms)
    return [(f["rank"], f["bound_type"], f["library"], f["eff_bucket"], f["estimate_method"],
             f["impact_score_low"], f["impact_score"], f["impact_score_high"], f["member_count"])
            for f in impact.findings(est, max_members=5)]


# --- an older pipeline's file ---------------------------------------------------------


@pytest.fixture(scope="module")
def older_era(tmp_path_factory) -> tuple[Inputs, pl.DataFrame]:
    """Older pipeline: no roofline columns, a scalar BF16 peak, 100 ms E2E."""
    rows = [
        # 40 ms, 400 µs a call; 10 GFLOP and 1000 MiB a call:
        # bytes at peak 1000*1.048576/5.3 = 197.84 µs -> 49.46 % memory-bound.
        {"name": "vllm::rocm_aiter_fused_moe", T + "sum": 40000, T + "mean": 400, "operation_count": 100,
         "GFLOPS": 10, "Data Moved (MB)": 1000, "Compute Spec": "matrix_bf16",
         "Input Dims": "((32, 4096), (8, 28672, 4096), (8, 4096, 14336), (32, 2), (32, 2))"},
        # No perf model: 10 ms = 10 % of E2E -> heuristic 1.5 / 3.0 / 4.5.
        {"name": "custom::moe_op", T + "sum": 10000, T + "mean": 200, "operation_count": 50},
        # 100 GFLOP, 100 MiB, 500 µs a call: 141.24 µs at peak -> 28.25 % compute-bound.
        {"name": "vllm::rocm_aiter_fused_moe", T + "sum": 5000, T + "mean": 500, "operation_count": 10,
         "GFLOPS": 100, "Data Moved (MB)": 100, "Compute Spec": "matrix_bf16",
         "Input Dims": "((4096, 4096), (8, 28672, 4096), (8, 4096, 14336), (4096, 2), (4096, 2))"},
        # 375 µs at peak for a 250 µs call: 150 % of roofline, an anomaly.
        {"name": "aiter::fmoe_x", T + "sum": 1000, T + "mean": 250, "operation_count": 4,
         "GFLOPS": 265.5, "Data Moved (MB)": 1, "Compute Spec": "matrix_bf16"},
    ]
    inputs = load(write_output_dir(tmp_path_factory.mktemp("older"), rows, metadata=OLD_METADATA))
    return inputs, figures_of(inputs)


def test_category_figures_add_up(older_era):
    inputs, figures = older_era
    assert category_figures(figures, inputs.metadata) == {
        "total_time_ms": 56.0, "percent_of_compute": 56.0, "operation_count": 164}
    assert figures.get_column("time_ms").to_list() == [40.0, 10.0, 5.0, 1.0]
    assert figures.get_column("pct_category").to_list() == pytest.approx([40 / 0.56, 10 / 0.56, 5 / 0.56, 1 / 0.56])


def test_figures_point_back_to_their_input_rows(older_era):
    inputs, figures = older_era
    assert figures.get_column(POSITION).to_list() == [0, 1, 2, 3]
    for row in figures.iter_rows(named=True):
        assert inputs.frame.get_column("name")[row[POSITION]] == row["name"]
    # The long literal cells stay in the input frame.
    assert "Input Dims" not in figures.columns and "call_stack_full" not in figures.columns


def test_roofline_computed_when_the_pipeline_has_none(older_era):
    _, figures = older_era
    big = by_name(figures, "vllm::rocm_aiter_fused_moe", 0)
    assert big["efficiency"] == pytest.approx(49.46, abs=0.005)
    assert (big["bound"], big["eff_source"]) == ("memory", "computed")
    assert big["tflops"] == 25.0  # 10 GFLOP / 400 µs
    assert round(big["tbs"], 2) == 2.62  # 1000 MiB * 1.048576 / 400 µs
    assert big["fpb"] == pytest.approx(9.54, abs=0.005)
    assert (big["peak_tflops"], big["peak_tbs"], big["substituted_spec"], big["peak_warning"]) == (
        708, 5.3, None, None)
    assert (big["family"], big["library"], big["num_tokens"]) == ("aiter_fused_1stage", "AITER", 32)
    small = by_name(figures, "vllm::rocm_aiter_fused_moe", 1)
    assert small["efficiency"] == pytest.approx(28.25, abs=0.005)
    assert (small["bound"], small["num_tokens"]) == ("compute", 4096)


def test_op_without_a_perf_model_has_no_efficiency(older_era):
    _, figures = older_era
    op = by_name(figures, "custom::moe_op")
    assert (op["efficiency"], op["bound"], op["eff_source"], op["tflops"]) == (None, None, None, None)
    assert (op["family"], op["library"], op["mean_us"], op["count"]) == (None, "Unknown", 200.0, 50)


def test_anomalous_op_is_flagged(older_era):
    _, figures = older_era
    op = by_name(figures, "aiter::fmoe_x")
    assert op["efficiency"] == pytest.approx(150.0)
    assert op["is_anomaly"] is True and op["over_100"] is True
    assert by_name(figures, "vllm::rocm_aiter_fused_moe")["is_anomaly"] is False


def test_findings_grouped_and_ranked_by_hand(older_era):
    inputs, figures = older_era
    assert findings(figures, inputs) == [
        # gap 0.50539 x 40 % = 20.22 high
        (1, "memory", "AITER", "30-60", "quantified", 15.16, 17.69, 20.22, 1),
        # gap 0.71751 x 5 % = 3.59 high
        (2, "compute", "AITER", "0-30", "quantified", 2.69, 3.14, 3.59, 1),
        (3, "unmodeled", "Unknown", "unknown", "heuristic", 1.5, 3.0, 4.5, 1),
        # the anomaly's heuristic group (mid 0.3) falls under the 0.5 cut
    ]
    est = impact.estimates(figures, scope="standalone", e2e_ms=inputs.metadata.e2e_time_ms)
    anomaly = est.filter(pl.col("name") == "aiter::fmoe_x").row(0, named=True)
    assert (anomaly["estimate_method"], anomaly["impact_score"]) == ("heuristic", 0.3)


# --- comparative scope ------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparative(tmp_path_factory) -> tuple[Inputs, pl.DataFrame]:
    rows = [
        # trace 2 is 4x faster (25 %), floored at the 40 % trace-1 roofline.
        {"name": "vllm::rocm_aiter_fused_moe", T + "sum": 20000, "operation_count": 10,
         "Compute Spec": "matrix_fp8", "Roofline Bound": "MEMORY_BOUND", "Pct Roofline_mean": 40,
         "delta_us (trace2 - trace1)": -15000, "lca_count_trace2": 10},
        # only the speedup column: t2 = 0.9 t1 -> 90 %.
        {"name": "triton_moe", T + "sum": 10000, "operation_count": 5, "Roofline Bound": "COMPUTE_BOUND",
         "Pct Roofline_mean": 80, "speedup (trace2/trace1)": 0.9},
        # no efficiency at all: no estimate in comparative scope
        {"name": "mystery", T + "sum": 5000, "operation_count": 1},
    ]
    meta = {"platform": "MI300X", "peak_hbm_bw_tbs": 5.3,
            "max_achievable_tflops": {"matrix_bf16": 708, "matrix_fp8": 1273},
            "gpu_utilization": {"total_time_ms": 50.0}}
    inputs = load(write_output_dir(tmp_path_factory.mktemp("cmp"), rows, metadata=meta))
    return inputs, figures_of(inputs, "comparative")


def test_comparative_efficiency_is_floored_at_trace1_roofline(comparative):
    _, figures = comparative
    op = by_name(figures, "vllm::rocm_aiter_fused_moe")
    assert (op["efficiency"], op["eff_roofline"], op["clamped"], op["eff_source"]) == (40.0, 40.0, True, "comparative")
    assert (op["t2_us"], op["count_trace2"], op["bound"]) == (5000.0, 10.0, "memory")
    fast = by_name(figures, "triton_moe")
    assert (fast["efficiency"], fast["clamped"], fast["t2_us"]) == (pytest.approx(90.0), False, pytest.approx(9000.0))
    mystery = by_name(figures, "mystery")
    assert (mystery["efficiency"], mystery["t2_us"], mystery["eff_source"]) == (None, None, None)


def test_standalone_scope_ignores_trace2(comparative):
    inputs, _ = comparative
    op = by_name(figures_of(inputs, "standalone"), "vllm::rocm_aiter_fused_moe")
    assert (op["efficiency"], op["clamped"], op["t2_us"], op["eff_source"]) == (40.0, False, None, "pct_roofline")


def test_comparative_findings_group_by_bound_and_library(comparative):
    inputs, figures = comparative
    # 0.6 gap x 40 % share; 0.1 gap x 20 % share
    assert findings(figures, inputs, "comparative") == [
        (1, "memory", "AITER", "all", "quantified", 18.0, 21.0, 24.0, 1),
        (2, "compute", "Triton", "all", "quantified", 1.5, 1.75, 2.0, 1),
    ]


# --- peaks --------------------------------------------------------------------------------

META = Metadata(platform="MI300X", peak_hbm_bw_tbs=5.3,
                max_achievable_tflops={"matrix_bf16": 708, "matrix_fp8": 1273, "matrix_fp4": 0})


def test_resolve_peak_uses_the_spec_then_the_activation_dtype():
    assert resolve_peak("matrix_fp8", "bf16", META) == PeakChoice(1273, None, None, "compute_spec")
    # No spec: the activation dtype's peak, without a warning.
    assert resolve_peak(None, "bf16", META) == PeakChoice(708, "matrix_bf16", None, "activation_dtype")
    # A zero peak is "not available": fp4 falls back to the activations' fp8.
    choice = resolve_peak("matrix_fp4", "fp8", META)
    assert (choice.peak, choice.substituted_spec) == (1273, "matrix_fp8")
    assert choice.warning is not None and "MI300X has no fp4 matrix peak" in choice.warning
    assert "1273 TFLOP/s" in choice.warning


def test_the_kernels_own_dtype_chooses_the_peak():
    # fmoe_bf16_pertokenFp8_g1u1 multiplies in FP8 although its op says matrix_bf16.
    choice = resolve_peak("matrix_bf16", "bf16", META, "fp8")
    assert (choice.peak, choice.substituted_spec, choice.basis) == (1273, "matrix_fp8", "kernel_name")
    assert "not the bf16 matrix peak of its Compute Spec" in choice.warning
    # matmul_ogs bf16xbf16xfp8 dequantises FP8 weights and multiplies in bf16.
    assert resolve_peak("matrix_fp8", "bf16", META, "bf16").peak == 708
    # Agreeing names change nothing.
    assert resolve_peak("matrix_fp8", "bf16", META, "fp8") == PeakChoice(1273, None, None, "compute_spec")


@pytest.mark.parametrize(("name", "kernel", "dtype"), [
    ("pseudo_op::moe_aiter_fused_1stage", "aiter::fmoe_bf16_pertokenFp8_g1u1_vs_tkw1_silu_1tg_32x512", "fp8"),
    ("aiter::fmoe_fp8_g1u1", "aiter::fmoe_g1u1_x", "fp8"),
    ("pseudo_op::moe_triton_unfused_up", "_matmul_ogs_NNT_bf16xbf16xfp8_16x128x256x1_swiglu", "bf16"),
    ("pseudo_op::moe_triton_unfused_up", "_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1", "bf16"),
    ("sglang::fused_moe", "fused_moe_kernel", None),
])
def test_kernel_names_say_what_they_compute_in(name, kernel, dtype):
    said = f"{name}\n{kernel}".lower()
    found = re.search(KERNEL_DTYPE["16-bit"], said)
    got = found.group(1) if found else ("fp8" if re.search(KERNEL_DTYPE["fp8"], said) else None)
    assert got == dtype


def test_same_fp8_kernel_same_peak_on_every_page():
    inputs = load(FIXTURES / "fam-aiter-1stage-llama4-scout-fp8-mi325x", "moe_fused")
    figures = figures_of(inputs)
    # The pipeline wrote matrix_bf16; the kernel quantises per token and multiplies in FP8 (MI325X: 1519).
    assert set(figures.get_column("peak_tflops").to_list()) == {1519.0}
    assert set(figures.get_column("peak_basis").to_list()) == {"kernel_name"}


def test_resolve_peak_without_any_usable_peak():
    choice = resolve_peak("matrix_int4", "Int", META)
    assert (choice.peak, choice.substituted_spec) == (None, None)
    assert choice.warning == "no compute peak for matrix_int4 or matrix_Int; efficiency is left unknown"
    assert resolve_peak("  ", None, META).warning == (
        "no compute peak for an unknown compute spec; efficiency is left unknown")


def test_older_metadata_has_one_bf16_peak_for_every_spec():
    old = Metadata(platform="MI300X", peak_hbm_bw_tbs=5.3, peak_bf16_maf_tflops=708)
    assert resolve_peak("matrix_bf16", "bf16", old) == PeakChoice(708, None, None)
    assert resolve_peak(None, None, old) == PeakChoice(708, None, None)
    choice = resolve_peak("matrix_fp8", "fp8", old)
    assert (choice.peak, choice.substituted_spec) == (708, "matrix_bf16")
    assert "older pipeline" in choice.warning


def test_fp4_on_a_platform_without_fp4_is_rated_against_bf16():
    inputs = load(FIXTURES / GPT_OSS_DECODE, "moe_unfused")
    figures = figures_of(inputs)
    down = by_name(figures, "pseudo_op::moe_triton_unfused_down")
    up = by_name(figures, "pseudo_op::moe_triton_unfused_up")
    # 142.93 MiB at 5.3 TB/s = 28.28 µs of a 156.74 µs call; 284.92 MiB -> 56.37 of 136.36 µs.
    assert down["efficiency"] == pytest.approx(18.04, abs=0.005)
    assert up["efficiency"] == pytest.approx(41.34, abs=0.005)
    assert (down["family"], up["family"]) == ("triton_matmul_ogs_down", "triton_matmul_ogs_up")
    for op in (down, up):
        assert (op["spec"], op["substituted_spec"], op["peak_tflops"], op["act_dtype"]) == (
            "matrix_fp4", "matrix_bf16", 708, "bf16")
        assert "has no fp4 matrix peak" in op["peak_warning"]
        assert (op["library"], op["bound"], op["num_tokens"]) == ("Triton", "memory", 32)
    assert [f[6] for f in findings(figures, inputs)] == [25.11, 15.64]


def test_peak_substitution_follows_the_activation_dtype(tmp_path):
    rows = [
        # no matrix_fp4 peak; first input fp8 -> the matrix_fp8 peak (1273).
        # 1273 TFLOP/s: 127.3 GFLOP take 100 µs at peak, the call takes 400 µs -> 25 %.
        {"name": "moe_a", T + "sum": 4000, T + "mean": 400, "operation_count": 10, "GFLOPS": 127.3,
         "Data Moved (MB)": 1, "Compute Spec": "matrix_fp4",
         "Input type": "('c10::Float8_e4m3fnuz', 'c10::Float4_e2m1fn_x2')"},
        # neither the spec nor the activation dtype has a peak: efficiency unknown,
        # estimated from its share (4 ms of 100 ms -> 0.6 / 1.2 / 1.8).
        {"name": "moe_b", T + "sum": 4000, T + "mean": 400, "operation_count": 10, "GFLOPS": 1,
         "Data Moved (MB)": 1, "Compute Spec": "matrix_int4", "Input type": "('Int',)"},
    ]
    inputs = load(write_output_dir(tmp_path / "subst", rows))
    figures = figures_of(inputs)
    a = by_name(figures, "moe_a")
    assert (a["peak_tflops"], a["substituted_spec"], a["act_dtype"], a["bound"]) == (
        1273, "matrix_fp8", "fp8", "compute")
    assert a["efficiency"] == pytest.approx(25.0, abs=0.005)
    b = by_name(figures, "moe_b")
    assert (b["peak_tflops"], b["efficiency"], b["bound"]) == (None, None, None)
    assert "no compute peak" in b["peak_warning"]
    est = impact.estimates(figures, scope="standalone", e2e_ms=inputs.metadata.e2e_time_ms)
    moe_b = est.filter(pl.col("name") == "moe_b").row(0, named=True)
    assert moe_b["estimate_method"] == "heuristic"
    assert (moe_b["impact_score_low"], moe_b["impact_score"], moe_b["impact_score_high"]) == (0.6, 1.2, 1.8)


# --- E2E time, variance -------------------------------------------------------------------


def test_unknown_e2e_gives_shares_of_zero_and_no_estimates(tmp_path):
    meta = {"platform": "X", "peak_hbm_bw_tbs": 2.0, "max_achievable_tflops": {"matrix_bf16": 100}}
    rows = [{"name": "moe", T + "sum": 1000, "operation_count": 2, "Pct Roofline_mean": 10,
             "Roofline Bound": "MEMORY_BOUND"}]
    inputs = load(write_output_dir(tmp_path / "noe2e", rows, metadata=meta))
    assert any("total_time_ms is missing" in w for w in inputs.warnings)
    figures = figures_of(inputs)
    op = figures.row(0, named=True)
    assert (op["pct_total"], op["pct_category"], op["efficiency"], op["bound"]) == (None, 100.0, 10.0, "memory")
    assert category_figures(figures, inputs.metadata) == {
        "total_time_ms": 1.0, "percent_of_compute": 0, "operation_count": 2}
    assert impact.estimates(figures, scope="standalone", e2e_ms=inputs.metadata.e2e_time_ms).height == 0
    assert significance(None, OPTIONS.significance_band_low_pct, OPTIONS.significance_band_high_pct).position == (
        "unknown")


def test_variance_only_for_frequent_ops_with_a_real_share(tmp_path):
    rows = [
        # 11 calls, 20 % of E2E: cov = 300 / 200 = 1.5 > 1.0
        {"name": "often", T + "sum": 20000, T + "mean": 200, T + "std": 300, "operation_count": 11},
        # 10 calls only: no variance figure even with a large spread
        {"name": "rare", T + "sum": 20000, T + "mean": 200, T + "std": 300, "operation_count": 10},
        # 11 calls but 4 % of E2E, under the 5 % floor
        {"name": "small", T + "sum": 4000, T + "mean": 200, T + "std": 300, "operation_count": 11},
        # 11 calls, 20 %, cov 0.5: a figure, not high
        {"name": "steady", T + "sum": 20000, T + "mean": 200, T + "std": 100, "operation_count": 11},
    ]
    figures = figures_of(load(write_output_dir(tmp_path / "var", rows)))
    got = {r["name"]: (r["cov"], r["high_variance"]) for r in figures.iter_rows(named=True)}
    assert got == {"often": (1.5, True), "rare": (None, False), "small": (None, False), "steady": (0.5, False)}


def test_mean_and_count_fall_back_to_the_time_sum(tmp_path):
    rows = [{"name": "a", T + "sum": 900, "operation_count": 3},
            {"name": "b", T + "sum": 500}]
    figures = figures_of(load(write_output_dir(tmp_path / "means", rows)))
    assert (by_name(figures, "a")["mean_us"], by_name(figures, "a")["count"]) == (300.0, 3)
    assert (by_name(figures, "b")["mean_us"], by_name(figures, "b")["count"]) == (500.0, 1)


# --- family rows ---------------------------------------------------------------------------


def test_a_family_row_names_its_library_even_where_the_rules_do_not():
    # FlyDSL kernels ("moe_gemm1_0") match no library rule; the family row says AITER.
    inputs = load(FIXTURES / "fam-flydsl-two-stage-glm45-air-fp8-mi325x", "moe_unfused")
    figures = figures_of(inputs)
    assert set(figures.get_column("family")) == {"aiter_flydsl_up", "aiter_flydsl_down"}
    assert set(figures.get_column("library")) == {"AITER"}
    assert sorted(figures.get_column("num_tokens")) == [16, 16, 8192, 8192]


# --- downstream of the figures: one real run -------------------------------------------------


def test_the_gpt_oss_run_lists_its_warning_once_and_prices_the_fusion(tmp_path):
    out = tmp_path / GPT_OSS_DECODE
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    assert analyse(out, category="moe_unfused", scope="standalone").status.value == "OK"
    metrics = read_metrics(out, "moe_unfused")
    substitution = [w for w in metrics["warnings"] if "has no fp4 matrix peak" in w]
    assert len(substitution) == 1
    assert "moe_triton_unfused_down" in substitution[0] and "moe_triton_unfused_up" in substitution[0]
    payoff = metrics["category_specific"]["fusion_payoff"]
    # 2·M·k·N·2 bytes for bf16: the intermediate written by up, read by down.
    assert payoff["intermediate_bytes_per_call"] == 2 * 32 * 4 * 3072 * 2
    assert payoff["calls"] == 24


def test_an_op_whose_efficiency_is_known_is_not_told_it_is_unknown(tmp_path):
    rows = [{"name": "triton_moe", T + "sum": 10000, "operation_count": 5, "Roofline Bound": "COMPUTE_BOUND",
             "Pct Roofline_mean": 80}]
    out = write_output_dir(tmp_path / "pct", rows)
    assert analyse(out, category="moe_fused", scope="standalone").status.value == "OK"
    op = read_metrics(out, "moe_fused")["operations"][0]
    assert op["efficiency"]["efficiency_percent"] == 80.0
    assert not any("efficiency is left unknown" in w for w in op["warnings"])
