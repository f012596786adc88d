"""``## Optimisation Paths``: what to try, each item tied to a trace number.

Path A is algorithmic or system-level (batching, expert parallelism, routing,
top-k, fusion); Path B is kernel work (roofline gap, tuning, precision, an
isolated reproducer). Items are only emitted when the number that justifies
them is present, and never against the data: no batching advice without a
crossover size or for a compute-bound op, no precision advice for an op that
already runs on 4-bit weights.
"""

from __future__ import annotations

from typing import Any, Mapping

from jarvis_moe.findings_format import (
    DASH, bound_label, dtype_text, efficiency_cell, fmt, fmt_int, fmt_pct, fmt_peak, inline, is_fp4, joined, num,
    raw_inline, speed_change,
)
from jarvis_moe.findings_sections import Metrics, is_comparative, op_label

# Ops a path item names at most; the rest are in the operations table.
TOP_OPS = 3
_WIDE_DTYPES = ("bf16", "fp16", "fp32")


def _top(metrics: Metrics, pred: Any) -> list[Mapping[str, Any]]:
    ops = [op for op in metrics.get("operations") or [] if isinstance(op, Mapping) and pred(op)]
    return ops[:TOP_OPS]


def _moe(op: Mapping[str, Any]) -> Mapping[str, Any]:
    return op.get("moe") if isinstance(op.get("moe"), Mapping) else {}


def _bound(op: Mapping[str, Any]) -> Any:
    return (op.get("efficiency") or {}).get("bound_type")


def kernel_text(op: Mapping[str, Any]) -> str:
    """The truncated kernel name(s) for a sentence (``<br>`` becomes ``; ``)."""
    name = str(op.get("kernel_name_trunc") or "").replace("<br>", "; ")
    return inline(name) if name else "its kernel"


def _batching(metrics: Metrics) -> list[str]:
    ops = _top(metrics, lambda o: _bound(o) == "memory" and num(_moe(o).get("crossover_tokens")))
    if not ops:
        return []
    sizes = "; ".join(f"{op_label(op, 60)} runs {fmt_int(_moe(op).get('num_tokens'))} tokens per "
                      f"call, crossover about {fmt_int(_moe(op).get('crossover_tokens'))}" for op in ops)
    return [f"Batch more tokens per MoE call, toward the crossover size where the op turns "
            f"compute-bound on this platform: {sizes}. Up to that size, extra tokens reuse the expert "
            "weights each call already reads."]


def _experts(metrics: Metrics) -> list[str]:
    items = []
    ops = _top(metrics, lambda o: bool(_moe(o)))
    op = next((o for o in ops if _bound(o) == "memory"), None)
    if op is not None:
        moe = _moe(op)
        active = moe.get("active_experts") or {}
        if num(active.get("expected")) is not None:
            items.append(f"Expert parallelism: {op_label(op, 60)} activates about "
                         f"{fmt(active.get('expected'))} of {fmt_int(moe.get('num_experts'))} experts per "
                         "call and reads their weights each time. Spreading the experts over GPUs "
                         "divides that weight traffic per GPU.")
        if num(moe.get("topk")) is not None:
            items.append(f"Top-k: each token visits {fmt_int(moe.get('topk'))} of "
                         f"{fmt_int(moe.get('num_experts'))} experts. Fewer experts per token would cut "
                         "the active experts and their weight reads, but it changes the model, so it "
                         "is a model-quality decision.")
    flagged = [o for o in ops if (_moe(o).get("skew") or {}).get("flagged")]
    for o in flagged:
        skew = _moe(o).get("skew") or {}
        items.append(f"Routing balance: calls of {op_label(o, 60)} with identical shapes show a long "
                     f"duration tail (max/median {fmt(skew.get('max_over_median'))}, cov "
                     f"{fmt(skew.get('cov'))}). That is consistent with routing skew or contention; "
                     "log the router's per-expert token counts in the framework to confirm it.")
    if ops and not flagged:
        items.append("Routing balance: no op shows a duration tail beyond the skew thresholds. The "
                     "trace cannot show per-expert token counts, so this is no proof of balance.")
    return items


def _fusion(metrics: Metrics) -> list[str]:
    payoff = (metrics.get("category_specific") or {}).get("fusion_payoff")
    if metrics.get("category") != "moe_unfused" or not isinstance(payoff, Mapping):
        return []
    per_call = num(payoff.get("intermediate_bytes_per_call"))
    item = ("Fuse the pipeline: a fused MoE implementation keeps the intermediate activation on chip"
            + (f" ({fmt(per_call / 1e6)} MB per call)" if per_call is not None else "")
            + f", worth {fmt(payoff.get('total_time_ms_at_peak'), 3)} ms at peak bandwidth "
            f"({fmt_pct(payoff.get('percent_of_total'))} of GPU time), and saves one launch per layer.")
    share = num(payoff.get("percent_of_total"))
    if share is not None and share < 1:
        item += " The direct saving is small here; the weight reads dominate."
    return [item]


