"""Levers: every way to win time that the listed ops support, each with its worth.

A lever is worth what it would save at best, in ms and in % of end-to-end
GPU time: an upper bound, as the peaks are reachable at best and the rest of
the call is taken as unchanged. A lever the trace cannot size is not made.
Levers are one of three paths: ``serving`` (how the model is run: batching,
parallelism, routing balance, fusion), ``model`` (a change of the model
itself: its top-k) and ``kernel``. :func:`lever_sums` adds the levers of one
kind from unrounded savings and rounds once, so the page prints one figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.contract import Metadata
from jarvis_moe.engine.moe_model import expected_active_experts
from jarvis_moe.metrics import MoeFigures, Operation, Pipeline
from jarvis_moe.metrics_levers import Lever, LeverSum

PATHS = {"batching": "serving", "expert_parallel": "serving", "routing_balance": "serving", "fusion": "serving",
         "topk": "model", "sibling_gap": "kernel", "row_block": "kernel", "fp8_compute": "kernel", "fp8_weights": "kernel",
         "padding": "kernel", "roofline_gap": "kernel"}
# The FP8 path each family offers for 16-bit weights: a kernel that reads FP8
# weights and quantises the activations itself. Low-bit formats (int4,
# MXFP4) have no named FP8 kernel in these libraries, so they get no lever.
FP8_PATHS = {
    "aiter_fused_1stage": "AITER's FP8 one-stage kernels (fmoe_fp8_g1u1, per-token FP8 activations)",
    "aiter_ck_2stage_up": "AITER's CK two-stage kernels with FP8 weights and per-token FP8 activations",
    "aiter_ck_2stage_down": "AITER's CK two-stage kernels with FP8 weights and per-token FP8 activations",
    "sglang_triton_fused_moe": ("SGLang's fused_moe_kernel with use_fp8_w8a8 (FP8 weights, activations "
                                "quantised per 128-column group)"),
}
# Streaming this far below the bandwidth, an op's time is not its bytes:
# halving the bytes would not halve the time.
MIN_STREAMING_PCT = 20.0
# Expert parallelism is sized for the smallest split, two GPUs.
SPLIT = 2


@dataclass
class Found:
    """One lever before rounding: its saving in ms exactly as computed."""

    kind: str
    ops: list[int]
    saving: float
    values: dict[str, object] = field(default_factory=dict)

    def lever(self, e2e: float | None) -> Lever:
        return Lever.model_validate({
            "kind": self.kind, "path": PATHS[self.kind], "op_indexes": self.ops, "value_from": None,
            "value_to": None, "unit": None, **self.values, "saving_ms": round(self.saving, 3),
            "percent_of_total": round(self.saving / e2e * 100.0, 2) if e2e else None})


def _lever(kind: str, ops: list[int], saving: float, **values: object) -> Found:
    return Found(kind, ops, saving, values)


def _streams(op: Operation) -> bool:
    """A memory-bound op whose time follows its bytes: not anomalous, and not far below the bandwidth."""
    eff = op.efficiency
    return (eff.bound_type == "memory" and not eff.is_anomaly and eff.roofline_efficiency_percent is not None
            and eff.roofline_efficiency_percent >= MIN_STREAMING_PCT)


def _weight_share(moe: MoeFigures) -> float:
    return moe.weight_bytes_per_call / moe.bytes_per_call if moe.bytes_per_call and moe.weight_bytes_per_call else 0.0


def _batching(i: int, op: Operation, moe: MoeFigures) -> list[Found]:
    """Serving the same tokens in calls of the crossover size: each weight read serves more tokens.

    Up to the crossover a call costs about its weight reads whatever its
    tokens, so the same tokens in calls of C tokens need M/C of the calls.
    """
    cross = moe.crossover_tokens
    if not cross or cross <= moe.num_tokens or not _streams(op):
        return []
    return [_lever("batching", [i], op.time_ms * (1 - moe.num_tokens / cross),
                   value_from=moe.num_tokens, value_to=cross, unit="tokens")]


def _topk(i: int, op: Operation, moe: MoeFigures) -> list[Found]:
    """Half the experts per token: compute-bound time follows the FLOPs, memory-bound time the weight reads."""
    if moe.topk < 2:
        return []
    fewer = moe.topk // 2
    if op.efficiency.bound_type == "compute":
        return [_lever("topk", [i], op.time_ms * (1 - fewer / moe.topk), value_from=moe.topk,
                       value_to=fewer, unit="FLOPs per token (top-k)")]
    if not _streams(op):
        return []
    now = expected_active_experts(moe.num_experts, moe.topk, moe.num_tokens)
    then = expected_active_experts(moe.num_experts, fewer, moe.num_tokens)
    if then >= now * 0.99:
        return []
    return [_lever("topk", [i], op.time_ms * _weight_share(moe) * (1 - then / now),
                   value_from=round(now, 2), value_to=round(then, 2), unit="experts")]


def _parallel(i: int, op: Operation, moe: MoeFigures) -> list[Found]:
    """Expert parallelism over two GPUs: each reads half the experts' weights per call."""
    if not _streams(op) or moe.active_experts.expected < 0.5 * moe.num_experts:
        return []
    return [_lever("expert_parallel", [i], op.time_ms * _weight_share(moe) * (1 - 1 / SPLIT),
                   value_from=moe.active_experts.expected, value_to=moe.num_experts, unit="experts")]


