#!/usr/bin/env python3
"""Rebuild the slow MoE ops of a jarvis-moe report on a GPU, time them, and
compare them with the roofline the report used.

jarvis-moe writes, for a trace's MoE ops below the roofline threshold, a spec
(category_data/<category>_replay.json) and a copy of this script
(category_findings/<category>_replay.py). Copy both to a GPU machine with
PyTorch, then:

    python moe_unfused_replay.py                  # time every case
    python moe_unfused_replay.py --list           # one line per case
    python moe_unfused_replay.py --dry-run        # tensors, routing, FLOPs and bytes; no PyTorch needed
    python moe_unfused_replay.py --case 2 --routing skewed --zipf 1.2 --backend torch
    python moe_unfused_replay.py --device cpu --iters 3 --check   # tiny sanity run on CPU
    python moe_unfused_replay.py --json           # any mode, machine-readable

The spec is --spec PATH, else <script dir>/<script stem>.json, else
<script dir>/../category_data/<script stem>.json.

Each case is rebuilt from its shape (M tokens, K hidden, N expert intermediate
size, E experts, topk experts per token) with weights held in their stored
format (bf16, fp16, fp8, fp8_block, mxfp4, int4) and a generated routing
(uniform, skewed Zipf-like, or balanced). It runs on the library the trace
used (vllm, sglang, aiter) when that is importable and can run the case, else
on the torch reference (grouped per-expert matmuls, weights dequantised per
expert inside the timed region). Library backends run a whole MoE layer; an
up or down case then says so. The output gives the measured time, TFLOP/s and
TB/s from the spec's flops_per_call and bytes_per_call, the % of the trace
platform's roofline (roofline time = max(FLOPs / peak TFLOP/s, bytes / peak
TB/s), as a % of the measured time, as the report computes it), the trace's
time beside it, and the local GPU's roofline % when its peaks are known.

Python 3.9+, standard library only; PyTorch is imported only to run cases.
Exit codes: 0 done, 2 bad spec or arguments, or PyTorch/device missing.
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import inspect
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

FORMAT = "jarvis-moe-replay/1"
ROLES = ("fused", "up", "down")
ROUTINGS = ("uniform", "skewed", "balanced")
LIBRARIES = ("vllm", "sglang", "aiter")
WEIGHT_FORMATS = ("bf16", "fp16", "fp8", "fp8_block", "mxfp4", "int4")
ACT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
DEFAULT_BLOCK = {"fp8_block": (128, 128), "mxfp4": (1, 32), "int4": (1, 128)}
# OCP MX e2m1 code points, low nibble first within a byte.
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
# Dense (no sparsity) vendor datasheet peaks: (name must contain, label, TFLOP/s by dtype, HBM TB/s).
DATASHEET = (
    (("H200",), "H200", {"bf16": 989.4, "fp8": 1978.9}, 4.8),
    (("H100", "NVL"), "H100 NVL", {"bf16": 835.5, "fp8": 1670.5}, 3.9),
    (("H100", "PCIE"), "H100 PCIe", {"bf16": 756.5, "fp8": 1513.0}, 2.0),
    (("H100",), "H100 SXM", {"bf16": 989.4, "fp8": 1978.9}, 3.35),
    (("B200",), "B200", {"bf16": 2250.0, "fp8": 4500.0}, 8.0),
    (("MI325X",), "MI325X", {"bf16": 1307.4, "fp8": 2614.9}, 6.0),
    (("MI300X",), "MI300X", {"bf16": 1307.4, "fp8": 2614.9}, 5.3),
)


class SpecError(Exception):
    """The spec is missing, unreadable or not in the jarvis-moe-replay/1 format."""


class ReplayError(Exception):
    """Running is impossible here (no PyTorch, no such device, bad option)."""


# --- the spec ----------------------------------------------------------------


@dataclass
class Case:
    """One op of the spec, with every optional key resolved to a default."""

    number: int
    op: str
    role: str
    phase: str
    M: int
    K: int
    N: int
    E: int
    topk: int
    gated: bool
    act_dtype: str = "bf16"
    act_fn: str = "silu"
    act_fused: bool = False
    wfmt: str = "bf16"
    block: Tuple[int, int] = (1, 1)
    zero_points: bool = False
    backend: str = "torch"
    spec_flops: Optional[float] = None
    spec_bytes: Optional[float] = None
    trace: Dict[str, Any] = field(default_factory=dict)
    peak_tflops: Optional[float] = None
    peak_tbs: Optional[float] = None
    compute_spec: str = ""
    platform: str = "trace platform"


def find_spec(explicit: Optional[str], script: str) -> Path:
    """The spec path: --spec, else <stem>.json beside the script, else ../category_data/<stem>.json."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SpecError(f"spec not found: {path}")
        return path
    here, stem = Path(script).resolve().parent, Path(script).stem
    candidates = [here / f"{stem}.json", here.parent / "category_data" / f"{stem}.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise SpecError("no replay spec found; looked for " + " and ".join(map(str, candidates)) + " (pass --spec PATH)")


def load_spec(path: Path) -> Tuple[Dict[str, Any], List[Case]]:
    """The spec's top-level object and its cases; SpecError when it is not this format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"{path}: not a readable JSON file ({exc})") from None
    got = data.get("format") if isinstance(data, dict) else None
    if got != FORMAT:
        raise SpecError(f"{path}: not a jarvis-moe replay spec (format {got!r}, expected {FORMAT!r})")
    if not isinstance(data.get("cases"), list):
        raise SpecError(f"{path}: 'cases' must be a list")
    platform = data.get("platform") if isinstance(data.get("platform"), dict) else {}
    return data, [parse_case(raw, i, platform) for i, raw in enumerate(data["cases"], 1)]


def _obj(raw: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _count(shape: Dict[str, Any], key: str, where: str) -> int:
    value = _num(shape.get(key))
    if value is None or value != int(value) or value < 1:
        raise SpecError(f"{where}: shape.{key} must be a positive integer, got {shape.get(key)!r}")
    return int(value)


def parse_case(raw: Any, index: int, platform: Dict[str, Any]) -> Case:
    """A Case from one entry of 'cases'; unknown keys are ignored, optional ones defaulted."""
    where = f"case #{index}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be an object")
    shape, act, weights = _obj(raw, "shape"), _obj(raw, "activation"), _obj(raw, "weights")
    role = raw.get("role")
    if role not in ROLES:
        raise SpecError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
    dims = {k: _count(shape, k, where) for k in ("M", "K", "N", "E", "topk")}
    if dims["topk"] > dims["E"]:
        raise SpecError(f"{where}: topk {dims['topk']} > E {dims['E']}")
    wfmt = str(weights.get("dtype", "bf16")).lower()
    wfmt = _ALIASES.get(wfmt, wfmt)
    if wfmt not in WEIGHT_FORMATS:
        raise SpecError(f"{where}: weights.dtype {wfmt!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    adt = str(act.get("dtype", "bf16")).lower()
    adt = _ALIASES.get(adt, adt)
    if adt not in ACT_BYTES:
        raise SpecError(f"{where}: activation.dtype {adt!r} is not one of {', '.join(ACT_BYTES)}")
    block = _obj(weights, "scale").get("block")
    ok = isinstance(block, list) and len(block) == 2 and all(_num(b) and b >= 1 for b in block)
    block = (int(block[0]), int(block[1])) if ok else DEFAULT_BLOCK.get(wfmt, (1, 1))
    trace, peak = _obj(raw, "trace"), _obj(raw, "peak")
    spec_name = str(peak.get("compute_spec") or "")
    platform_peaks = _obj(platform, "peak_tflops")
    number = _num(raw.get("case"))
    return Case(
        number=int(number) if number is not None else index, op=str(raw.get("op", f"case {index}")),
        role=role, phase=str(raw.get("phase", "")), gated=bool(shape.get("gated", False)), **dims,
        act_dtype=adt, act_fn=str(act.get("function") or "silu").lower(),
        act_fused=bool(act.get("fused_in_up_kernel", False)), wfmt=wfmt, block=block,
        zero_points=bool(weights.get("zero_points", wfmt == "int4")),
        backend=str(raw.get("backend") or "torch").lower(),
        spec_flops=_num(raw.get("flops_per_call")), spec_bytes=_num(raw.get("bytes_per_call")), trace=trace,
        peak_tflops=_num(peak.get("tflops")) or _num(platform_peaks.get(spec_name)),
        peak_tbs=_num(peak.get("tbs")) or _num(platform.get("peak_hbm_tbs")),
        compute_spec=spec_name, platform=str(platform.get("name") or "trace platform"),
    )


def select_cases(cases: List[Case], wanted: Optional[Sequence[int]]) -> List[Case]:
    """The cases numbered in --case (all when none), in spec order."""
    if not wanted:
        return cases
    known = {c.number for c in cases}
    missing = [n for n in wanted if n not in known]
    if missing:
        raise SpecError(f"no case {missing[0]} in the spec; cases are {sorted(known)}")
    return [c for c in cases if c.number in set(wanted)]


# --- arithmetic: FLOPs, tensors, bytes, roofline ----------------------------


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
    if fmt in ("bf16", "fp16"):
        return [TensorSpec(name, full, fmt, 2 * _prod(full), "weight")]
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


# --- routing (pure Python, seeded) -------------------------------------------


def route_uniform(M: int, E: int, topk: int, rng: random.Random) -> List[List[int]]:
    """Each token picks topk distinct experts uniformly at random."""
    return [rng.sample(range(E), topk) for _ in range(M)]


def zipf_probabilities(E: int, s: float, rng: random.Random) -> List[float]:
    """p_e proportional to 1/rank^s, ranks dealt to experts by a seeded random permutation."""
    order = list(range(E))
    rng.shuffle(order)
    p = [0.0] * E
    for rank, expert in enumerate(order, 1):
        p[expert] = rank ** -s
    total = sum(p)
    return [v / total for v in p]


def route_skewed(M: int, E: int, topk: int, s: float, rng: random.Random) -> List[List[int]]:
    """Each token draws topk distinct experts without replacement, weighted Zipf-like."""
    p = zipf_probabilities(E, s, rng)
    ids = []
    for _ in range(M):
        # Efraimidis-Spirakis: the k smallest Exp(1)/p_e keys are a weighted draw without replacement.
        keys = [rng.expovariate(1.0) / p[e] for e in range(E)]
        ids.append(heapq.nsmallest(topk, range(E), key=keys.__getitem__))
    return ids


def route_balanced(M: int, E: int, topk: int, rng: random.Random) -> List[List[int]]:
    """Every expert gets M*topk/E (token, expert) pairs, within one; a token's experts are distinct."""
    perm = list(range(E))
    rng.shuffle(perm)
    return [[perm[(t * topk + j) % E] for j in range(topk)] for t in range(M)]


def router_weights(M: int, topk: int, rng: random.Random) -> List[List[float]]:
    """Per token, softmax of topk random logits: positive, summing to 1."""
    out = []
    for _ in range(M):
        logits = [rng.gauss(0.0, 1.0) for _ in range(topk)]
        peak = max(logits)
        exps = [math.exp(v - peak) for v in logits]
        total = sum(exps)
        out.append([v / total for v in exps])
    return out


def make_routing(kind: str, M: int, E: int, topk: int, seed: int = 0,
                 zipf: float = 1.2) -> Tuple[List[List[int]], List[List[float]]]:
    """(topk ids, router weights), both [M][topk], for one routing kind and seed."""
    rng = random.Random(seed)
    if kind == "uniform":
        ids = route_uniform(M, E, topk, rng)
    elif kind == "skewed":
        ids = route_skewed(M, E, topk, zipf, rng)
    elif kind == "balanced":
        ids = route_balanced(M, E, topk, rng)
    else:
        raise ValueError(f"unknown routing {kind!r}")
    return ids, router_weights(M, topk, rng)


def expert_counts(ids: Sequence[Sequence[int]], E: int) -> List[int]:
    counts = [0] * E
    for row in ids:
        for e in row:
            counts[e] += 1
    return counts


def routing_summary(ids: Sequence[Sequence[int]], E: int) -> Dict[str, Any]:
    counts = expert_counts(ids, E)
    return {"active_experts": sum(1 for c in counts if c), "experts": E, "min_tokens": min(counts),
            "mean_tokens": sum(counts) / E, "max_tokens": max(counts)}


# --- backend choice (no PyTorch needed) ---------------------------------------


def library_supports(lib: str, case: Case) -> Optional[str]:
    """None when `lib`'s entry point here can run the case, else why not."""
    if lib == "aiter" and case.wfmt not in ("bf16", "fp16"):
        return f"the aiter path here runs bf16/fp16 weights only, not {case.wfmt}"
    if case.wfmt == "mxfp4":
        return f"{lib} fused_experts takes no mxfp4 weights in the layout built here"
    if case.act_fn not in ("silu", "swiglu", "gelu"):
        return f"activation {case.act_fn!r} has no {lib} equivalent here"
    return None


def select_backend(requested: str, case: Case) -> Tuple[str, Optional[str]]:
    """(backend to use, note when it differs from what was asked)."""
    want = case.backend if requested == "auto" else requested
    if want == "torch":
        return "torch", None
    if want not in LIBRARIES:
        return "torch", f"backend {want!r} is not one this script drives; using torch"
    if importlib.util.find_spec(want) is None:
        return "torch", f"{want} is not importable here; using torch"
    why = library_supports(want, case)
    return ("torch", f"{why}; using torch") if why else (want, None)


def whole_layer_note(backend: str, case: Case) -> Optional[str]:
    if backend != "torch" and case.role != "fused":
        return f"{backend} times the whole layer, not only the {case.role} stage"
    return None


# --- PyTorch: building a case on the device ------------------------------------


def import_torch() -> Any:
    try:
        import torch  # noqa: PLC0415 - lazily, so --list/--dry-run work without it
    except ImportError:
        raise ReplayError("PyTorch is needed to run cases (--list and --dry-run work without it)") from None
    return torch


def torch_dtype(torch: Any, name: str) -> Any:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def fp8_dtype(torch: Any, device: Any) -> Tuple[Any, Optional[str]]:
    """The fp8 e4m3 dtype this device wants (fnuz on MI300-class), and a note when it is the fnuz one."""
    if device.type == "cuda" and getattr(torch.version, "hip", None):
        arch = getattr(torch.cuda.get_device_properties(device), "gcnArchName", "")
        if "gfx94" in arch and hasattr(torch, "float8_e4m3fnuz"):
            return torch.float8_e4m3fnuz, f"fp8 stored as float8_e4m3fnuz ({arch})"
    return getattr(torch, "float8_e4m3fn", None), None


def _blockwise(op: Callable[[Any, Any], Any], w: Any, per_block: Any, block: Tuple[int, int]) -> Any:
    """op(w, s) where s holds one value per (br x bc) block of w [rows, cols]."""
    (rows, cols), (br, bc) = w.shape, block
    if rows % br == 0 and cols % bc == 0:  # broadcast, without materialising the expanded scales
        tiled = op(w.reshape(rows // br, br, cols // bc, bc), per_block.reshape(rows // br, 1, cols // bc, 1))
        return tiled.reshape(rows, cols)
    expanded = per_block.repeat_interleave(br, 0)[:rows].repeat_interleave(bc, 1)[:, :cols]
    return op(w, expanded)


def _nibbles(torch: Any, packed: Any, n: int, dim: int) -> Any:
    """Two 4-bit values per byte, low nibble first, unpacked along dim (0 or -1), cut to length n."""
    if dim == 0:
        return torch.stack((packed & 0x0F, packed >> 4), 1).reshape(-1, packed.shape[1])[:n]
    return torch.stack((packed & 0x0F, packed >> 4), -1).reshape(*packed.shape[:-1], -1)[..., :n]


class StoredWeights:
    """E expert matrices [rows, cols] held on the device in their stored format.

    expert(e) dequantises one expert to the activation dtype, reading the
    stored bytes (and scales, zero points) of that expert only.
    """

    def __init__(self, torch: Any, specs: List[TensorSpec], case: Case, rows: int, cols: int,
                 device: Any, gen: Any) -> None:
        self.torch, self.fmt, self.rows, self.cols, self.block = torch, case.wfmt, rows, cols, case.block
        self.act = torch_dtype(torch, case.act_dtype)
        # Dequantise in the activation dtype (bf16 holds e2m1 x e8m0 exactly); fp16 lacks the range: fp32.
        self.work = torch.float32 if self.act == torch.float16 else self.act
        self.notes: List[str] = []
        self.t: Dict[str, Any] = {}
        self._dev, self._gen = device, gen
        main = specs[0]
        getattr(self, "_build_" + self.fmt.split("_")[0])(specs, main)
        self.q = self.t[main.name]

    def _rand_bytes(self, shape: Tuple[int, ...], low: int = 0, high: int = 256) -> Any:
        return self.torch.randint(low, high, shape, dtype=self.torch.uint8, device=self._dev, generator=self._gen)

    def _build_bf16(self, specs: List[TensorSpec], main: TensorSpec) -> None:
        dt = torch_dtype(self.torch, main.dtype)
        w = self.torch.randn(*main.shape, dtype=dt, device=self._dev, generator=self._gen)
        self.t[main.name] = w.mul_(1.0 / math.sqrt(self.cols))

    _build_fp16 = _build_bf16

    def _build_fp8(self, specs: List[TensorSpec], main: TensorSpec) -> None:
        torch = self.torch
        dt, note = fp8_dtype(torch, self._dev)
        if note:
            self.notes.append(note)
        if dt is None:
            self.notes.append(f"warning: this PyTorch has no float8_e4m3fn: {main.name} is a bf16 stand-in of the "
                              f"same shape, so it reads 2 bytes per weight instead of 1 and bytes differ from fp8")
            dt = torch.bfloat16
        q = torch.empty(main.shape, dtype=dt, device=self._dev)
        for e in range(main.shape[0]):  # one expert at a time: no float32 copy of every weight
            q[e] = torch.randn(main.shape[1:], device=self._dev, generator=self._gen).to(dt)
        self.t[main.name] = q
        scale = specs[1]
        jitter = 0.5 + torch.rand(scale.shape, device=self._dev, generator=self._gen)
        self.t[scale.name] = jitter / math.sqrt(self.cols) if self.fmt == "fp8_block" else \
            torch.full(scale.shape, 1.0 / math.sqrt(self.cols), device=self._dev)

    def _build_mxfp4(self, specs: List[TensorSpec], main: TensorSpec) -> None:
        self.t[main.name] = self._rand_bytes(main.shape)
        # e2m1 codes have an rms of about 2.93: aim the weights at an rms of 1/sqrt(cols).
        exponent = 127 + round(math.log2(1.0 / (2.93 * math.sqrt(self.cols))))
        self.t[specs[1].name] = self._rand_bytes(specs[1].shape, exponent - 1, exponent + 2)
        # Every byte's two e2m1 values, so one gather decodes a byte.
        pairs = [[E2M1[b & 0x0F], E2M1[b >> 4]] for b in range(256)]
        self.pairs = self.torch.tensor(pairs, dtype=self.work, device=self._dev)

    def _build_int4(self, specs: List[TensorSpec], main: TensorSpec) -> None:
        torch = self.torch
        self.t[main.name] = self._rand_bytes(main.shape)
        scale = specs[1]
        rand = 0.5 + torch.rand(scale.shape, device=self._dev, generator=self._gen)
        self.t[scale.name] = (rand / (6.5 * math.sqrt(self.cols))).to(torch.float16)
        if len(specs) > 2:
            self.t[specs[2].name] = self._rand_bytes(specs[2].shape)

    def scales(self) -> List[Any]:
        return [v for k, v in self.t.items() if k.endswith("_scale")]

    def zeros(self) -> Optional[Any]:
        return next((v for k, v in self.t.items() if k.endswith("_zeros")), None)

    def expert(self, e: int) -> Any:
        """Expert e as a [rows, cols] matrix in the activation dtype."""
        torch, rows, cols, fmt, work = self.torch, self.rows, self.cols, self.fmt, self.work
        q = self.q[e]
        if fmt in ("bf16", "fp16"):
            return q if q.dtype == self.act else q.to(self.act)
        scale = self.scales()[0][e].to(work)
        if fmt == "fp8":
            return (q.to(work) * scale).to(self.act)
        if fmt == "fp8_block":
            return _blockwise(torch.mul, q.to(work), scale, self.block).to(self.act)
        if fmt == "mxfp4":
            values = self.pairs.index_select(0, q.reshape(-1).int()).reshape(rows, -1)[:, :cols]
            return _blockwise(torch.mul, values, torch.exp2(scale - 127), self.block).to(self.act)
        codes = _nibbles(torch, q, cols, -1).to(work)
        zeros = self.zeros()
        if zeros is None:
            codes = codes - 8
        else:
            codes = _blockwise(torch.sub, codes, _nibbles(torch, zeros[e], scale.shape[0], 0).to(work), self.block)
        return _blockwise(torch.mul, codes, scale, self.block).to(self.act)


@dataclass
class Problem:
    """A case's tensors on the device, its routing, and the per-expert groups of the reference."""

    case: Case
    stage: str
    ids: List[List[int]]
    gates: List[List[float]]
    x: Any = None
    h: Any = None
    w1: Optional[StoredWeights] = None
    w2: Optional[StoredWeights] = None
    topk_ids: Any = None
    topk_weights: Any = None
    out: Any = None
    groups: List[Tuple[int, Any, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def build_problem(torch: Any, case: Case, ids: List[List[int]], gates: List[List[float]],
                  device: Any, seed: int = 0, stage: Optional[str] = None) -> Problem:
    """Allocate every tensor of tensor_plan(case, stage) on the device, with random contents."""
    stage = stage or case.role
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    act = torch_dtype(torch, case.act_dtype)
    p = Problem(case, stage, ids, gates)
    plan = tensor_plan(case, stage)
    for name in ("w1", "w2"):
        specs = [t for t in plan if t.name == name or t.name.startswith(name + "_")]
        if specs:
            rows, cols = (up_cols(case), case.K) if name == "w1" else (case.K, case.N)
            weights = StoredWeights(torch, specs, case, rows, cols, device, gen)
            setattr(p, name, weights)
            p.notes += [n for n in weights.notes if n not in p.notes]
    for spec in plan:
        if spec.kind == "input":
            setattr(p, spec.name, torch.randn(spec.shape, dtype=act, device=device, generator=gen))
        elif spec.kind == "output":
            setattr(p, spec.name, torch.zeros(spec.shape, dtype=act, device=device))
    p.topk_ids = torch.tensor(ids, dtype=torch.int32, device=device)
    p.topk_weights = torch.tensor(gates, dtype=torch.float32, device=device)
    p.groups = expert_groups(torch, ids, device)
    return p


def expert_groups(torch: Any, ids: List[List[int]], device: Any) -> List[Tuple[int, Any, Any]]:
    """Per active expert: (expert, token rows, flat token*topk+slot rows); built once, outside timing."""
    by_expert: Dict[int, Tuple[List[int], List[int]]] = {}
    for t, row in enumerate(ids):
        for j, e in enumerate(row):
            toks, slots = by_expert.setdefault(e, ([], []))
            toks.append(t)
            slots.append(t * len(row) + j)
    return [(e, torch.tensor(toks, device=device), torch.tensor(slots, device=device))
            for e, (toks, slots) in sorted(by_expert.items())]


def activate(torch: Any, h: Any, case: Case) -> Any:
    """silu/swiglu -> silu(gate)*up, gelu -> gelu(gate)*up when gated; else the function alone."""
    fn = torch.nn.functional.gelu if case.act_fn == "gelu" else torch.nn.functional.silu
    return fn(h[:, :case.N]) * h[:, case.N:] if case.gated else fn(h)


def reference_forward(torch: Any, p: Problem) -> Any:
    """The torch reference: grouped per-expert matmuls, activation, weighted combine (index_add_)."""
    case, out = p.case, p.out
    out.zero_()
    flat_gates = p.topk_weights.view(-1)
    for e, toks, slots in p.groups:
        if case.role == "down":
            h = p.h.index_select(0, slots)
        else:
            h = p.x.index_select(0, toks) @ p.w1.expert(e).t()
            if case.role == "fused" or case.act_fused:
                h = activate(torch, h, case)
            if case.role == "up":
                out.index_copy_(0, slots, h)
                continue
        y = h @ p.w2.expert(e).t()
        out.index_add_(0, toks, y * flat_gates.index_select(0, slots).unsqueeze(1).to(y.dtype))
    return out


def dense_forward(torch: Any, p: Problem, tokens: int) -> Any:
    """Float32 loop over the first `tokens` tokens and each of their experts: the --check oracle."""
    case, k = p.case, p.case.topk

    def w(which: str, e: int) -> Any:
        return getattr(p, which).expert(e).float()

    rows = tokens * k if case.role == "up" else tokens
    out = torch.zeros((rows, p.out.shape[1]), dtype=torch.float32, device=p.out.device)
    for t in range(tokens):
        for j, e in enumerate(p.ids[t]):
            if case.role == "down":
                h = p.h[t * k + j].float()
            else:
                h = (p.x[t].float() @ w("w1", e).t()).unsqueeze(0)
                h = activate(torch, h, case)[0] if (case.role == "fused" or case.act_fused) else h[0]
                if case.role == "up":
                    out[t * k + j] = h
                    continue
            out[t] += p.gates[t][j] * (h @ w("w2", e).t())
    return out


def check_reference(torch: Any, p: Problem, max_tokens: int = 64) -> Dict[str, Any]:
    """Max error of the reference output against the dense loop, relative to the dense output's max."""
    tokens = min(p.case.M, max_tokens)
    dense = dense_forward(torch, p, tokens)
    ref = reference_forward(torch, p)[: dense.shape[0]].float()
    err = (ref - dense).abs().max().item() / max(dense.abs().max().item(), 1e-30)
    return {"max_rel_err": err, "tokens_checked": tokens}


# --- library backends (whole layer; only when importable) ----------------------


def _quant_kwargs(p: Problem) -> Dict[str, Any]:
    """Weight-format flags in the vLLM/SGLang fused_experts vocabulary."""
    fmt, kw = p.case.wfmt, {}
    if fmt in ("fp8", "fp8_block", "int4"):
        kw.update(w1_scale=p.w1.scales()[0], w2_scale=p.w2.scales()[0])
    if fmt in ("fp8", "fp8_block"):
        kw.update(use_fp8_w8a8=True, block_shape=list(p.case.block) if fmt == "fp8_block" else None)
    if fmt == "int4":
        # moe_wna16 passes block_shape=[0, group_size]; zero points [E, rows/2, groups], scales [E, rows, groups].
        kw.update(use_int4_w4a16=True, w1_zp=p.w1.zeros(), w2_zp=p.w2.zeros(), block_shape=[0, p.case.block[1]])
    return kw


def _accepted(fn: Callable[..., Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def vllm_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # vllm/model_executor/layers/fused_moe/fused_moe.py (vllm-project/vllm@13cb3e44):
    #   fused_experts(hidden_states, w1, w2, topk_weights, topk_ids, inplace=False, activation="silu",
    #                 apply_router_weight_on_input=False, global_num_experts=-1, expert_map=None,
    #                 quant_config=None, allow_deep_gemm=False)
    # quant configs, vllm/model_executor/layers/fused_moe/config.py:
    #   fp8_w8a8_moe_quant_config(w1_scale, w2_scale, a1_scale=None, a2_scale=None, ..., block_shape=None)
    #   int4_w4a16_moe_quant_config(w1_scale, w2_scale, w1_zp, w2_zp, block_shape=None)
    # Older releases take use_fp8_w8a8=/use_int4_w4a16=/w1_scale=... directly instead of quant_config.
    from vllm.model_executor.layers.fused_moe.fused_moe import fused_experts
    case, quant = p.case, _quant_kwargs(p)
    act = "gelu" if case.act_fn == "gelu" else "silu"
    kwargs: Dict[str, Any] = {"inplace": False, "activation": act if case.gated else act + "_no_mul"}
    if "quant_config" in inspect.signature(fused_experts).parameters:
        from vllm.model_executor.layers.fused_moe import config as moe_config
        if quant.get("use_fp8_w8a8"):
            kwargs["quant_config"] = moe_config.fp8_w8a8_moe_quant_config(
                w1_scale=quant["w1_scale"], w2_scale=quant["w2_scale"], block_shape=quant["block_shape"])
        elif quant.get("use_int4_w4a16"):
            kwargs["quant_config"] = moe_config.int4_w4a16_moe_quant_config(
                w1_scale=quant["w1_scale"], w2_scale=quant["w2_scale"], w1_zp=quant["w1_zp"],
                w2_zp=quant["w2_zp"], block_shape=quant["block_shape"])
    else:
        kwargs.update(_accepted(fused_experts, quant))
    return lambda: fused_experts(p.x, p.w1.q, p.w2.q, p.topk_weights, p.topk_ids, **kwargs)


def sglang_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # python/sglang/srt/layers/moe/fused_moe_triton/fused_moe.py (sgl-project/sglang):
    #   fused_experts(hidden_states, w1, w2, topk_output: StandardTopKOutput, moe_runner_config: MoeRunnerConfig,
    #                 b1=None, b2=None, use_fp8_w8a8=False, use_int8_w8a8=False, use_int8_w8a16=False,
    #                 use_int4_w4a16=False, per_channel_quant=False, w1_scale=None, w2_scale=None,
    #                 w1_zp=None, w2_zp=None, a1_scale=None, a2_scale=None, block_shape=None)
    # StandardTopKOutput(topk_weights, topk_ids, router_logits): sglang/srt/layers/moe/topk.py;
    # MoeRunnerConfig(num_experts, ..., activation="silu", is_gated=True, inplace=True, ...): moe_runner/base.py.
    # Newer trees moved it to sglang.srt.layers.moe.moe_runner.triton_utils; older ones take
    # (topk_weights, topk_ids, inplace=..., activation=...) instead of topk_output/moe_runner_config.
    try:
        from sglang.srt.layers.moe.fused_moe_triton import fused_experts
    except ImportError:
        from sglang.srt.layers.moe.moe_runner.triton_utils import fused_experts
    case = p.case
    act = "gelu" if case.act_fn == "gelu" else "silu"
    kwargs = _accepted(fused_experts, _quant_kwargs(p))
    if "topk_output" not in inspect.signature(fused_experts).parameters:
        if not case.gated:
            raise NotImplementedError("this sglang fused_experts has no non-gated path")
        kwargs.update(_accepted(fused_experts, {"inplace": False, "activation": act}))
        return lambda: fused_experts(p.x, p.w1.q, p.w2.q, p.topk_weights, p.topk_ids, **kwargs)
    from sglang.srt.layers.moe.moe_runner import MoeRunnerConfig
    from sglang.srt.layers.moe.topk import StandardTopKOutput
    names = {f.name for f in fields(MoeRunnerConfig)}
    if not case.gated and "is_gated" not in names:
        raise NotImplementedError("this sglang MoeRunnerConfig has no is_gated flag")
    wanted = {"num_experts": case.E, "num_local_experts": case.E, "top_k": case.topk, "hidden_size": case.K,
              "intermediate_size_per_partition": case.N, "params_dtype": p.x.dtype, "activation": act,
              "is_gated": case.gated, "inplace": False}
    config = MoeRunnerConfig(**{k: v for k, v in wanted.items() if k in names})
    logits = torch.zeros((case.M, case.E), dtype=torch.float32, device=p.x.device)
    topk = StandardTopKOutput(p.topk_weights, p.topk_ids, logits)
    return lambda: fused_experts(p.x, p.w1.q, p.w2.q, topk, config, **kwargs)


def aiter_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # aiter/fused_moe.py (ROCm/aiter@e4048607):
    #   fused_moe(hidden_states, w1, w2, topk_weight, topk_ids, expert_mask=None,
    #             activation=ActivationType.Silu, quant_type=QuantType.No, doweight_stage1=False, ...)
    # w1 [E, 2N (gate, up), K], w2 [E, K, N], pre-shuffled as op_tests/test_moe_2stage.py does:
    #   aiter.ops.shuffle.shuffle_weight(w, layout=(16, 16)).
    import aiter
    from aiter.fused_moe import fused_moe
    from aiter.ops.shuffle import shuffle_weight
    act = aiter.ActivationType.Gelu if p.case.act_fn == "gelu" else aiter.ActivationType.Silu
    w1, w2 = shuffle_weight(p.w1.q, layout=(16, 16)), shuffle_weight(p.w2.q, layout=(16, 16))
    return lambda: fused_moe(p.x, w1, w2, p.topk_weights, p.topk_ids, activation=act,
                             quant_type=aiter.QuantType.No)


RUNNERS = {"vllm": vllm_runner, "sglang": sglang_runner, "aiter": aiter_runner}


# --- timing and running a case ----------------------------------------------------


def synchronize(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_op(torch: Any, fn: Callable[[], Any], device: Any, warmup: int, iters: int,
            flush_mib: int = 0, graph: bool = False) -> Dict[str, Any]:
    """Mean/median/min µs of `iters` calls after `warmup`: CUDA events on a GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    synchronize(torch, device)
    if device.type != "cuda":
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e6)
        return _stats(times, "perf_counter")
    method = "cuda events"
    if graph:
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            fn()
        fn, method = captured.replay, "cuda events, cuda graph"
    flush = torch.empty(flush_mib << 20, dtype=torch.uint8, device=device) if flush_mib else None
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in pairs:
        if flush is not None:
            flush.zero_()  # evict the previous call's weights from L2 / last-level cache
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return _stats([s.elapsed_time(e) * 1000.0 for s, e in pairs], method + (", cache flushed" if flush_mib else ""))


def _stats(times: List[float], method: str) -> Dict[str, Any]:
    return {"iters": len(times), "mean_us": statistics.fmean(times), "median_us": statistics.median(times),
            "min_us": min(times), "method": method}


def local_peaks(args: argparse.Namespace, device_name: str, case: Case) -> Optional[Dict[str, Any]]:
    """The local GPU's peaks for the case's compute spec: --peak-* first, else the datasheet table."""
    sheet = datasheet_peaks(device_name)
    key = dtype_key(case.compute_spec) or dtype_key(case.act_dtype)
    tflops, tbs, source = args.peak_tflops, args.peak_tbs, "given"
    if sheet and (tflops is None or tbs is None):
        source = "datasheet" if tflops is None and tbs is None else "given + datasheet"
        tflops = tflops if tflops is not None else sheet[1].get(key or "")
        tbs = tbs if tbs is not None else sheet[2]
    if tflops is None or tbs is None:
        return None
    return {"device": device_name, "tflops": tflops, "tbs": tbs, "source": source}


def run_case(torch: Any, case: Case, args: argparse.Namespace, device: Any, device_name: str) -> Dict[str, Any]:
    """Build, optionally check, and time one case; the figures of its report."""
    ids, gates = make_routing(args.routing, case.M, case.E, case.topk, args.seed, args.zipf)
    backend, why = select_backend(args.backend, case)
    notes = [why] if why else []
    problem = build_problem(torch, case, ids, gates, device, args.seed, "fused" if backend != "torch" else None)
    fn: Callable[[], Any] = lambda: reference_forward(torch, problem)  # noqa: E731
    if backend != "torch":
        try:
            fn = RUNNERS[backend](torch, problem)
            fn()
            synchronize(torch, device)
        except Exception as exc:  # noqa: BLE001 - any library failure falls back to the reference
            notes.append(f"warning: {backend} backend failed ({type(exc).__name__}: {exc}); using torch")
            backend = "torch"
            problem = build_problem(torch, case, ids, gates, device, args.seed)
            fn = lambda: reference_forward(torch, problem)  # noqa: E731
    notes += problem.notes + [n for n in [whole_layer_note(backend, case)] if n]
    if backend == "torch":
        notes.append("torch reference: per-expert dequantise and matmul as separate ops; a baseline, not a tuned "
                     "kernel")
    result: Dict[str, Any] = {"case": case.number, "op": case.op, "role": case.role, "backend": backend,
                              "routing": dict(kind=args.routing, seed=args.seed, **routing_summary(ids, case.E))}
    if args.check:
        ref_problem = problem if backend == "torch" else build_problem(torch, case, ids, gates, device, args.seed)
        result["check"] = check_reference(torch, ref_problem)
    flush_mib = 0 if args.no_flush else 512
    try:
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib, args.graph)
    except Exception as exc:  # noqa: BLE001 - a capture failure of any kind falls back to eager timing
        if not args.graph:
            raise
        notes.append(f"warning: cuda graph capture failed ({type(exc).__name__}: {exc}); timed eagerly")
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib)
    result.update(timing=timing, notes=notes, **figures(case, timing["mean_us"], local_peaks(args, device_name, case)))
    return result


def figures(case: Case, mean_us: float, local: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Throughput, trace comparison and roofline % of a measured mean time."""
    flops, nbytes = case.spec_flops, case.spec_bytes
    trace_mean = _num(case.trace.get("mean_us"))
    trace_roof = roofline_us(flops, nbytes, case.peak_tflops, case.peak_tbs)
    out: Dict[str, Any] = {
        "tflops": flops / (mean_us * 1e6) if flops is not None else None,
        "tbs": nbytes / (mean_us * 1e6) if nbytes is not None else None,
        "trace": {"mean_us": trace_mean, "efficiency_pct": _num(case.trace.get("efficiency_pct")),
                  "ratio": mean_us / trace_mean if trace_mean else None},
        "roofline": {"platform": case.platform, "tflops": case.peak_tflops, "tbs": case.peak_tbs,
                     "roofline_us": trace_roof, "pct": pct_of(trace_roof, mean_us)},
        "local_roofline": None,
    }
    if local:
        local_roof = roofline_us(flops, nbytes, local["tflops"], local["tbs"])
        out["local_roofline"] = dict(local, roofline_us=local_roof, pct=pct_of(local_roof, mean_us))
    return out


# --- dry-run and list -------------------------------------------------------------


def plan_case(case: Case, args: argparse.Namespace) -> Dict[str, Any]:
    """The dry-run of one case: tensors, routing, backend, recomputed FLOPs and bytes."""
    ids, _ = make_routing(args.routing, case.M, case.E, case.topk, args.seed, args.zipf)
    backend, why = select_backend(args.backend, case)
    plan = tensor_plan(case, "fused" if backend != "torch" else None)
    role_plan = tensor_plan(case)
    summary = routing_summary(ids, case.E)
    expected = expected_active_experts(case.E, case.topk, case.M)
    notes = [n for n in (why, whole_layer_note(backend, case)) if n]
    return {
        "case": case.number, "op": case.op, "role": case.role, "phase": case.phase,
        "shape": {"M": case.M, "K": case.K, "N": case.N, "E": case.E, "topk": case.topk, "gated": case.gated},
        "weights": case.wfmt, "activation": {"dtype": case.act_dtype, "function": case.act_fn,
                                             "fused_in_up_kernel": case.act_fused},
        "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
                     "kind": t.kind, "note": t.note} for t in plan],
        "routing": dict(kind=args.routing, seed=args.seed, **summary),
        "backend": backend, "backend_in_spec": case.backend, "notes": notes,
        "flops_per_call": {"recomputed": flops_per_call(case.role, case.M, case.K, case.N, case.topk, case.gated),
                           "spec": case.spec_flops},
        "bytes_per_call": {"recomputed_expected_active": bytes_per_call(role_plan, case.E, expected),
                           "expected_active_experts": expected,
                           "recomputed_this_routing": bytes_per_call(role_plan, case.E, summary["active_experts"]),
                           "spec": case.spec_bytes},
    }


def list_row(case: Case) -> Dict[str, Any]:
    return {"case": case.number, "op": case.op, "role": case.role, "phase": case.phase, "M": case.M,
            "K": case.K, "N": case.N, "E": case.E, "topk": case.topk, "gated": case.gated,
            "weights": case.wfmt, "trace_mean_us": _num(case.trace.get("mean_us")),
            "efficiency_pct": _num(case.trace.get("efficiency_pct"))}


# --- text output ---------------------------------------------------------------------


def _f(value: Optional[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    return "n/a" if value is None else fmt.format(value) + unit


def _shape(case: Dict[str, Any]) -> str:
    s = case["shape"] if "shape" in case else case
    return f"M={s['M']} K={s['K']} N={s['N']} E={s['E']} topk={s['topk']}" + (" gated" if s["gated"] else "")


def format_list(meta: Dict[str, Any], rows: List[Dict[str, Any]]) -> str:
    platform = _obj(meta, "platform").get("name", "?")
    lines = [f"{meta.get('category', '?')}: {len(rows)} case(s), trace on {platform}"
             f" ({meta.get('generated_by', 'unknown generator')})"]
    for r in rows:
        lines.append(f"  {r['case']:>3}  {r['op']}  {r['role']}/{r['phase'] or '-'}  {_shape(r)}  {r['weights']}"
                     f"  trace {_f(r['trace_mean_us'], unit=' us')}  eff {_f(r['efficiency_pct'], unit='%')}")
    return "\n".join(lines)


def format_plan(p: Dict[str, Any]) -> str:
    act = p["activation"]
    lines = [f"case {p['case']}  {p['op']}  ({p['role']}, {p['phase'] or '-'})",
             f"  shape     {_shape(p)}, weights {p['weights']}, activations {act['dtype']} {act['function']}"
             + (" (fused in up kernel)" if act["fused_in_up_kernel"] else ""),
             f"  backend   {p['backend']} (spec: {p['backend_in_spec']})", "  tensors"]
    for t in p["tensors"]:
        shape = "[" + ", ".join(map(str, t["shape"])) + "]"
        lines.append(f"    {t['name']:<13} {shape:<22} {t['dtype']:<9} {t['bytes']:>15,} B  {t['note']}")
    r, fl, by = p["routing"], p["flops_per_call"], p["bytes_per_call"]
    lines += [f"  routing   {r['kind']} (seed {r['seed']}): {r['active_experts']} of {r['experts']} experts active,"
              f" tokens per expert min {r['min_tokens']} / mean {r['mean_tokens']:.2f} / max {r['max_tokens']}",
              f"  flops     {fl['recomputed']:,} recomputed | spec {_f(fl['spec'], '{:,.0f}')}",
              f"  bytes     {by['recomputed_expected_active']:,.0f} recomputed at {by['expected_active_experts']:.2f}"
              f" expected active experts (weights with scales) | spec {_f(by['spec'], '{:,.0f}')}",
              f"            {by['recomputed_this_routing']:,.0f} at this routing's {r['active_experts']} active"
              " experts"]
    return "\n".join(lines + [f"  note: {n}" for n in p["notes"]])


def format_result(case: Case, r: Dict[str, Any]) -> str:
    t, tr, roof, loc = r["timing"], r["trace"], r["roofline"], r["local_roofline"]
    lines = [f"case {case.number}  {case.op}  ({case.role}, {case.phase or '-'}, {_shape(vars(case))}, {case.wfmt})",
             f"  backend     {r['backend']}",
             f"  measured    mean {t['mean_us']:.2f} us  median {t['median_us']:.2f} us  min {t['min_us']:.2f} us"
             f"  ({t['iters']} iters, {t['method']})",
             f"  throughput  {_f(r['tflops'], '{:.3g}', ' TFLOP/s')}  {_f(r['tbs'], '{:.3g}', ' TB/s')}"
             f"  (spec FLOPs and bytes per call)",
             f"  trace       mean {_f(tr['mean_us'], unit=' us')} ({_f(tr['efficiency_pct'], unit='%')} of roofline)"
             f"  -> replay/trace {_f(tr['ratio'], '{:.2f}', 'x')}",
             f"  roofline    {roof['platform']} ({_f(roof['tflops'], '{:g}')} TFLOP/s, {_f(roof['tbs'], '{:g}')} TB/s):"
             f" {_f(roof['roofline_us'], '{:.3g}', ' us')} = {_f(roof['pct'], '{:.3g}', '%')} of measured"]
    if loc:
        lines.append(f"  local       {loc['device']} ({loc['source']} {loc['tflops']:g} TFLOP/s, {loc['tbs']:g} TB/s):"
                     f" {_f(loc['roofline_us'], '{:.3g}', ' us')} = {_f(loc['pct'], '{:.3g}', '%')} of measured")
    if "check" in r:
        c = r["check"]
        lines.append(f"  check       max rel err {c['max_rel_err']:.2e} (reference vs dense loop, "
                     f"{c['tokens_checked']} tokens)")
    return "\n".join(lines + [f"  note: {n}" for n in r["notes"]])


# --- command line ------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    doc = (__doc__ or "").strip()
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="one line per case")
    mode.add_argument("--dry-run", action="store_true", help="the plan of each case, without PyTorch")
    parser.add_argument("--spec", help="the replay spec JSON (default: found beside this script)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("--case", type=int, action="append", metavar="N", help="only case N (repeatable)")
    parser.add_argument("--routing", choices=ROUTINGS, default="uniform", help="expert choice (default uniform)")
    parser.add_argument("--zipf", type=float, default=1.2, metavar="S", help="skew exponent of --routing skewed")
    parser.add_argument("--seed", type=int, default=0, help="seed of routing and tensor contents (default 0)")
    parser.add_argument("--backend", choices=("auto", "torch") + LIBRARIES, default="auto",
                        help="auto = the case's backend when importable, else torch")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; cpu for a sanity run)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--iters", type=int, default=50, help="timed calls (default 50)")
    parser.add_argument("--peak-tflops", type=float, help="local GPU compute peak, TFLOP/s, for the local roofline")
    parser.add_argument("--peak-tbs", type=float, help="local GPU memory bandwidth, TB/s, for the local roofline")
    parser.add_argument("--check", action="store_true", help="compare the torch reference with a dense per-token loop")
    parser.add_argument("--graph", action="store_true", help="time replays of a CUDA graph of the op")
    parser.add_argument("--no-flush", action="store_true", help="do not flush the GPU cache between timed calls")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.zipf < 0:
        parser.error("--iters must be >= 1, --warmup >= 0 and --zipf >= 0")
    return args


def run_all(cases: List[Case], args: argparse.Namespace, emit: Callable[[str], None], spec: Path) -> Dict[str, Any]:
    """Run every case on the --device; emit() each case's text as soon as it is timed."""
    torch = import_torch()
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ReplayError(f"bad --device {args.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReplayError("--device cuda but torch.cuda.is_available() is False; try --device cpu for a sanity run")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    emit(f"spec {spec}\ndevice {name}, torch {torch.__version__}")
    results = []
    for case in cases:
        results.append(run_case(torch, case, args, device, name))
        emit("\n" + format_result(case, results[-1]))
    return {"device": name, "torch": torch.__version__, "cases": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        path = find_spec(args.spec, __file__)
        meta, cases = load_spec(path)
        cases = select_cases(cases, args.case)
        mode = "list" if args.list else "dry-run" if args.dry_run else "run"
        doc: Dict[str, Any] = {"tool": "jarvis-moe replay", "mode": mode, "spec": str(path),
                               "category": meta.get("category"), "platform": meta.get("platform")}
        if args.list:
            doc["cases"] = [list_row(c) for c in cases]
            text = format_list(meta, doc["cases"])
        elif args.dry_run:
            doc["cases"] = [plan_case(c, args) for c in cases]
            text = "\n\n".join(format_plan(p) for p in doc["cases"])
        else:
            emit = (lambda _: None) if args.json else (lambda line: print(line, flush=True))
            doc.update(run_all(cases, args, emit, path))
            text = None
    except (SpecError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for case in doc["cases"]:
            for note in case.get("notes", []):
                print(f"case {case['case']}: {note}", file=sys.stderr)
        print(json.dumps(doc, indent=2))
    elif text is not None:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
