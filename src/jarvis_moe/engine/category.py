"""The category-wide figures: significance, phases, layers, pipelines and levers.

Everything here reads the typed listed ops (and the figures frame for the
phase split), so each lever the report recommends carries the number that
justifies it, computed once: what it would save at best, in ms and in % of
end-to-end GPU time.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

from jarvis_moe.engine import dtypes, trace_text
from jarvis_moe.engine.contract import Metadata, TreeEntry
from jarvis_moe.engine.moe_model import expected_active_experts
from jarvis_moe.metrics import (
    FusionPayoff, LayerStructure, Lever, Operation, PhaseSplit, Pipeline, Significance,
)

LIMITS = (
    "Which experts the tokens went to and how many each received (the routing evidence comes from call "
    "durations, not from per-expert counts).",
    "Router and gating quality.",
    "The real bytes of a call (they come from the pipeline's perf model).",
    "Cache hit rates, bank conflicts, occupancy and shared-memory use.",
)


def significance(pct: float | None, low: float, high: float) -> Significance:
    """Where the category's share of GPU time sits against the usual band."""
    band = f"{low:g}–{high:g}%"
    if pct is None:
        position, statement = "unknown", (
            "The end-to-end GPU time is unknown, so the share of MoE layers cannot be placed against the "
            f"{band} they typically take in MoE models.")
    elif pct < low:
        position, statement = "below", f"Below the {band} MoE layers typically take: other work dominates."
    elif pct <= high:
        position, statement = "within", f"Within the {band} MoE layers typically take."
    else:
        position, statement = "above", f"Above the {band} MoE layers typically take: they are the main cost."
    return Significance(percent_of_compute=pct, band_low_pct=low, band_high_pct=high, position=position,
                        statement=statement)


def phase_split(figures: pl.DataFrame, decode_max_tokens: int) -> PhaseSplit:
    """Time of decode-like, prefill-like and unknown-shape signatures, ms."""
    m = pl.col("num_tokens")
    sums = figures.select(
        decode_ms=pl.col("time_ms").filter(m <= decode_max_tokens).sum(),
        prefill_ms=pl.col("time_ms").filter(m > decode_max_tokens).sum(),
        unknown_ms=pl.col("time_ms").filter(m.is_null()).sum(),
    ).row(0, named=True)
    return PhaseSplit(**{k: round(float(v or 0.0), 3) for k, v in sums.items()})


def layer_structure(operations: list[Operation], tree: Mapping[str, TreeEntry] | None,
                    max_ops: int) -> LayerStructure:
    ops = [{"name": op.name, "ex_uid": op.ex_uid, "time_ms": op.time_ms, "call_stack": op.call_chain}
           for op in operations[:max_ops]]
    tree_data = {k: v.model_dump() for k, v in tree.items()} if tree else None
    found = trace_text.layer_structure(ops, tree_data)
    names = {op.name for op in operations}
    # An op's own frame in its call stack launched nothing.
    found["launchers"] = [x for x in found["launchers"] if x not in names]
    return LayerStructure.model_validate(found)


# --- pipelines and fusion -------------------------------------------------------


def pipelines(operations: list[Operation], peak_tbs: float, e2e_ms: float | None) -> list[Pipeline]:
    """Each up stage with its down stage (same M, E, k, hidden size and implementation).

    The intermediate goes through memory between them: written once and read
    once (2·M·k·N elements) when the up kernel applies the activation, three
    times that when a separate activation kernel reads the 2N-wide gate/up
    output and writes the N-wide result.
    """
    out = []
    for i, up in enumerate(operations):
        if up.moe is None or up.moe.kind != "up":
            continue
        u = up.moe
        key = (u.num_tokens, u.num_experts, u.topk, u.hidden_dim, up.implementation)
        down = next((j for j, op in enumerate(operations) if op.moe is not None and op.moe.kind == "down"
                     and (op.moe.num_tokens, op.moe.num_experts, op.moe.topk, op.moe.hidden_dim,
                          op.implementation) == key), None)
        if down is None:
            continue
        element = dtypes.size(u.input_dtype) or 2.0
        factor = 2 if u.activation_fused is not False else 6
        per_call = int(factor * u.num_tokens * u.topk * u.inter_dim * element)
        time_ms = per_call * up.count / (peak_tbs * 1e12) * 1e3
        out.append(Pipeline(
            up_op_index=i, down_op_index=down, implementation=up.implementation, num_tokens=u.num_tokens,
            calls=up.count, activation_fused=u.activation_fused, intermediate_bytes_per_call=per_call,
            traffic_factor=factor, time_ms_at_peak=round(time_ms, 3),
            percent_of_total=round(time_ms / e2e_ms * 100.0, 2) if e2e_ms else None,
        ))
    return out


