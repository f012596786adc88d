"""Metrics dicts shaped like the analysis engine's output, for writer tests.

The Mixtral samples start from the fixtures' ``expected/`` JSON (the figures
the rest of the pipeline computes) and add this project's extension keys.
The gpt-oss sample is the real decode trace in
``fixtures/gpt-oss-20b-mi300x-decode-bs32`` worked by hand: two Triton
kernels with mxfp4 weights on MI300X, which has no FP4 peak, so the bf16
matrix peak stands in. ``with_findings`` applies the grouping rules of
analysis.md §3 so hand-built samples stay self-consistent.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from jarvis_moe.text import display_text

FIXTURES = Path(__file__).parent / "fixtures"

DEFAULT_OPTIONS = {"max_table_ops": 15, "max_finding_members": 50, "decode_max_tokens": 256}


def _band(eff: float) -> str:
    return "0-30" if eff < 30 else "30-60" if eff < 60 else "60-100"


def with_findings(metrics: dict[str, Any]) -> dict[str, Any]:
    """Fill ``impact_estimates`` and ``category_findings`` from the ops (§3)."""
    comparative = metrics.get("comparison_scope") == "comparative"
    e2e = metrics.get("e2e_time_ms")
    estimates = []
    for op in metrics["operations"]:
        eff = op.get("efficiency") or {}
        pct, t = eff.get("efficiency_percent"), op["time_ms"]
        base = {"operation": op["display_name"], "category": metrics["category"],
                "bound_type": eff.get("bound_type"), "library": op.get("library"), "time_ms": t}
        if pct is not None and not eff.get("is_anomaly") and e2e:
            gap = max(0.0, 1 - pct / 100)
            high = gap * t / e2e * 100
            if high < 0.01:
                continue
            estimates.append({**base, "type": "kernel_tuning", "estimate_method": "quantified",
                              "impact_score": round(0.875 * high, 2),
                              "impact_score_low": round(0.75 * high, 2),
                              "impact_score_high": round(high, 2), "efficiency_pct": pct})
        elif not comparative and op.get("percent_of_total") is not None:
            share = op["percent_of_total"]
            estimates.append({**base, "type": "unmodeled_significant", "estimate_method": "heuristic",
                              "impact_score": round(share * 0.30, 2),
                              "impact_score_low": round(share * 0.15, 2),
                              "impact_score_high": round(share * 0.45, 2),
                              "efficiency_pct": None, "percent_of_total": share})
    groups: dict[tuple, list[dict]] = {}
    for est in estimates:
        if est["estimate_method"] == "heuristic":
            key: tuple = ("heuristic", est["operation"])
        elif comparative:
            key = (est["bound_type"], est["library"], "all")
        else:
            key = (est["bound_type"], est["library"], _band(est["efficiency_pct"]))
        groups.setdefault(key, []).append(est)
    findings = []
    cap = metrics.get("options", {}).get("max_finding_members", 50)
    for key, members in groups.items():
        members.sort(key=lambda m: -m["impact_score"])
        mid = round(sum(m["impact_score"] for m in members), 2)
        if mid < 0.5:
            continue
        first = members[0]
        findings.append({
            "bound_type": first["bound_type"], "library": first["library"],
            "eff_bucket": None if key[0] == "heuristic" else key[2],
            "estimate_method": first["estimate_method"], "impact_score": mid,
            "impact_score_low": round(sum(m["impact_score_low"] for m in members), 2),
            "impact_score_high": round(sum(m["impact_score_high"] for m in members), 2),
            "member_count": len(members), "members": members[:cap],
        })
    findings.sort(key=lambda f: -f["impact_score"])
    for rank, f in enumerate(findings, 1):
        f["rank"] = rank
    metrics["impact_estimates"] = estimates
    metrics["category_findings"] = findings
    return metrics


def _expected(folder: str) -> dict[str, Any]:
    path = FIXTURES / folder / "expected" / "moe_fused_metrics.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _mixtral_extensions(metrics: dict[str, Any]) -> dict[str, Any]:
    """The extension keys for the synthetic Mixtral fixture (E=8, top-2, M=16)."""
    metrics.update({"e2e_time_ms": 39.431, "platform": "MI300X", "operations_total": 1,
                    "operations_omitted": 0, "warnings": [], "options": dict(DEFAULT_OPTIONS)})
    op = metrics["operations"][0]
    op["display_name"] = display_text(op["name"])
    op["efficiency"].update({"substituted_compute_spec": None, "efficiency_source":
                             "comparative" if metrics["comparison_scope"] == "comparative" else "pct_roofline"})
    if metrics["comparison_scope"] == "comparative":
        op["speedup_pct"] = 32.69
    op["warnings"] = []
    op["moe"] = {
        "num_tokens": 16, "hidden_dim": 4096, "inter_dim": 14336, "num_experts": 8, "topk": 2,
        "gated": True, "shape_source": "input_dims", "kind": "fused", "tokens_per_expert": 4.0,
        "active_experts": {"low": 2, "expected": 7.2, "high": 8},
        "efficiency_interval": {"low": 13.55, "high": 54.19}, "crossover_tokens": 547,
        "crossover_note": None, "padding_waste_pct": 72.22, "padding_block_rows": 16,
        "phase": "decode", "skew": {"max_over_median": 1.18, "cov": 0.113, "flagged": False},
        "flops_per_call": 11274289152, "weight_dtype": "bf16", "input_dtype": "bf16",
    }
    metrics["category_specific"].update({
        "significance": {"percent_of_compute": 88.59, "band_low_pct": 20, "band_high_pct": 40,
                         "position": "above",
                         "statement": "MoE takes 88.59% of GPU time, above the 20–40% typical of MoE models."},
        "layer_structure": {"source": "call_stack",
                            "module_chains": [{"chain": ["MoEModel", "DecoderLayer", "FusedMoE"],
                                               "signatures": 1, "time_ms": 34.932}],
                            "launchers": ["vllm::rocm_aiter_fused_moe"], "signature_count": 1,
                            "layer_types": ["FusedMoE"]},
        "phase_split": {"decode_ms": 34.932, "prefill_ms": 0.0, "unknown_ms": 0.0},
        "limits": ["Cannot assess expert load balance from trace data.",
                   "Per-expert token counts and routing quality are not in a kernel trace."],
    })
    return metrics


def mixtral_standalone() -> dict[str, Any]:
    """The synthetic Mixtral fused-MoE decode trace, standalone scope."""
    return _mixtral_extensions(_expected("synthetic-mixtral-decode-bf16"))


def mixtral_comparative() -> dict[str, Any]:
    """The same trace compared with a faster second trace."""
    return _mixtral_extensions(_expected("synthetic-mixtral-decode-bf16-vs-faster"))


_GPT_OSS_CHAIN = ["GptOssForCausalLM", "GraphModule"]
_SUBSTITUTION = ("MI300X has no matrix_fp4 peak; the op is rated against the matrix_bf16 peak "
                 "(708 TFLOP/s) of its activation dtype, as the kernel computes on dequantised "
                 "weights; weight bytes are kept as measured")
_GPT_OSS_CALLS = ["nn.Module: GptOssForCausalLM", "vllm/model_executor/models/gpt_oss.py(293): forward",
                  "nn.Module: GraphModule", "triton/runtime/jit.py(574): run"]


def _gpt_oss_op(kind: str, *, time_ms: float, eff: float, tflops: float, tbs: float, fpb: float,
                kernel: str, interval: tuple[float, float], crossover: int,
                skew: tuple[float, float], gated: bool, flops: int) -> dict[str, Any]:
    name = f"pseudo_op::moe_triton_unfused_{kind}"
    return {
        "name": name, "display_name": display_text(name), "count": 24, "time_ms": time_ms,
        "percent_of_category": round(time_ms / 7.035 * 100, 2),
        "percent_of_total": round(time_ms / 10.743 * 100, 2),
        "efficiency": {
            "tflops_achieved": tflops, "tb_s_achieved": tbs, "efficiency_percent": eff,
            "bound_type": "memory", "flops_per_byte": fpb, "compute_spec": "matrix_fp4",
            "resolved_peak_maf": 708, "resolved_peak_hbm_bw": 5.3,
            "warning": _SUBSTITUTION,
            "is_anomaly": False, "substituted_compute_spec": "matrix_bf16",
            "efficiency_source": "computed", "roofline_efficiency_percent": eff,
        },
        "Input Dims": "((32, 3072), (32, 32), (), ())",
        "Input type": "('c10::BFloat16', 'c10::BFloat16', '', '')",
        "args": "(32,3072) bf16<br>(32,32) bf16",
        "cov": skew[1], "high_variance": False, "library": "Triton",
        "launcher_path": "triton/runtime/jit.py(574): run",
        "kernel_name": kernel, "kernel_name_trunc": display_text(kernel),
        "module_chain": list(_GPT_OSS_CHAIN), "call_chain": list(_GPT_OSS_CALLS),
        "warnings": [_SUBSTITUTION],
        "moe": {
            "num_tokens": 32, "hidden_dim": 3072, "inter_dim": 3072, "num_experts": 32, "topk": 4,
            "gated": gated, "shape_source": "perf_params", "kind": kind, "tokens_per_expert": 4.0,
            "active_experts": {"low": 4, "expected": 31.6, "high": 32},
            "efficiency_interval": {"low": interval[0], "high": interval[1]},
            "crossover_tokens": crossover, "crossover_note": None, "padding_waste_pct": 74.6,
            "padding_block_rows": 16, "phase": "decode",
            "skew": {"max_over_median": skew[0], "cov": skew[1], "flagged": False},
            "flops_per_call": flops, "weight_dtype": "FP4", "input_dtype": "c10::BFloat16",
        },
    }


def gpt_oss_decode() -> dict[str, Any]:
    """gpt-oss-20b decode on MI300X (batch 32): unfused Triton MoE, mxfp4 weights."""
    down = _gpt_oss_op("down", time_ms=3.762, eff=18.04, tflops=15.68, tbs=0.97, fpb=16.12,
                       kernel="_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1",
                       interval=(2.4, 18.3), crossover=283, skew=(1.05, 0.11), gated=False,
                       flops=2415919104)
    up = _gpt_oss_op("up", time_ms=3.273, eff=41.34, tflops=35.58, tbs=2.2, fpb=16.17,
                     kernel="_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1_swiglu",
                     interval=(5.4, 41.9), crossover=275, skew=(1.03, 0.06), gated=True,
                     flops=4831838208)
    metrics: dict[str, Any] = {
        "category": "moe_unfused", "status": "OK", "comparison_scope": "standalone",
        "total_time_ms": 7.035, "percent_of_compute": 65.48, "operation_count": 48,
        "e2e_time_ms": 10.743, "platform": "MI300X", "operations_total": 2, "operations_omitted": 0,
        "operations": [down, up],
        "category_specific": {
            "peak_maf_tflops": 708, "peak_hbm_bw_tbs": 5.3,
            "significance": {"percent_of_compute": 65.48, "band_low_pct": 20, "band_high_pct": 40,
                             "position": "above",
                             "statement": "MoE layers take 65.48% of GPU time, above the 20–40 % "
                                          "they typically take in MoE models: they are the main "
                                          "cost of this trace."},
            "layer_structure": {"source": "tree_data",
                                "module_chains": [{"chain": list(_GPT_OSS_CHAIN), "signatures": 2,
                                                   "time_ms": 7.035}],
                                "launchers": ["vllm::moe_forward"],
                                "signature_count": 2, "layer_types": ["GraphModule"]},
            "phase_split": {"decode_ms": 7.035, "prefill_ms": 0.0, "unknown_ms": 0.0},
            "fusion_payoff": {"intermediate_bytes_per_call": 1572864, "total_time_ms_at_peak": 0.007,
                              "calls": 24, "percent_of_total": 0.07},
            "limits": [
                "Cannot assess expert load balance from trace data: per-expert token counts are "
                "not in a kernel trace.",
                "Routing and gating quality cannot be seen in a kernel trace.",
                "The real per-expert byte traffic is not measured; bytes come from the pipeline's "
                "perf model under uniform routing.",
                "Cache hit rates, bank conflicts, occupancy and shared-memory use are not in the trace."],
        },
        "warnings": [f"{down['name']}: {_SUBSTITUTION}", f"{up['name']}: {_SUBSTITUTION}"],
        "options": dict(DEFAULT_OPTIONS),
    }
    return with_findings(metrics)


def heuristic_sample() -> dict[str, Any]:
    """A quantified fused op plus an unmodelled op (no efficiency) at 12% of E2E."""
    metrics = mixtral_standalone()
    name = "vllm::custom_moe_align_block_size"
    metrics["operations"].append({
        "name": name, "display_name": display_text(name), "count": 32, "time_ms": 4.732,
        "percent_of_category": 11.93, "percent_of_total": 12.0,
        "efficiency": {"tflops_achieved": None, "tb_s_achieved": None, "efficiency_percent": None,
                       "bound_type": None, "flops_per_byte": None, "compute_spec": None,
                       "resolved_peak_maf": None, "resolved_peak_hbm_bw": None, "warning": None,
                       "is_anomaly": False, "substituted_compute_spec": None, "efficiency_source": None},
        "Input Dims": "((16, 2),)", "Input type": "('Int',)", "args": "(16,2) Int",
        "cov": 0.4, "high_variance": False, "library": None, "launcher_path": "Not found",
        "kernel_name": "moe_align_block_size_kernel", "kernel_name_trunc": "moe_align_block_size_kernel",
        "module_chain": [], "call_chain": [], "warnings": ["No performance model for this op."],
        "moe": None,
    })
    metrics["operations_total"] = 2
    return with_findings(metrics)


def zero_findings() -> dict[str, Any]:
    """An OK category whose op is at its roofline: nothing to recommend."""
    metrics = mixtral_standalone()
    metrics["operations"][0]["efficiency"]["efficiency_percent"] = 99.99
    return with_findings(metrics)


def many_ops(n: int = 30) -> dict[str, Any]:
    """Many signatures of one library: a long ops table and a capped finding."""
    metrics = mixtral_standalone()
    template = metrics["operations"][0]
    ops = []
    for i in range(n):
        op = copy.deepcopy(template)
        op["name"] = f"pseudo_op::moe_fused_variant_{i}"
        op["display_name"] = display_text(op["name"])
        op["time_ms"] = round(2.0 - i * 0.05, 3)
        op["efficiency"]["efficiency_percent"] = 40.0 + i * 0.1
        op["percent_of_total"] = round(op["time_ms"] / 39.431 * 100, 2)
        ops.append(op)
    metrics["operations"] = ops
    metrics["total_time_ms"] = round(sum(o["time_ms"] for o in ops), 3)
    metrics["operations_total"] = n
    return with_findings(metrics)


def hostile(name: str, *, kernel: str | None = None, path: str | None = None,
            args: str | None = None, warning: str | None = None,
            comparative: bool = False, heuristic: bool = False) -> dict[str, Any]:
    """A sample whose trace strings are attacker-chosen.

    Display fields are derived the way the engine derives them (display_text),
    raw fields keep the text as it came.
    """
    metrics = mixtral_comparative() if comparative else mixtral_standalone()
    op = metrics["operations"][0]
    op["name"] = name
    op["display_name"] = display_text(name)
    op["kernel_name"] = kernel if kernel is not None else name
    op["kernel_name_trunc"] = display_text(op["kernel_name"])[:75]
    op["launcher_path"] = display_text(path if path is not None else name)
    op["args"] = display_text(args if args is not None else name)
    op["module_chain"] = [name, "DecoderLayer"]
    op["call_chain"] = [f"nn.Module: {name}", name]
    op["warnings"] = [f"op {name} looked odd"]
    op["library"] = "AITER"
    if heuristic:
        op["efficiency"]["efficiency_percent"] = None
    metrics["category_specific"]["layer_structure"]["module_chains"][0]["chain"] = [name, "FusedMoE"]
    metrics["category_specific"]["layer_structure"]["launchers"] = [name]
    metrics["category_specific"]["layer_structure"]["layer_types"] = [name]
    metrics["warnings"] = [warning if warning is not None else f"raw warning about {name}"]
    metrics["platform"] = name
    return with_findings(metrics)


def no_data(category: str = "moe_fused") -> dict[str, Any]:
    """The metrics of a category with no MoE rows."""
    return {"category": category, "status": "NO_DATA", "comparison_scope": "standalone",
            "message": "No MoE operations detected in this trace.", "total_time_ms": 0,
            "operations": [], "impact_estimates": [], "category_findings": []}


def error_metrics(category: str = "moe_fused") -> dict[str, Any]:
    """The metrics of a run whose input could not be read."""
    return {"category": category, "status": "ERROR",
            "message": "The column 'Kernel Time (µs)_sum' holds text where a number is expected.",
            "file": f"category_data/{category}_ops.csv", "location": "row 3, column 'Kernel Time (µs)_sum'",
            "operations": [], "impact_estimates": [], "category_findings": []}


def write_and_check(out_dir: Path, metrics: dict[str, Any], plot_name: str | None = None) -> list[str]:
    """Render, write through the writer and run the shared checker on the result.

    :return: the checker's violations (empty when the outputs conform).
    """
    from conformance.check_findings import check
    from jarvis_moe.findings import render_findings
    from jarvis_moe.output import write_outputs

    markdown = render_findings(metrics, plot_name=plot_name)
    write_outputs(out_dir, metrics["category"], metrics, markdown)
    _, errors = check(Path(out_dir), metrics["category"])
    return errors
