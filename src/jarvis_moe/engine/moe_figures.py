"""Analysis §4 for one listed op: its MoE figures, as the metrics JSON holds them.

Takes the op's shape (:mod:`~jarvis_moe.engine.shapes`), family and shared
figures, applies the cost model (:mod:`~jarvis_moe.engine.moe_model`), the
weight format (:mod:`~jarvis_moe.engine.weights`) and the routing evidence
(:mod:`~jarvis_moe.engine.routing_evidence`), and rounds every figure once.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

from jarvis_moe.engine import dtypes, moe_model
from jarvis_moe.engine import routing_evidence as rev
from jarvis_moe.engine.families import Family, activation_fused, block_from_kernels, block_from_launch
from jarvis_moe.engine.implementation_check import implementation_check
from jarvis_moe.engine.routing_evidence import Durations, Evidence, Rules
from jarvis_moe.engine.shapes import Shape
from jarvis_moe.engine.weights import weight_format
from jarvis_moe.metrics import ActiveExperts, Interval, MoeFigures, RoutingEvidence, WeightFormat
from jarvis_moe.options import Options


class Context(NamedTuple):
    """What every op's MoE figures need from the run: peaks, noise, options, platform."""

    peak_tbs: float
    noise: float  # relative measurement noise, see routing_evidence
    options: Options
    platform: str | None = None  # the metadata's platform name, for the implementation check

    def rules(self) -> Rules:
        o = self.options
        return Rules(noise=self.noise, tail=o.skew_max_over_median, min_calls=o.skew_min_count,
                     min_bandwidth=o.routing_min_bandwidth_pct / 100.0, anomaly_pct=o.anomaly_pct)


class Reading(NamedTuple):
    """One op's MoE figures with what its routing verdict was read from, until siblings settle."""

    figures: MoeFigures
    cost: moe_model.Cost
    durations: Durations
    evidence: Evidence
    implementation: str
    peak_tbs: float
    over_warn: bool  # its efficiency is above the warning line


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
               dims: Sequence[Sequence[int]] | None) -> tuple[int, str, int | None]:
    """The op's row block, where it came from, and the kernel name's block when it disagrees.

    The launch arguments first (the sorted-token buffer the kernel really
    walks), then the kernel name, then the implementation's documented
    default, else the common default by batch (assumed).
    """
    named = block_from_kernels(family, list(kernels))
    launched = block_from_launch([tuple(d) for d in dims], shape.num_tokens, shape.topk,
                                 shape.num_experts) if dims else None
    if launched is not None:
        return launched, "launch_args", named if named is not None and named != launched else None
    if named is not None:
        return named, "kernel_name", None
    default = family.block.documented_default(shape.num_tokens)
    if default is not None:
        return default, "documented_default", None
    return assumed_block(shape.num_tokens), "assumed", None


def activation_quant(fmt: WeightFormat | None, kernels: Sequence[str]) -> str | None:
    """How the kernel quantises its 16-bit activations before an FP8 product, when it says so.

    Block-scaled FP8 weights (a 2-D scale block) come with activations
    quantised per group of the block's columns; AITER's ``pertokenFp8``
    kernels quantise per token.
    """
    if any("pertokenfp8" in k.lower() for k in kernels):
        return "FP8, one scale per token"
    if fmt is not None and fmt.element.startswith("fp8") and fmt.scale_block and len(fmt.scale_block) == 2:
        return f"FP8, one scale per {fmt.scale_block[1]}-column group of each token"
    return None


def _over_median(row: Mapping[str, Any]) -> float | None:
    """Time the calls spend above the median call: count × (mean − median), ms."""
    mean, median = row.get("Kernel Time (µs)_mean"), row.get("Kernel Time (µs)_median")
    if mean is None or median is None or mean <= median:
        return None
    return round(int(row["count"]) * (mean - median) / 1000.0, 3)


def _durations(row: Mapping[str, Any]) -> Durations:
    return Durations(int(row["count"]), row.get("Kernel Time (µs)_min"), row.get("Kernel Time (µs)_median"),
                     row.get("Kernel Time (µs)_max"), row.get("Kernel Time (µs)_mean"),
                     row.get("Kernel Time (µs)_std"))