def fusion_payoff(pairs: list[Pipeline], e2e_ms: float | None) -> FusionPayoff | None:
    """What a kernel that keeps the intermediate on chip would save, over all pipelines."""
    if not pairs:
        return None
    total = sum(p.intermediate_bytes_per_call * p.calls for p in pairs)
    time_ms = sum(p.time_ms_at_peak for p in pairs)
    return FusionPayoff(
        intermediate_bytes_per_call=max(p.intermediate_bytes_per_call for p in pairs),
        total_bytes=int(total), calls=sum(p.calls for p in pairs), total_time_ms_at_peak=round(time_ms, 3),
        percent_of_total=round(time_ms / e2e_ms * 100.0, 2) if e2e_ms else None, pipelines=pairs,
    )


# --- levers -------------------------------------------------------------------


def _lever(kind: str, ops: list[int], saving: float | None, e2e: float | None, **values: Any) -> Lever:
    return Lever(kind=kind, op_indexes=ops, value_from=values.get("value_from"), value_to=values.get("value_to"),
                 unit=values.get("unit"), saving_ms=None if saving is None else round(saving, 3),
                 percent_of_total=round(saving / e2e * 100.0, 2) if saving is not None and e2e else None)


def _share(ops: list[Operation], indexes: list[int]) -> float:
    return sum(ops[i].time_ms for i in indexes)


def levers(ops: list[Operation], pairs: list[Pipeline], meta: Metadata, e2e: float | None,
           sibling_ratio: float) -> list[Lever]:
    """Every lever the listed ops support, largest saving first.

    Savings are upper bounds: they assume the peaks (a maximum achievable
    compute figure and the datasheet bandwidth) can be reached.
    """
    out: list[Lever] = []
    peaks = meta.compute_peaks()
    memory = [i for i, op in enumerate(ops) if op.efficiency.bound_type == "memory" and op.moe is not None]
    compute = [i for i, op in enumerate(ops) if op.efficiency.bound_type == "compute"]
    for i, op in enumerate(ops):
        eff = op.efficiency.efficiency_percent
        if eff is not None and not op.efficiency.is_anomaly and eff < 100:
            out.append(_lever("roofline_gap", [i], op.time_ms * (1 - eff / 100), e2e, value_from=eff,
                              value_to=100.0, unit="%"))
    batch = [i for i in memory if ops[i].moe.crossover_tokens]  # type: ignore[union-attr]
    if batch:
        first = ops[batch[0]].moe
        assert first is not None
        out.append(_lever("batching", batch, None, e2e, value_from=first.num_tokens,
                          value_to=first.crossover_tokens, unit="tokens"))
    topk_ops, topk_saving, topk_from, topk_to = [], 0.0, None, None
    for i in memory:
        moe = ops[i].moe
        assert moe is not None
        if moe.topk < 2:
            continue
        fewer = moe.topk // 2
        now = expected_active_experts(moe.num_experts, moe.topk, moe.num_tokens)
        then = expected_active_experts(moe.num_experts, fewer, moe.num_tokens)
        if then >= now * 0.99:
            continue
        # Memory-bound time follows the bytes; only the weight part changes.
        if not moe.bytes_per_call or not moe.weight_bytes_per_call:
            continue
        topk_ops.append(i)
        topk_saving += ops[i].time_ms * moe.weight_bytes_per_call * (1 - then / now) / moe.bytes_per_call
        topk_from, topk_to = (topk_from or round(now, 2)), (topk_to or round(then, 2))
    if topk_ops:
        out.append(_lever("topk", topk_ops, topk_saving, e2e, value_from=topk_from, value_to=topk_to,
                          unit="experts"))
    weight_bound = [i for i in memory if (ops[i].moe.active_experts.expected  # type: ignore[union-attr]
                                          >= 0.5 * ops[i].moe.num_experts)]  # type: ignore[union-attr]
    if weight_bound:
        moe = ops[weight_bound[0]].moe
        assert moe is not None
        out.append(_lever("expert_parallel", weight_bound, None, e2e, value_from=moe.active_experts.expected,
                          value_to=moe.num_experts, unit="experts"))
    out += _routing_levers(ops, memory, e2e)
    for pair in pairs:
        out.append(_lever("fusion", [pair.up_op_index, pair.down_op_index], pair.time_ms_at_peak, e2e,
                          value_from=pair.intermediate_bytes_per_call, unit="bytes per call"))
        out += _sibling(ops, pair, e2e, sibling_ratio)
    fp8 = peaks.get("matrix_fp8")
    for i in compute:
        op = ops[i]
        spec_peak = op.efficiency.resolved_peak_maf
        act = dtypes.label(op.moe.input_dtype) if op.moe else None
        if fp8 and spec_peak and fp8 > spec_peak and (op.efficiency.compute_spec or "").startswith("matrix_") \
                and act in ("bf16", "fp16"):
            out.append(_lever("fp8_compute", [i], op.time_ms * (1 - spec_peak / fp8), e2e,
                              value_from=spec_peak, value_to=fp8, unit="TFLOP/s"))
        moe = op.moe
        if moe is not None and moe.padding_waste_pct and moe.padding_time_pct:
            out.append(_lever("padding", [i], op.time_ms * moe.padding_time_pct / 100, e2e,
                              value_from=moe.padding_waste_pct, value_to=0.0, unit="% of rows"))
    for i in memory:
        moe = ops[i].moe
        assert moe is not None
        fmt = moe.weight_format
        if fmt is not None and fmt.bits >= 16 and moe.bytes_per_call and moe.weight_bytes_per_call:
            share = moe.weight_bytes_per_call / moe.bytes_per_call
            out.append(_lever("fp8_weights", [i], ops[i].time_ms * 0.5 * share, e2e,
                              value_from=fmt.bits, value_to=8, unit="bits"))
    return sorted(out, key=lambda lv: -(lv.saving_ms or 0.0))