def _roofline_gap(metrics: Metrics) -> list[str]:
    e2e = num(metrics.get("e2e_time_ms"))
    items = []
    if is_comparative(metrics):
        for op in _top(metrics, lambda o: num(o.get("t2_time_ms")) is not None):
            items.append(f"{op_label(op, 60)}: trace 2 is "
                         f"{speed_change(op.get('time_ms'), op.get('t2_time_ms'), op.get('speedup_pct'))} "
                         f"({fmt(op.get('time_ms'), 3)} ms in trace 1, {fmt(op.get('t2_time_ms'), 3)} ms "
                         "in trace 2). Compare the kernel names and launch configuration of the two traces.")
        return items
    for op in _top(metrics, lambda o: num((o.get("efficiency") or {}).get("efficiency_percent")) is not None
                   and not (o.get("efficiency") or {}).get("is_anomaly")):
        eff = op["efficiency"]
        time = num(op.get("time_ms")) or 0.0
        save = time * max(0.0, 1 - num(eff["efficiency_percent"]) / 100)
        share = f", {fmt_pct(save / e2e * 100)} of GPU time" if e2e else ""
        items.append(f"Roofline gap: {op_label(op, 60)} reaches {efficiency_cell(eff)} "
                     f"({bound_label(eff.get('bound_type'))}). Closing the gap would save "
                     f"up to {fmt(save, 3)} ms{share}.")
    for op in _top(metrics, lambda o: num((o.get("efficiency") or {}).get("efficiency_percent")) is None):
        items.append(f"No performance model: {op_label(op, 60)} takes "
                     f"{fmt_pct(op.get('percent_of_total'))} of GPU time with unknown efficiency. "
                     "Profile it in isolation to measure its gap.")
    return items


def _grouped(ops: list[Mapping[str, Any]], key: Any) -> list[tuple[Any, list[str]]]:
    """Ops sharing the same figures, so one sentence can name them all."""
    groups: dict[Any, list[str]] = {}
    for op in ops:
        groups.setdefault(key(op), []).append(op_label(op, 60))
    return list(groups.items())


def _tuning(metrics: Metrics) -> list[str]:
    ops = _top(metrics, lambda o: num(_moe(o).get("padding_waste_pct")) is not None)
    key = lambda o: (fmt(_moe(o).get("tokens_per_expert")), fmt_int(_moe(o).get("padding_block_rows")),
                     fmt_pct(_moe(o).get("padding_waste_pct")))
    return [f"Tile tuning: {joined(names)} {'has' if len(names) == 1 else 'have'} {tpe} tokens per "
            f"expert; with {rows}-row blocks an estimated {waste} of issued rows are padding. Smaller "
            "blocks or a token-gathering layout waste less work."
            for (tpe, rows, waste), names in _grouped(ops, key)]


def _precision(metrics: Metrics) -> list[str]:
    ops = _top(metrics, lambda o: bool(_moe(o)) or is_fp4(o))
    items = []
    substituted = [o for o in ops if (o.get("efficiency") or {}).get("substituted_compute_spec")]
    key = lambda o: (raw_inline(o["efficiency"].get("compute_spec")),
                     raw_inline(o["efficiency"]["substituted_compute_spec"]),
                     fmt_peak(o["efficiency"].get("resolved_peak_maf")))
    for (spec, used, peak), names in _grouped(substituted, key):
        items.append(f"Precision: {joined(names)} {'is' if len(names) == 1 else 'are'} specified as "
                     f"{spec}, which this platform has no peak for; the {used} peak ({peak} TFLOPS) "
                     "stands in.")
    fp4 = [op_label(o, 60) for o in ops if is_fp4(o)]
    if fp4:
        items.append(f"Precision: {joined(fp4)} already {'uses' if len(fp4) == 1 else 'use'} 4-bit "
                     "weights, so weight precision is not a lever here.")
    wide = [o for o in ops if not is_fp4(o) and _bound(o) == "memory"
            and dtype_text(_moe(o).get("weight_dtype")) in _WIDE_DTYPES]
    for dtype, names in _grouped(wide, lambda o: dtype_text(_moe(o).get("weight_dtype"))):
        items.append(f"Precision: {joined(names)} {'is' if len(names) == 1 else 'are'} memory-bound on "
                     f"{dtype} weights. An 8-bit weight format halves the weight bytes, where model "
                     "accuracy allows it.")
    return items


def _reproducer(metrics: Metrics) -> list[str]:
    items = []
    for op in _top(metrics, lambda o: bool(_moe(o))):
        moe = _moe(op)
        gated = {True: "yes", False: "no"}.get(moe.get("gated"), DASH)
        mean = (num(op.get("time_ms")) or 0) / (num(op.get("count")) or 1)
        items.append(f"Reproduce {kernel_text(op)} in isolation for the kernel team: "
                     f"M={fmt_int(moe.get('num_tokens'))}, K={fmt_int(moe.get('hidden_dim'))}, "
                     f"N={fmt_int(moe.get('inter_dim'))}, E={fmt_int(moe.get('num_experts'))}, "
                     f"k={fmt_int(moe.get('topk'))}, weights {dtype_text(moe.get('weight_dtype'))}, "
                     f"activations {dtype_text(moe.get('input_dtype'))}, gated {gated}; "
                     f"{fmt_int(op.get('count'))} calls averaging {fmt(mean, 3)} ms.")
    return items


def optimisation_paths(metrics: Metrics) -> list[str]:
    """Path A (algorithmic/system) and Path B (kernel) items as bullet lists."""
    path_a = _batching(metrics) + _experts(metrics) + _fusion(metrics)
    path_b = _roofline_gap(metrics) + _tuning(metrics) + _precision(metrics) + _reproducer(metrics)
    lines = ["## Optimisation Paths", "", "**Path A — algorithmic/system**", ""]
    lines += [f"- {item}" for item in path_a] or ["- Nothing the trace supports at the system level."]
    lines += ["", "**Path B — kernel**", ""]
    lines += [f"- {item}" for item in path_b] or ["- Nothing the trace supports at the kernel level."]
    return lines
