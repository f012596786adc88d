"""The category-wide figures: significance, phases, layers, pipelines and levers.

Everything here reads the typed listed ops (and the figures frame for the
phase split), so each lever the report recommends carries the number that
justifies it, computed once: what it would save at best, in ms and in % of
end-to-end GPU time.
"""

from __future__ import annotations

from typing import Mapping

import polars as pl

from jarvis_moe.engine import dtypes, trace_text
from jarvis_moe.engine.contract import Metadata, TreeEntry
from jarvis_moe.metrics_levers import TableRest
from jarvis_moe.metrics import (
    FusionPayoff, LayerStructure, Operation, PhaseSplit, Pipeline, Significance,
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
    total = sum(float(v or 0.0) for v in sums.values())
    shares = {k.replace("_ms", "_pct"): round(float(v or 0.0) / total * 100.0, 2) if total else None
              for k, v in sums.items()}
    return PhaseSplit(**{k: round(float(v or 0.0), 3) for k, v in sums.items()}, **shares)


def table_rest(figures: pl.DataFrame, shown: int) -> TableRest | None:
    """The signatures after the first ``shown`` (the page's table), summed unrounded and rounded once."""
    if figures.height <= shown:
        return None
    total = float(figures.get_column("time_ms").sum())
    rest = float(figures.get_column("time_ms").slice(shown).sum())
    return TableRest(signatures=figures.height - shown, time_ms=round(rest, 3),
                     percent_of_category=round(rest / total * 100.0, 2) if total else None)


def trace2_total(figures: pl.DataFrame) -> float | None:
    """Trace 2's time for the same signatures, when every one has it."""
    if "t2_us" not in figures.columns or figures.get_column("t2_us").null_count():
        return None
    return round(float(figures.get_column("t2_us").sum()) / 1000.0, 3)


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


def pipelines(operations: list[Operation], peak_tbs: float, e2e_ms: float | None,
              activation_ms: float | None = None) -> list[Pipeline]:
    """Each up stage with its down stage (same M, E, k, hidden size and implementation).

    The intermediate goes through memory between them: written once and read
    once (2·M·k·N elements) when the up kernel applies the activation, three
    times that (6·M·k·N) when a separate activation kernel reads the 2N-wide
    gate/up output and writes the N-wide result. What fusing saves is capped
    by the time of the work that disappears: the GEMM side of that traffic
    (all of it when the up kernel applies the activation, half otherwise)
    only where both stages are memory-bound (at compute-bound shapes it is
    hidden under compute), plus the separate activation kernel: its measured
    time where the trace has it (``activation_ms``, the MoE block's activation
    kernels, shared by traffic), else its traffic at peak bandwidth.
    """
    found = []
    for i, up in enumerate(operations):
        if up.moe is None or up.moe.kind != "up":
            continue
        u = up.moe
        key = (u.num_tokens, u.num_experts, u.topk, u.hidden_dim, up.implementation)
        down = next((j for j, op in enumerate(operations) if op.moe is not None and op.moe.kind == "down"
                     and (op.moe.num_tokens, op.moe.num_experts, op.moe.topk, op.moe.hidden_dim,
                          op.implementation) == key), None)
        if down is not None:
            found.append((i, down))
    separate = {i: _traffic(operations[i]) for i, _ in found if operations[i].moe.activation_fused is False}
    out = []
    for i, down in found:
        up = operations[i]
        u = up.moe
        assert u is not None
        factor = 2 if u.activation_fused is not False else 6
        per_call = _traffic(up) // up.count if up.count else 0
        time_ms = per_call * up.count / (peak_tbs * 1e12) * 1e3
        streaming = up.efficiency.bound_type == operations[down].efficiency.bound_type == "memory"
        gemm_side = time_ms * (1.0 if factor == 2 else 0.5)
        gemm_saving = min(gemm_side, up.time_ms + operations[down].time_ms) if streaming else 0.0
        activation = None
        if factor == 6:
            activation = (activation_ms * separate[i] / sum(separate.values()) if activation_ms
                          else time_ms - gemm_side)
        saving = gemm_saving + (activation or 0.0)
        out.append(Pipeline(
            up_op_index=i, down_op_index=down, implementation=up.implementation, num_tokens=u.num_tokens,
            calls=up.count, activation_fused=u.activation_fused, intermediate_bytes_per_call=per_call,
            traffic_factor=factor, time_ms_at_peak=round(time_ms, 3),
            hidden_under_compute=not streaming,
            activation_time_ms=round(activation, 3) if activation is not None and activation_ms else None,
            saving_ms=round(saving, 3),
            percent_of_total=round(saving / e2e_ms * 100.0, 2) if e2e_ms else None,
        ))
    return out


def _traffic(up: Operation) -> int:
    """Intermediate bytes over all calls of an up stage: factor · M·k·N · element size · calls."""
    u = up.moe
    assert u is not None
    element = dtypes.size(u.input_dtype) or 2.0
    factor = 2 if u.activation_fused is not False else 6
    return int(factor * u.num_tokens * u.topk * u.inter_dim * element) * up.count


def fusion_payoff(pairs: list[Pipeline], e2e_ms: float | None) -> FusionPayoff | None:
    """What a kernel that keeps the intermediate on chip would save, over all pipelines."""
    if not pairs:
        return None
    total = sum(p.intermediate_bytes_per_call * p.calls for p in pairs)
    time_ms = sum(p.time_ms_at_peak for p in pairs)
    saving = sum(p.saving_ms for p in pairs)
    return FusionPayoff(
        intermediate_bytes_per_call=max(p.intermediate_bytes_per_call for p in pairs),
        total_bytes=int(total), calls=sum(p.calls for p in pairs), total_time_ms_at_peak=round(time_ms, 3),
        saving_ms=round(saving, 3), percent_of_total=round(saving / e2e_ms * 100.0, 2) if e2e_ms else None,
        pipelines=pairs,
    )
