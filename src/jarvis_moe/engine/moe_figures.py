"""Analysis §4 for one listed op: its MoE figures, as the metrics JSON holds them.

Takes the op's shape (:mod:`~jarvis_moe.engine.shapes`), family and shared
figures, applies the cost model (:mod:`~jarvis_moe.engine.moe_model`), the
weight format (:mod:`~jarvis_moe.engine.weights`) and the routing evidence
(:mod:`~jarvis_moe.engine.routing_evidence`), and rounds every figure once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from jarvis_moe.engine import moe_model
from jarvis_moe.engine.families import Family, activation_fused, block_from_kernels, block_from_launch
from jarvis_moe.engine.routing_evidence import Durations, evidence
from jarvis_moe.engine.shapes import Shape
from jarvis_moe.engine.weights import weight_format
from jarvis_moe.metrics import ActiveExperts, Interval, MoeFigures, RoutingEvidence


@dataclass(frozen=True)
class Context:
    """What every op's MoE figures need from the run: peaks, noise, options."""

    peak_tbs: float
    noise: float  # relative measurement noise, see routing_evidence
    options: Mapping[str, Any]


def rounded(value: float | None, places: int) -> float | None:
    """``value`` rounded for the metrics, None kept."""
    return None if value is None else round(float(value), places)


def assumed_block(tokens: int) -> int:
    """Row block when the kernel, its launch and its documentation are silent.

    The common fused-kernel defaults by batch: 16 / 32 / 64 / 128 rows for
    M ≤ 32 / ≤ 96 / ≤ 512 / larger; labelled as assumed wherever it is used.
    """
    return 16 if tokens <= 32 else 32 if tokens <= 96 else 64 if tokens <= 512 else 128


def block_rows(family: Family, shape: Shape, kernels: Sequence[str],
               dims: Sequence[Sequence[int]] | None) -> tuple[int, str]:
    """The op's row block and where it came from."""
    found = block_from_kernels(family, list(kernels))
    if found is not None:
        return found, "kernel_name"
    if family.block.launch_args and dims:
        found = block_from_launch([tuple(d) for d in dims], shape.num_tokens, shape.topk, shape.num_experts)
        if found is not None:
            return found, "launch_args"
    default = family.block.documented_default(shape.num_tokens)
    if default is not None:
        return default, "documented_default"
    return assumed_block(shape.num_tokens), "assumed"


