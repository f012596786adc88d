"""The shared figures on cases computed by hand (analysis §1–3).

Numbers in the comments were worked out from the formulas of analysis.md
with the metadata peaks (708 TFLOP/s BF16, 5.3 TB/s) before the code ran.
"""

from __future__ import annotations

import pytest

from conftest import GPT_OSS_DECODE, read_metrics
from csvbuild import OLD_METADATA, write_output_dir
from jarvis_moe.run import analyse

T = "Kernel Time (µs)_"


def _op(metrics, name, index=0):
    return [o for o in metrics["operations"] if o["name"] == name][index]


@pytest.fixture
def older_era(tmp_path):
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
    out = write_output_dir(tmp_path / "older", rows, metadata=OLD_METADATA)
    result = analyse(out, category="moe_fused", scope="standalone")
    assert result.status.value == "OK", result.message
    return read_metrics(out, "moe_fused")


def test_category_figures_add_up(older_era):
    assert older_era["total_time_ms"] == 56.0
    assert older_era["percent_of_compute"] == 56.0
    assert older_era["operation_count"] == 164
    assert [o["time_ms"] for o in older_era["operations"]] == [40.0, 10.0, 5.0, 1.0]


def test_roofline_computed_when_the_pipeline_has_none(older_era):
    big = _op(older_era, "vllm::rocm_aiter_fused_moe", 0)["efficiency"]
    assert big["efficiency_percent"] == pytest.approx(49.46, abs=0.005)
    assert big["bound_type"] == "memory"
    assert big["tflops_achieved"] == 25.0  # 10 GFLOP / 400 µs
    assert big["tb_s_achieved"] == 2.62  # 1000 MiB * 1.048576 / 400 µs
    assert big["flops_per_byte"] == pytest.approx(9.54, abs=0.005)
    assert big["resolved_peak_maf"] == 708
    small = _op(older_era, "vllm::rocm_aiter_fused_moe", 1)["efficiency"]
    assert small["efficiency_percent"] == pytest.approx(28.25, abs=0.005)
    assert small["bound_type"] == "compute"


def test_anomalous_op_is_flagged_and_not_quantified(older_era):
    op = _op(older_era, "aiter::fmoe_x")
    assert op["efficiency"]["is_anomaly"] is True
    assert "150.00%" in op["efficiency"]["warning"]
    est = [e for e in older_era["impact_estimates"] if e["operation"] == "aiter::fmoe_x"]
    assert [e["estimate_method"] for e in est] == ["heuristic"]


def test_findings_grouped_and_ranked_by_hand(older_era):
    got = [
        (f["rank"], f["bound_type"], f["library"], f["eff_bucket"], f["estimate_method"],
         f["impact_score_low"], f["impact_score"], f["impact_score_high"], f["member_count"])
        for f in older_era["category_findings"]
    ]
    assert got == [
        # gap 0.50539 x 40 % = 20.22 high
        (1, "memory", "AITER", "30-60", "quantified", 15.16, 17.69, 20.22, 1),
        # gap 0.71751 x 5 % = 3.59 high
        (2, "compute", "AITER", "0-30", "quantified", 2.69, 3.14, 3.59, 1),
        (3, None, "Unknown", "unmodeled", "heuristic", 1.5, 3.0, 4.5, 1),
        # the anomaly's heuristic group (mid 0.3) falls under the 0.5 cut
    ]


@pytest.fixture
def comparative(tmp_path):
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
    out = write_output_dir(tmp_path / "cmp", rows, metadata=meta)
    result = analyse(out, category="moe_fused", scope="comparative")
    assert result.status.value == "OK", result.message
    return read_metrics(out, "moe_fused")


def test_comparative_efficiency_is_floored_at_trace1_roofline(comparative):
    op = _op(comparative, "vllm::rocm_aiter_fused_moe")
    assert op["efficiency"]["efficiency_percent"] == 40.0
    assert "floored" in op["efficiency"]["warning"]
    assert op["t2_time_ms"] == 5.0
    assert op["difference_ms"] == -15.0
    assert op["count_trace2"] == 10
    assert _op(comparative, "triton_moe")["efficiency"]["efficiency_percent"] == 90.0


def test_comparative_findings_group_by_bound_and_library(comparative):
    got = [(f["bound_type"], f["library"], f["eff_bucket"], f["impact_score_low"], f["impact_score"],
            f["impact_score_high"]) for f in comparative["category_findings"]]
    # 0.6 gap x 40 % share; 0.1 gap x 20 % share
    assert got == [("memory", "AITER", "all", 18.0, 21.0, 24.0), ("compute", "Triton", "all", 1.5, 1.75, 2.0)]
    assert all(e["estimate_method"] == "quantified" for e in comparative["impact_estimates"])