def _routing_levers(ops: list[Operation], memory: list[int], e2e: float | None) -> list[Lever]:
    """Routing balance, and a larger row block, for calls that route their tokens to fewer experts.

    One routing lever per verdict (a stage and the sibling that shares it).
    The re-read lever sizes the passes beyond one per expert the fast calls
    make, at the rate the op streams at: (passes − experts) · one expert's
    weight bytes / rate, over the fast share of the calls; at most the op's
    time. A block that holds a hot expert's rows in one pass removes them:
    the power of two at or above M·k / (the fewest experts), at most M.
    """
    out = []
    for i in memory:
        moe = ops[i].moe
        assert moe is not None
        skew = moe.skew
        experts = skew.implied_active_experts
        if skew.direction != "fewer_experts" or experts is None:
            continue
        if skew.verdict_source == "own":
            pair = [i] + ([skew.sibling_op_index] if skew.sibling_op_index is not None else [])
            out.append(_lever("routing_balance", pair, None, e2e, value_from=experts.low, value_to=experts.high,
                              unit="experts"))
        passes, rate, share = skew.implied_passes, skew.bandwidth_tbs, skew.fast_calls_pct
        if passes is None or not rate or share is None or not moe.weight_bytes_per_call or not skew.block_rows:
            continue
        reread = passes.low - experts.low
        if reread <= 0:
            continue
        one_expert = moe.weight_bytes_per_call / moe.active_experts.expected
        saving = ops[i].count * share / 100 * reread * one_expert / (rate * 1e12) * 1e3
        rows = -(-moe.num_tokens * moe.topk // int(experts.low))
        block = min(1 << (rows - 1).bit_length(), moe.num_tokens)
        if block > skew.block_rows:
            out.append(_lever("row_block", [i], min(saving, ops[i].time_ms), e2e, value_from=skew.block_rows,
                              value_to=block, unit="rows"))
    return out


def _sibling(ops: list[Operation], pair: Pipeline, e2e: float | None, ratio: float) -> list[Lever]:
    """The stage of a pipeline far below its sibling's achieved rate, same bound."""
    a, b = ops[pair.up_op_index], ops[pair.down_op_index]
    bound = a.efficiency.bound_type
    if bound != b.efficiency.bound_type or bound not in ("memory", "compute"):
        return []
    key = "tb_s_achieved" if bound == "memory" else "tflops_achieved"
    ra, rb = getattr(a.efficiency, key), getattr(b.efficiency, key)
    if not ra or not rb:
        return []
    (slow, r_slow), (fast, r_fast) = sorted(((pair.up_op_index, ra), (pair.down_op_index, rb)), key=lambda x: x[1])
    if r_slow >= ratio * r_fast:
        return []
    saving = ops[slow].time_ms * (1 - r_slow / r_fast)
    unit = "TB/s" if bound == "memory" else "TFLOP/s"
    return [_lever("sibling_gap", [slow, fast], saving, e2e, value_from=r_slow, value_to=r_fast, unit=unit)]