def _routing(i: int, op: Operation, moe: MoeFigures) -> list[Found]:
    """Stragglers: calls slower than reading every expert, tokens piled on hot experts.

    Evening the load would bring them to the median at best. Calls that read
    fewer experts are faster on one GPU, so that direction is no lever.
    """
    skew = moe.skew
    if not (skew.flagged and skew.direction == "slow_tail" and skew.time_over_median_ms):
        return []
    return [_lever("routing_balance", [i], skew.time_over_median_ms, value_from=skew.max_over_median,
                   value_to=1.0, unit="× the median call")]


def _row_block(i: int, op: Operation, moe: MoeFigures) -> list[Found]:
    """A larger row block for calls that route their tokens to a few hot experts.

    The fast calls stream a hot expert's weights once per row block it holds:
    (passes − experts) · one expert's weight bytes / the streaming rate, over
    the fast share of the calls, is what one pass per expert saves, at most
    the op's time. The block that holds a hot expert's rows in one pass is
    the power of two at or above M·k / (the fewest experts), at most M.
    """
    skew = moe.skew
    experts, passes, rate, share = (skew.implied_active_experts, skew.implied_passes, skew.bandwidth_tbs,
                                    skew.fast_calls_pct)
    if (skew.direction != "fewer_experts" or experts is None or passes is None or not rate or share is None
            or not moe.weight_bytes_per_call or not skew.block_rows or passes.low - experts.low <= 0):
        return []
    one_expert = moe.weight_bytes_per_call / moe.active_experts.expected
    saving = op.count * share / 100 * (passes.low - experts.low) * one_expert / (rate * 1e12) * 1e3
    rows = -(-moe.num_tokens * moe.topk // int(experts.low))
    block = min(1 << (rows - 1).bit_length(), moe.num_tokens)
    if block <= skew.block_rows:
        return []
    return [_lever("row_block", [i], min(saving, op.time_ms), value_from=skew.block_rows, value_to=block,
                   unit="rows")]


def _fp8_compute(i: int, op: Operation, fp8: float | None, bw: float) -> list[Found]:
    """A 16-bit compute-bound op that a named FP8 kernel would run at the FP8 peak, same efficiency."""
    eff, moe = op.efficiency, op.moe
    path = FP8_PATHS.get(op.family or "")
    spec_peak = eff.resolved_peak_maf
    if (moe is None or path is None or not fp8 or not spec_peak or fp8 <= spec_peak
            or dtypes.label(moe.input_dtype) not in ("bf16", "fp16")
            or moe.weight_format is None or moe.weight_format.bits < 16):
        return []
    # Near the ridge point an FP8 call turns memory-bound: no saving is sure.
    if eff.flops_per_byte is None or eff.flops_per_byte < fp8 / bw:
        return []
    return [_lever("fp8_compute", [i], op.time_ms * (1 - spec_peak / fp8), value_from=spec_peak,
                   value_to=fp8, unit="TFLOP/s", detail=path)]


def _per_op(ops: list[Operation], meta: Metadata) -> list[Found]:
    out: list[Found] = []
    fp8 = meta.compute_peaks().get("matrix_fp8")
    for i, op in enumerate(ops):
        eff, moe = op.efficiency, op.moe
        if eff.efficiency_percent is not None and not eff.is_anomaly and eff.efficiency_percent < 100:
            out.append(_lever("roofline_gap", [i], op.time_ms * (1 - eff.efficiency_percent / 100),
                              value_from=eff.efficiency_percent, value_to=100.0, unit="%"))
        if moe is None:
            continue
        if eff.bound_type == "memory":
            out += _batching(i, op, moe) + _parallel(i, op, moe) + _routing(i, op, moe) + _row_block(i, op, moe)
            fmt = moe.weight_format
            if fmt is not None and fmt.bits >= 16 and _streams(op) and _weight_share(moe):
                out.append(_lever("fp8_weights", [i], op.time_ms * 0.5 * _weight_share(moe),
                                  value_from=fmt.bits, value_to=8, unit="bits"))
        out += _topk(i, op, moe)
        if eff.bound_type == "compute":
            out += _fp8_compute(i, op, fp8, meta.peak_hbm_bw_tbs)
            if moe.padding_waste_pct and moe.padding_time_pct and moe.padding_block_source != "assumed":
                out.append(_lever("padding", [i], op.time_ms * moe.padding_time_pct / 100,
                                  value_from=moe.padding_waste_pct, value_to=0.0, unit="% of rows"))
    return out


def levers(ops: list[Operation], pairs: list[Pipeline], meta: Metadata, e2e: float | None,
           sibling_ratio: float, floor_pct: float) -> tuple[list[Lever], list[LeverSum]]:
    """Every lever the listed ops support, largest saving first, and each kind's sum."""
    found = _found(ops, pairs, meta, sibling_ratio)
    found.sort(key=lambda x: -x.saving)
    return [x.lever(e2e) for x in found], lever_sums(found, e2e, floor_pct)


def _found(ops: list[Operation], pairs: list[Pipeline], meta: Metadata, sibling_ratio: float) -> list[Found]:
    out = _per_op(ops, meta)
    for pair in pairs:
        out.append(_lever("fusion", [pair.up_op_index, pair.down_op_index], pair.saving_ms,
                          value_from=pair.intermediate_bytes_per_call, unit="bytes per call"))
        out += _sibling(ops, pair, sibling_ratio)
    return out


def _sibling(ops: list[Operation], pair: Pipeline, ratio: float) -> list[Found]:
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
    unit = "TB/s" if bound == "memory" else "TFLOP/s"
    s, f = ops[slow], ops[fast]
    ratios = {}
    if s.moe and f.moe and s.moe.bytes_per_call and f.moe.bytes_per_call:
        ratios = {"bytes_ratio": round(s.moe.bytes_per_call / f.moe.bytes_per_call, 2),
                  "time_ratio": round((s.time_ms / s.count) / (f.time_ms / f.count), 2)}
    return [_lever("sibling_gap", [slow, fast], s.time_ms * (1 - r_slow / r_fast),
                   value_from=r_slow, value_to=r_fast, unit=unit, **ratios)]


def lever_sums(found: list[Found], e2e: float | None, floor_pct: float) -> list[LeverSum]:
    """Each kind's levers together (roofline gaps excepted: the findings rank those).

    The sum is taken over the unrounded savings, so the page shows one
    rounding of one figure, never a sum of rounded ones.
    """
    raw: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for x in found:
        if x.kind == "roofline_gap":
            continue
        raw[x.kind] = raw.get(x.kind, 0.0) + x.saving
        members.setdefault(x.kind, [])
        members[x.kind] += [i for i in x.ops if i not in members[x.kind]]
    out = []
    for kind, ms in sorted(raw.items(), key=lambda kv: -kv[1]):
        share = ms / e2e * 100.0 if e2e else None
        out.append(LeverSum.model_validate({
            "kind": kind, "path": PATHS[kind], "op_indexes": members[kind], "saving_ms": round(ms, 3),
            "percent_of_total": None if share is None else round(share, 2),
            "recommended": share is not None and round(share, 2) >= floor_pct}))
    return out