def _interval(pair: tuple[float, float] | None, places: int | None = None) -> Interval | None:
    if pair is None:
        return None
    return Interval(low=round(pair[0], places) if places else pair[0],
                    high=round(pair[1], places) if places else pair[1])


def skew_record(found: Evidence, calls: int, block: int, noise: float, opts: Options,
                corrected: float | None, explained: bool | None) -> RoutingEvidence:
    """The routing evidence as the metrics hold it, rounded once."""
    # Judged on the figures as the metrics show them, so a reader can check it.
    spread, cov = rounded(found.max_over_median, 2), rounded(found.cov, 2)
    flagged = calls >= opts.skew_min_count and (
        (spread or 0.0) >= opts.skew_max_over_median or (cov or 0.0) >= opts.skew_cov)
    read = found.passes is not None
    return RoutingEvidence(
        calls=calls, max_over_median=spread, min_over_median=rounded(found.min_over_median, 2), cov=cov,
        flagged=flagged,
        refused=found.refused, direction=found.direction,
        verdict_source="own" if found.refused is None else None, sibling_op_index=None,
        block_rows=block if read else None, implied_passes=_interval(found.passes, 1),
        uniform_passes=_interval(found.uniform_passes), implied_active_experts=_interval(found.experts),
        uniform_active_experts=_interval(found.uniform_experts),
        bandwidth_tbs=rounded(found.bandwidth_tbs, 2), bandwidth_source=found.bandwidth_source,
        noise_pct=round(noise * 100, 1) if read else None,
        fast_calls_pct=rounded(None if found.fast_share is None else found.fast_share * 100, 1),
        corrected_efficiency_percent=rounded(corrected, 1), over_100_explained=explained,
    )


def _verdict_figures(cost: moe_model.Cost, t: Durations, found: Evidence, direction: str | None,
                     fast_experts: int | None, peak_tbs: float, over_warn: bool) -> tuple[float | None, bool | None]:
    """(corrected efficiency, whether routing explains an efficiency above 100 %) under a verdict."""
    corrected = None
    if direction == "fewer_experts" and fast_experts is not None:
        corrected = rev.corrected_efficiency(cost, t, found, fast_experts, peak_tbs)
    explained = None
    if over_warn:
        explained = direction == "fewer_experts" and rev.explains_over_100(cost, t, peak_tbs)
    return corrected, explained


def calibrated_crossover(cost: moe_model.Cost, row: Mapping[str, Any], found: Evidence, ctx: Context,
                         compute_rate: float | None, scales: bool) -> dict[str, Any]:
    """The crossover batch at the trace's own rates, with what it rests on.

    Memory: the rate the op's calls stream their passes at (its routing
    evidence, whose bytes count the scales), else its achieved TB/s, else
    the peak. Compute: ``compute_rate`` (compute-bound calls of the same
    family and weights in the trace), else the resolved peak.
    """
    if found.passes is not None and found.bandwidth_tbs:
        tbs, memory, scaled = found.bandwidth_tbs, "streaming_rate", True
    elif row.get("tbs"):
        tbs, memory, scaled = min(float(row["tbs"]), ctx.peak_tbs), "achieved", False
    else:
        tbs, memory, scaled = ctx.peak_tbs, "peak", False
    tflops, compute = (compute_rate, "compute_bound_calls") if compute_rate else (row["peak_tflops"], "peak")
    if row["bound"] == "compute":
        return {"crossover_tokens": None, "crossover_note": "compute_bound", "crossover_tokens_with_scales": None,
                "crossover_memory_tbs": None, "crossover_memory_source": None, "crossover_compute_tflops": None,
                "crossover_compute_source": None}
    found_at = moe_model.crossover_at_rates(cost, tflops, tbs, with_scales=scaled)
    with_scales = moe_model.crossover_at_rates(cost, tflops, tbs, with_scales=True) if scales else None
    return {
        "crossover_tokens": found_at.tokens, "crossover_note": found_at.note,
        "crossover_tokens_with_scales": with_scales.tokens if with_scales else None,
        "crossover_memory_tbs": rounded(tbs, 2), "crossover_memory_source": memory,
        "crossover_compute_tflops": rounded(tflops, 1), "crossover_compute_source": compute if tflops else None,
    }