def test_fp4_on_a_platform_without_fp4_is_rated_against_bf16(fixture_copy):
    out = fixture_copy(GPT_OSS_DECODE)
    analyse(out, category="moe_unfused", scope="standalone")
    m = read_metrics(out, "moe_unfused")
    by_name = {o["name"]: o for o in m["operations"]}
    down = by_name["pseudo_op::moe_triton_unfused_down"]["efficiency"]
    up = by_name["pseudo_op::moe_triton_unfused_up"]["efficiency"]
    # 142.93 MiB at 5.3 TB/s = 28.28 µs of a 156.74 µs call; 284.92 MiB -> 56.37 of 136.36 µs.
    assert down["efficiency_percent"] == pytest.approx(18.04, abs=0.005)
    assert up["efficiency_percent"] == pytest.approx(41.34, abs=0.005)
    for eff in (down, up):
        assert eff["compute_spec"] == "matrix_fp4"
        assert eff["substituted_compute_spec"] == "matrix_bf16"
        assert eff["resolved_peak_maf"] == 708
        assert "no matrix_fp4 peak" in eff["warning"]
    assert [f["impact_score"] for f in m["category_findings"]] == [25.11, 15.64]
    payoff = m["category_specific"]["fusion_payoff"]
    assert payoff["intermediate_bytes_per_call"] == 2 * 32 * 4 * 3072 * 2
    assert payoff["calls"] == 24


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
    out = write_output_dir(tmp_path / "subst", rows)
    analyse(out, category="moe_fused", scope="standalone")
    m = read_metrics(out, "moe_fused")
    a = _op(m, "moe_a")["efficiency"]
    assert (a["resolved_peak_maf"], a["substituted_compute_spec"]) == (1273, "matrix_fp8")
    assert a["efficiency_percent"] == pytest.approx(25.0, abs=0.005)
    assert a["bound_type"] == "compute"
    b = _op(m, "moe_b")["efficiency"]
    assert b["resolved_peak_maf"] is None and b["efficiency_percent"] is None
    assert "no compute peak" in b["warning"]
    est = {e["operation"]: e for e in m["impact_estimates"]}
    assert est["moe_b"]["estimate_method"] == "heuristic"
    assert (est["moe_b"]["impact_score_low"], est["moe_b"]["impact_score"], est["moe_b"]["impact_score_high"]) == (0.6, 1.2, 1.8)


def test_unknown_e2e_gives_shares_of_zero_and_no_findings(tmp_path):
    meta = {"platform": "X", "peak_hbm_bw_tbs": 2.0, "max_achievable_tflops": {"matrix_bf16": 100}}
    rows = [{"name": "moe", T + "sum": 1000, "operation_count": 2, "Pct Roofline_mean": 10,
             "Roofline Bound": "MEMORY_BOUND"}]
    out = write_output_dir(tmp_path / "noe2e", rows, metadata=meta)
    assert analyse(out, category="moe_fused", scope="standalone").status.value == "OK"
    m = read_metrics(out, "moe_fused")
    assert m["percent_of_compute"] == 0
    assert m["operations"][0]["percent_of_total"] is None
    assert m["category_findings"] == [] and m["impact_estimates"] == []
    assert m["category_specific"]["significance"]["position"] == "unknown"


def test_variance_only_for_frequent_ops_with_a_real_share(tmp_path):
    rows = [
        # 11 calls, 20 % of E2E: cov = 300 / 200 = 1.5 > 1.0
        {"name": "often", T + "sum": 20000, T + "mean": 200, T + "std": 300, "operation_count": 11},
        # 10 calls only: no variance figure even with a large spread
        {"name": "rare", T + "sum": 20000, T + "mean": 200, T + "std": 300, "operation_count": 10},
    ]
    out = write_output_dir(tmp_path / "var", rows)
    analyse(out, category="moe_fused", scope="standalone")
    m = read_metrics(out, "moe_fused")
    assert (_op(m, "often")["cov"], _op(m, "often")["high_variance"]) == (1.5, True)
    assert (_op(m, "rare")["cov"], _op(m, "rare")["high_variance"]) == (None, False)


def test_a_warning_shared_by_several_ops_is_listed_once(fixture_copy):
    out = fixture_copy(GPT_OSS_DECODE)
    analyse(out, category="moe_unfused", scope="standalone")
    warnings = read_metrics(out, "moe_unfused")["warnings"]
    substitution = [w for w in warnings if "no matrix_fp4 peak" in w]
    assert len(substitution) == 1
    assert "moe_triton_unfused_down" in substitution[0] and "moe_triton_unfused_up" in substitution[0]