def moe_figures(family: Family, shape: Shape, row: Mapping[str, Any], kernels: Sequence[str],
                dims: Sequence[Sequence[int]] | None, ctx: Context) -> MoeFigures | None:
    """The MoE figures of one op, or None when its dtypes leave the bytes unknown."""
    rows, hidden = (shape.gemm_n, shape.gemm_k) if shape.gemm_n else (
        (shape.hidden_dim, shape.inter_dim) if shape.kind == "down" else (shape.up_rows, shape.hidden_dim))
    fmt = weight_format(family, shape.weight_dtype, kernels, dims, shape.num_experts, rows or 0, hidden or 0)
    cost = moe_model.cost_of(shape, fmt.bits if fmt else None, fmt.overhead_bytes_per_weight if fmt else 0.0)
    if cost is None:
        return None
    opts = ctx.options
    bound, eff = row["bound"], row["eff_roofline"]
    peak_tflops = row["peak_tflops"]
    low, expected, high = moe_model.active_bounds(shape)
    moved = moe_model.bytes_per_call(cost, expected)
    scales = moe_model.bytes_per_call(cost, expected, with_scales=True) - moved
    interval = moe_model.efficiency_interval(eff, cost) if bound == "memory" and eff is not None else None
    crossover = moe_model.crossover_tokens(cost, peak_tflops, ctx.peak_tbs)
    with_scales = moe_model.crossover_tokens(cost, peak_tflops, ctx.peak_tbs, with_scales=True) if scales else None
    block, block_source = block_rows(family, shape, kernels, dims)
    waste = moe_model.padding_waste_pct(shape, block)
    flops = moe_model.flops(shape)
    mean_us = row["mean_us"]
    padding_time = None
    if bound == "compute":
        padding_time = waste  # time at a fixed rate follows the rows issued
    elif peak_tflops and mean_us:
        padded = flops * waste / max(1e-9, 100.0 - waste)
        padding_time = padded / (peak_tflops * 1e6) / mean_us * 100.0
    found = evidence(
        cost,
        Durations(int(row["count"]), row.get("Kernel Time (µs)_min"), row.get("Kernel Time (µs)_median"),
                  row.get("Kernel Time (µs)_max"), row.get("Kernel Time (µs)_mean"),
                  row.get("Kernel Time (µs)_std")),
        memory_bound=bound == "memory", peak_tbs=ctx.peak_tbs, noise=ctx.noise,
        tail=float(opts["skew_max_over_median"]), efficiency=eff, over_pct=float(opts["efficiency_warn_pct"]),
    )
    calls = int(row["count"])
    # Spread needs enough calls to mean anything; the at-peak bound does not.
    flagged = found.direction is not None and (calls >= int(opts["skew_min_count"]) or found.at_peak)
    return MoeFigures(
        num_tokens=shape.num_tokens, hidden_dim=shape.hidden_dim, inter_dim=shape.inter_dim,
        num_experts=shape.num_experts, topk=shape.topk, gated=shape.gated,
        input_dtype=shape.input_dtype, weight_dtype=shape.weight_dtype, shape_source=shape.source,
        kind=shape.kind, kind_source=shape.kind_source, gated_source=shape.gated_source,
        gemm_n=shape.gemm_n, gemm_k=shape.gemm_k,
        activation_fused=activation_fused(family, list(kernels)) if shape.kind == "up" else None,
        weight_format=fmt,
        flops_per_call=flops,
        bytes_per_call=round(moved),
        weight_bytes_per_call=round(expected * moe_model.expert_bytes(cost)),
        scale_bytes_per_call=round(scales) if fmt else None,
        efficiency_with_scales_percent=(
            rounded(eff * (moved + scales) / moved, 2) if bound == "memory" and eff is not None and scales else None),
        tokens_per_expert=round(moe_model.tokens_per_expert(shape), 2),
        tokens_per_active_expert=round(shape.num_tokens * shape.topk / expected, 2),
        active_experts=ActiveExperts(low=low, expected=round(expected, 2), high=high),
        efficiency_interval=Interval(low=round(interval[0], 2), high=round(interval[1], 2)) if interval else None,
        crossover_tokens=crossover.tokens, crossover_note=crossover.note,
        crossover_tokens_with_scales=with_scales.tokens if with_scales else None,
        padding_waste_pct=round(waste, 1), padding_block_rows=block, padding_block_source=block_source,
        padding_time_pct=rounded(padding_time, 1),
        phase="decode" if shape.num_tokens <= int(opts["decode_max_tokens"]) else "prefill",
        skew=RoutingEvidence(
            calls=calls, max_over_median=rounded(found.max_over_median, 2),
            min_over_median=rounded(found.min_over_median, 2), cov=rounded(found.cov, 2),
            flagged=flagged, direction=found.direction if flagged else None,
            implied_active_experts=(Interval(low=round(found.implied_low, 1), high=round(found.implied_high, 1))
                                    if found.implied_low is not None and found.implied_high is not None else None),
            uniform_active_experts=(Interval(low=found.uniform_low, high=found.uniform_high)
                                    if found.uniform_low is not None and found.uniform_high is not None else None),
            bandwidth_tbs=rounded(found.bandwidth_tbs, 2), bandwidth_source=found.bandwidth_source,
            noise_pct=round(ctx.noise * 100, 1) if found.implied_low is not None else None,
            corrected_efficiency_percent=rounded(found.corrected_efficiency, 1),
            over_100_explained=found.over_100_explained,
        ),
    )