def compute_rates(items: Sequence[tuple[Family | None, Shape | None, Mapping[str, Any]]]) -> dict[tuple, float]:
    """TFLOP/s the compute-bound calls of each (family, weight dtype, kind) and (family, weight dtype) reach.

    Time-weighted over the listed ops of that key: Σ rate · time / Σ time.
    """
    sums: dict[tuple, list[float]] = {}
    for family, shape, row in items:
        if family is None or shape is None or row["bound"] != "compute" or not row.get("tflops") \
                or not row.get("time_ms"):
            continue
        for key in ((family.key, shape.weight_dtype, shape.kind), (family.key, shape.weight_dtype)):
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += float(row["tflops"]) * float(row["time_ms"])
            acc[1] += float(row["time_ms"])
    return {key: work / time for key, (work, time) in sums.items()}


def _format_and_cost(family: Family, shape: Shape, kernels: Sequence[str], dims: Sequence[Sequence[int]] | None,
                     ) -> tuple[WeightFormat | None, moe_model.Cost | None]:
    """The expert weights' storage format and the op's byte cost under it (None when the dtypes leave it unknown)."""
    rows, hidden = (shape.gemm_n, shape.gemm_k) if shape.gemm_n else (
        (shape.hidden_dim, shape.inter_dim) if shape.kind == "down" else (shape.up_rows, shape.hidden_dim))
    fmt = weight_format(family, shape.weight_dtype, kernels, dims, shape.num_experts, rows or 0, hidden or 0)
    cost = moe_model.cost_of(shape, fmt.bits if fmt else None, fmt.overhead_bytes_per_weight if fmt else 0.0)
    return fmt, cost


def _padding_time_pct(bound: str | None, waste: float, flops: float, peak_tflops: float | None,
                      mean_us: float | None) -> float | None:
    """% of the op's time spent on the padding rows of its expert blocks."""
    if bound == "compute":
        return waste  # time at a fixed rate follows the rows issued
    if peak_tflops and mean_us:
        padded = flops * waste / max(1e-9, 100.0 - waste)
        return padded / (peak_tflops * 1e6) / mean_us * 100.0
    return None


def _compute_rate(rates: Mapping[tuple, float], family: Family, shape: Shape) -> float | None:
    """The measured compute rate for this implementation and weight dtype, by op kind where known."""
    return rates.get((family.key, shape.weight_dtype, shape.kind), rates.get((family.key, shape.weight_dtype)))


