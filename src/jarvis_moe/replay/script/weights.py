"""A case on the device: weights in their stored format, its tensors, and the PyTorch reference."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .casespec import Case, E2M1, ReplayError
from .plan import TensorSpec, tensor_plan, up_cols


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
    _build_fp32 = _build_bf16

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
        if fmt in ("bf16", "fp16", "fp32"):
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


def quantise_groups(torch: Any, x: Any, group: int) -> Tuple[Any, Any]:
    """x [rows, cols] as fp8 e4m3 with one fp32 scale per `group` columns of each row (amax / 448)."""
    rows, cols = x.shape
    padded = torch.nn.functional.pad(x.float(), (0, -cols % group)).view(rows, -1, group)
    scale = padded.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 448.0
    return (padded / scale).to(torch.float8_e4m3fn), scale


def op_input(torch: Any, p: Problem) -> Any:
    """The op's input (x, or h for a down case), through the per-group fp8 quantisation the op applies."""
    x = p.h if p.case.role == "down" else p.x
    if not p.case.act_quant_group:
        return x
    q, scale = quantise_groups(torch, x, p.case.act_quant_group)
    return (q.float() * scale).view(x.shape[0], -1)[:, :x.shape[1]].to(x.dtype)


def reference_forward(torch: Any, p: Problem) -> Any:
    """The torch reference: grouped per-expert matmuls, activation, weighted combine (index_add_)."""
    case, out = p.case, p.out
    out.zero_()
    flat_gates = p.topk_weights.view(-1)
    src = op_input(torch, p)
    for e, toks, slots in p.groups:
        if case.role == "down":
            h = src.index_select(0, slots)
        else:
            h = src.index_select(0, toks) @ p.w1.expert(e).t()
            if case.role == "fused" or case.act_fused:
                h = activate(torch, h, case)
            if case.role == "up":
                out.index_copy_(0, slots, h)
                continue
        y = h @ p.w2.expert(e).t()
        y = y * flat_gates.index_select(0, slots).unsqueeze(1).to(y.dtype)
        if case.down_per_slot:  # the launch writes one row per (token, expert); a separate kernel sums them
            out.view(-1, case.K).index_copy_(0, slots, y)
        else:
            out.index_add_(0, toks, y)
    return out


def dense_forward(torch: Any, p: Problem, tokens: int) -> Any:
    """Float32 loop over the first `tokens` tokens and each of their experts: the --check oracle."""
    case, k = p.case, p.case.topk
    src = op_input(torch, p)

    def w(which: str, e: int) -> Any:
        return getattr(p, which).expert(e).float()

    per_slot = case.role == "up" or case.down_per_slot
    rows = tokens * k if per_slot else tokens
    out = torch.zeros((rows, p.out.shape[-1]), dtype=torch.float32, device=p.out.device)
    for t in range(tokens):
        for j, e in enumerate(p.ids[t]):
            if case.role == "down":
                h = src[t * k + j].float()
            else:
                h = (src[t].float() @ w("w1", e).t()).unsqueeze(0)
                h = activate(torch, h, case)[0] if (case.role == "fused" or case.act_fused) else h[0]
                if case.role == "up":
                    out[t * k + j] = h
                    continue
            out[t * k + j if per_slot else t] += p.gates[t][j] * (h @ w("w2", e).t())
    return out


def check_reference(torch: Any, p: Problem, max_tokens: int = 64,
                    forward: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Max error of an output (default: the reference's) against the dense loop, relative to the dense max."""
    tokens = min(p.case.M, max_tokens)
    dense = dense_forward(torch, p, tokens)
    got = forward() if forward is not None else reference_forward(torch, p)
    ref = got.reshape(-1, p.out.shape[-1])[: dense.shape[0]].float()
    err = (ref - dense).abs().max().item() / max(dense.abs().max().item(), 1e-30)
    return {"max_rel_err": err, "tokens_checked": tokens}


