"""Arithmetic of a case without PyTorch: FLOPs, the tensors it builds, bytes, roofline, datasheet peaks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .casespec import ACT_BYTES, Case, DATASHEET


def flops_per_call(role: str, M: int, K: int, N: int, topk: int, gated: bool) -> int:
    """up 2MKNk(2 if gated), down 2MKNk, fused up + down + MK(2k-1) for the weighted combine."""
    gemm = 2 * M * K * N * topk
    up = gemm * (2 if gated else 1)
    return {"up": up, "down": gemm}.get(role, up + gemm + M * K * (2 * topk - 1))


@dataclass
class TensorSpec:
    """One tensor a case builds: shape, stored dtype and bytes; kind weight/input/output/routing."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    nbytes: int
    kind: str
    note: str = ""


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _prod(shape: Sequence[int]) -> int:
    return math.prod(shape)


def weight_tensors(name: str, fmt: str, E: int, rows: int, cols: int,
                   block: Tuple[int, int] = (1, 1), zero_points: bool = False) -> List[TensorSpec]:
    """Stored tensors of E expert matrices [rows, cols] (cols = reduction dim) in format fmt."""
    full = (E, rows, cols)
    if fmt in ("bf16", "fp16", "fp32"):
        return [TensorSpec(name, full, fmt, ACT_BYTES[fmt] * _prod(full), "weight")]
    if fmt == "fp8":
        return [TensorSpec(name, full, "fp8_e4m3", _prod(full), "weight"),
                TensorSpec(name + "_scale", (E,), "fp32", 4 * E, "weight", "per-tensor scale per expert")]
    br, bc = block
    sshape = (E, _ceil(rows, br), _ceil(cols, bc))
    if fmt == "fp8_block":
        return [TensorSpec(name, full, "fp8_e4m3", _prod(full), "weight"),
                TensorSpec(name + "_scale", sshape, "fp32", 4 * _prod(sshape), "weight", f"one per {br}x{bc} block")]
    packed = (E, rows, _ceil(cols, 2))
    if fmt == "mxfp4":
        return [TensorSpec(name, packed, "uint8", _prod(packed), "weight", "e2m1, two per byte"),
                TensorSpec(name + "_scale", sshape, "uint8", _prod(sshape), "weight",
                           f"e8m0, one per {bc} along the reduction dim")]
    out = [TensorSpec(name, packed, "uint8", _prod(packed), "weight", "int4, two per byte"),
           TensorSpec(name + "_scale", sshape, "fp16", 2 * _prod(sshape), "weight", f"group size {bc}")]
    if zero_points:
        zshape = (E, _ceil(sshape[1], 2), sshape[2])
        out.append(TensorSpec(name + "_zeros", zshape, "uint8", _prod(zshape), "weight", "4-bit, two rows per byte"))
    return out


def up_cols(case: Case) -> int:
    """Output columns of the up projection: 2N when gated (gate then up), else N."""
    return 2 * case.N if case.gated else case.N


def tensor_plan(case: Case, stage: Optional[str] = None) -> List[TensorSpec]:
    """Every tensor one call of `stage` (default: the case's role; 'fused' = whole layer) builds."""
    stage = stage or case.role
    M, K, N, E, k, a = case.M, case.K, case.N, case.E, case.topk, case.act_dtype
    ab = ACT_BYTES[a]
    plan: List[TensorSpec] = []
    if stage == "down":
        plan.append(TensorSpec("h", (M * k, N), a, M * k * N * ab, "input",
                               "intermediate, one row per (token, expert)"))
    else:
        plan.append(TensorSpec("x", (M, K), a, M * K * ab, "input", "tokens"))
        plan += weight_tensors("w1", case.wfmt, E, up_cols(case), K, case.block, case.zero_points)
    if stage != "up":
        plan += weight_tensors("w2", case.wfmt, E, K, N, case.block, case.zero_points)
    plan += [TensorSpec("topk_ids", (M, k), "int32", 4 * M * k, "routing"),
             TensorSpec("topk_weights", (M, k), "fp32", 4 * M * k, "routing", "softmax-normalised")]
    if stage == "up":
        cols = N if case.act_fused else up_cols(case)
        plan.append(TensorSpec("out", (M * k, cols), a, M * k * cols * ab, "output"))
    elif stage == "down" and case.down_per_slot:
        plan.append(TensorSpec("out", (M, k, K), a, M * k * K * ab, "output",
                               "one row per (token, expert), summed by a separate kernel, as the trace's launch"))
    else:
        plan.append(TensorSpec("out", (M, K), a, M * K * ab, "output"))
    return plan


def expected_active_experts(E: int, topk: int, M: int) -> float:
    """Experts hit by at least one of M tokens under uniform routing: E(1 - (1 - k/E)^M)."""
    if topk >= E:
        return float(E)
    value = -E * math.expm1(M * math.log1p(-topk / E))
    return min(float(E), float(M * topk), max(float(topk), value))


def bytes_per_call(plan: Sequence[TensorSpec], E: int, active: float) -> float:
    """Weights (with scales/zeros) of `active` experts + activations read and written; routing left out."""
    weights = sum(t.nbytes for t in plan if t.kind == "weight")
    io = sum(t.nbytes for t in plan if t.kind in ("input", "output"))
    return weights * active / E + io


def roofline_us(flops: Optional[float], nbytes: Optional[float],
                tflops: Optional[float], tbs: Optional[float]) -> Optional[float]:
    """Ideal µs per call: max(FLOPs / peak, bytes / bandwidth); None without the peaks it needs."""
    if flops is None or nbytes is None or not tbs or (flops and not tflops):
        return None
    return max(flops / (tflops * 1e6) if flops else 0.0, nbytes / (tbs * 1e6))


def pct_of(ideal_us: Optional[float], measured_us: float) -> Optional[float]:
    return None if ideal_us is None or measured_us <= 0 else 100.0 * ideal_us / measured_us


def dtype_key(compute_spec: str) -> Optional[str]:
    """'fp8' or 'bf16' (fp16 counts as bf16) for a compute spec such as matrix_bf16."""
    spec = compute_spec.lower()
    return "fp8" if "fp8" in spec else "bf16" if ("bf16" in spec or "fp16" in spec) else None


def datasheet_peaks(device_name: str) -> Optional[Tuple[str, Dict[str, float], float]]:
    """(label, TFLOP/s by dtype, TB/s) from the built-in datasheet table, or None."""
    name = device_name.upper()
    for needles, label, tflops, tbs in DATASHEET:
        if all(n in name for n in needles):
            return label, tflops, tbs
    return None