def moe_figures(family: Family, shape: Shape, row: Mapping[str, Any], kernels: Sequence[str],
                dims: Sequence[Sequence[int]] | None, ctx: Context,
                rates: Mapping[tuple, float] | None = None) -> Reading | None:
    """The MoE figures of one op, or None when its dtypes leave the bytes unknown."""
    fmt, cost = _format_and_cost(family, shape, kernels, dims)
    if cost is None:
        return None
    opts = ctx.options
    bound, eff = row["bound"], row["eff_roofline"]
    peak_tflops = row["peak_tflops"]
    low, expected, high = moe_model.active_bounds(shape)
    moved = moe_model.bytes_per_call(cost, expected)
    scales = moe_model.bytes_per_call(cost, expected, with_scales=True) - moved
    interval = moe_model.efficiency_interval(eff, cost) if bound == "memory" and eff is not None else None
    at_peak = moe_model.crossover_tokens(cost, peak_tflops, ctx.peak_tbs)
    block, block_source, block_conflict = block_rows(family, shape, kernels, dims)
    waste = moe_model.padding_waste_pct(shape, block)
    flops = moe_model.flops(shape)
    mean_us = row["mean_us"]
    padding_time = _padding_time_pct(bound, waste, flops, peak_tflops, mean_us)
    compute_rate = _compute_rate(rates or {}, family, shape)
    t = _durations(row)
    found = rev.evidence(cost, t, block, memory_bound=bound == "memory", tbs=row.get("tbs"), peak_tbs=ctx.peak_tbs,
                         efficiency=eff, rules=ctx.rules())
    over_warn = eff is not None and eff > opts.efficiency_warn_pct
    cross = calibrated_crossover(cost, row, found, ctx, compute_rate, bool(scales))
    corrected, explained = _verdict_figures(cost, t, found, found.direction,
                                            found.experts[0] if found.experts else None, ctx.peak_tbs, over_warn)
    figures = MoeFigures(
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
        **cross, crossover_tokens_at_peak=at_peak.tokens,
        padding_waste_pct=round(waste, 1), padding_block_rows=block, padding_block_source=block_source,
        padding_block_kernel_name_rows=block_conflict,
        padding_time_pct=rounded(padding_time, 1),
        phase="decode" if shape.num_tokens <= opts.decode_max_tokens else "prefill",
        skew=skew_record(found, t.calls, block, ctx.noise, opts, corrected, explained).model_copy(
            update={"time_over_median_ms": _over_median(row)}),
        scale_share_pct=round(scales / moved * 100.0, 1) if scales and moved else None,
        activation_quant=activation_quant(fmt, kernels) if dtypes.label(shape.input_dtype) in ("bf16", "fp16") else None,
        us_per_active_expert=rounded(mean_us / expected, 1) if mean_us else None,
        expert_stream_us_at_peak=round(moe_model.expert_bytes(cost) / (ctx.peak_tbs * 1e6), 2),
        implementation_check=implementation_check(family, shape, fmt, ctx.platform),
    )
    return Reading(figures, cost, t, found, family.implementation, ctx.peak_tbs, over_warn)


def _pair_key(r: Reading) -> tuple:
    f = r.figures
    return (r.implementation, f.num_tokens, f.num_experts, f.topk, f.hidden_dim, r.durations.calls)


def settle_verdicts(readings: list[Reading | None]) -> list[MoeFigures | None]:
    """One routing verdict for the up and down stages of the same calls.

    The stages run on the same calls, so they share the routing: the verdict
    comes from the up stage when its own durations are read, else from the
    down stage; the other stage takes it (``verdict_source: sibling``), with
    its corrected efficiency counted at the expert interval it was given.
    """
    out = [r.figures if r is not None else None for r in readings]
    for i, up in enumerate(readings):
        if up is None or up.figures.kind != "up":
            continue
        j = next((j for j, d in enumerate(readings) if d is not None and d.figures.kind == "down"
                  and _pair_key(d) == _pair_key(up)), None)
        if j is None:
            continue
        own = [x for x in (i, j) if readings[x].evidence.refused is None]  # type: ignore[union-attr]
        if not own:
            continue
        first, other = (own[0], j if own[0] == i else i)
        if readings[other].evidence.refused == "compute_bound":  # type: ignore[union-attr]
            continue  # routing does not change a compute-bound stage's bound
        out[other] = _adopt(readings[other], readings[first], first)  # type: ignore[arg-type]
        lead = out[first]
        assert lead is not None
        out[first] = lead.model_copy(update={"skew": lead.skew.model_copy(update={"sibling_op_index": other})})
    return out


def _adopt(r: Reading, lead: Reading, lead_index: int) -> MoeFigures:
    """``r``'s figures carrying the verdict of its sibling ``lead``."""
    verdict = lead.figures.skew
    experts = verdict.implied_active_experts
    corrected, explained = _verdict_figures(r.cost, r.durations, r.evidence, verdict.direction,
                                            int(experts.low) if experts else None, r.peak_tbs, r.over_warn)
    skew = r.figures.skew.model_copy(update={
        "direction": verdict.direction, "verdict_source": "sibling", "sibling_op_index": lead_index,
        "implied_active_experts": experts, "corrected_efficiency_percent": rounded(corrected, 1),
        "over_100_explained": explained,
    })
    return r.figures.model_copy(update={"skew": skew})
