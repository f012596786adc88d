"""Two baselines that need only PyTorch (and Triton): a grouped GEMM, and a bundled Triton fused-MoE kernel.

Both run the case's stages on weights dequantised to the activation dtype
before timing (a no-op for bf16/fp16 weights), so on quantised formats they
read more bytes than the traced kernel and say so.

- ``grouped``: token rows sorted by expert, then one grouped matmul for all
  experts per stage (``torch._grouped_mm`` on sm90+ GPUs), else a padded
  batched matmul (gather, one ``bmm``, scatter), named as such.
- ``triton``: the fused-MoE algorithm of the Triton kernels vLLM and SGLang
  launch: (token, expert) rows sorted by expert and padded to the trace's
  row block BLOCK_M, one program per (row block, N tile), walked GROUP_M row
  blocks at a time, that gathers its rows, multiplies them by its expert's
  weights and writes them out (the down stage scaled by the router weight,
  one row per (token, expert)). Its N and K tiles, GROUP_M, warps and stages
  are the engines' for the shape (``tiles.choose_tiles``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .tiles import describe_tiles
from .weights import Problem, activate, op_input

_TRITON: Dict[str, Any] = {}


def dequantised(torch: Any, weights: Any) -> Any:
    """All E experts as one [E, rows, cols] tensor in the activation dtype."""
    if weights.fmt in ("bf16", "fp16") and weights.q.dtype == weights.act:
        return weights.q
    return torch.stack([weights.expert(e) for e in range(weights.q.shape[0])])


def sort_rows(torch: Any, topk_ids: Any, E: int) -> Tuple[Any, Any]:
    """(order, counts): the flat (token, slot) rows sorted by expert (stable), and rows per expert."""
    flat = topk_ids.reshape(-1).long()
    return torch.argsort(flat, stable=True), torch.bincount(flat, minlength=E)


def _padded_mm(torch: Any, counts: Any) -> Callable[[Any, Any], Any]:
    """a_sorted [rows, K] x W [E, n, K] per expert as gather, one bmm and scatter (built once)."""
    active = torch.nonzero(counts).flatten()
    width = int(counts.max().item())
    starts = torch.cumsum(counts, 0) - counts
    slots = starts[active].unsqueeze(1) + torch.arange(width, device=counts.device)
    valid = torch.arange(width, device=counts.device) < counts[active].unsqueeze(1)
    total = int(counts.sum().item())
    index = torch.where(valid, slots, torch.full_like(slots, total))
    keep = index[valid]

    def mm(a_sorted: Any, w: Any) -> Any:
        padded = torch.cat([a_sorted, a_sorted.new_zeros((1, a_sorted.shape[1]))])[index]
        y = torch.bmm(padded, w[active].transpose(1, 2))
        out = a_sorted.new_empty((total, w.shape[1]))
        out[keep] = y[valid]
        return out
    return mm


def grouped_mm(torch: Any, counts: Any, device: Any, notes: List[str]) -> Callable[[Any, Any], Any]:
    """One grouped matmul per stage where PyTorch has one for this GPU; else the padded bmm, noted."""
    offs = torch.cumsum(counts, 0).to(torch.int32)
    native = getattr(torch, "_grouped_mm", None)
    if native is not None and device.type == "cuda" and torch.cuda.get_device_capability(device) >= (9, 0):
        notes.append("torch._grouped_mm, one launch per stage for all experts")
        return lambda a, w: native(a, w.transpose(-2, -1), offs=offs)
    notes.append("no torch._grouped_mm for this device or PyTorch; a padded batched matmul "
                 "(gather, one bmm, scatter) stands in")
    return _padded_mm(torch, counts)


def grouped_runner(torch: Any, p: Problem, notes: List[str]) -> Callable[[], Any]:
    """The case's stages with one grouped matmul each: sort, multiply, activate, weight and combine."""
    case, k = p.case, p.case.topk
    order, counts = sort_rows(torch, p.topk_ids, case.E)
    mm = grouped_mm(torch, counts, p.topk_ids.device, notes)
    w1 = dequantised(torch, p.w1) if p.w1 is not None else None
    w2 = dequantised(torch, p.w2) if p.w2 is not None else None
    gates = p.topk_weights.reshape(-1)[order].unsqueeze(1)
    tokens = order // k

    def run() -> Any:
        src = op_input(torch, p)
        if case.role == "down":
            h = src[order]
        else:
            h = mm(src[tokens], w1)
            if case.role == "fused" or case.act_fused:
                h = activate(torch, h, case)
            if case.role == "up":
                p.out[order] = h
                return p.out
        y = mm(h, w2) * gates.to(h.dtype)
        if case.role == "down" and case.down_per_slot:
            p.out.view(-1, case.K)[order] = y
            return p.out
        return p.out.zero_().index_add_(0, tokens, y)
    return run


def align_blocks(torch: Any, topk_ids: Any, E: int, block_m: int) -> Tuple[Any, Any]:
    """(sorted_ids, expert_ids): rows sorted by expert, each expert padded to block_m with the sentinel M*k."""
    order, counts = sort_rows(torch, topk_ids, E)
    flat = topk_ids.reshape(-1).long()
    rows = flat.numel()
    padded = (counts + block_m - 1) // block_m * block_m
    starts = torch.cumsum(padded, 0) - padded
    experts = flat[order]
    rank = torch.arange(rows, device=flat.device) - (torch.cumsum(counts, 0) - counts)[experts]
    sorted_ids = torch.full((int(padded.sum().item()),), rows, dtype=torch.int32, device=flat.device)
    sorted_ids[starts[experts] + rank] = order.to(torch.int32)
    expert_ids = torch.repeat_interleave(torch.arange(E, device=flat.device), padded // block_m).to(torch.int32)
    return sorted_ids, expert_ids


def triton_kernel() -> Any:
    """The bundled fused-MoE GEMM, compiled on first use (Triton imported only then)."""
    if "gemm" in _TRITON:
        return _TRITON["gemm"]
    global triton, tl  # the kernel's globals, bound on first use
    import triton
    import triton.language as tl

    @triton.jit
    def moe_gemm(a_ptr, b_ptr, c_ptr, w_ptr, sorted_ids_ptr, expert_ids_ptr, N, K, rows, a_div, blocks_m,
                 stride_am, stride_ak, stride_be, stride_bn, stride_bk, stride_cm, stride_cn,
                 MUL_WEIGHT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 GROUP_M: tl.constexpr):
        # Programs walk GROUP_M row blocks per N tile before the next tile, as the engines' kernel does.
        pid = tl.program_id(0)
        per_group = GROUP_M * tl.cdiv(N, BLOCK_N)
        first_m = pid // per_group * GROUP_M
        group_m = tl.minimum(blocks_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % group_m
        pid_n = (pid % per_group) // group_m
        slot = tl.load(sorted_ids_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
        valid = slot < rows
        expert = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        a_ptrs = a_ptr + (slot // a_div).to(tl.int64)[:, None] * stride_am + offs_k[None, :] * stride_ak
        b_ptrs = b_ptr + expert * stride_be + offs_n[None, :] * stride_bn + offs_k[:, None] * stride_bk
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, tl.cdiv(K, BLOCK_K)):
            k_ok = offs_k < K - k0 * BLOCK_K
            a = tl.load(a_ptrs, mask=valid[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None] & (offs_n[None, :] < N), other=0.0)
            acc += tl.dot(a, b)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
        if MUL_WEIGHT:
            acc = acc * tl.load(w_ptr + slot, mask=valid, other=0.0)[:, None]
        c_ptrs = c_ptr + slot.to(tl.int64)[:, None] * stride_cm + offs_n[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=valid[:, None] & (offs_n[None, :] < N))

    _TRITON["gemm"] = moe_gemm
    return moe_gemm


def triton_stage(a: Any, a_div: int, w: Any, c: Any, gates: Optional[Any], blocks: Tuple[Any, Any],
                 launch: Dict[str, Any]) -> Callable[[], None]:
    """One launch of the bundled kernel: c[slot] = a[slot // a_div] @ w[expert]^T (x gate when given).

    ``launch``: BLOCK_M/N/K and GROUP_M, and num_warps/num_stages (None: Triton's defaults).
    """
    kernel, (sorted_ids, expert_ids) = triton_kernel(), blocks
    n_out, k_in, rows, blocks_m = w.shape[1], w.shape[2], c.shape[0], expert_ids.shape[0]
    grid = (blocks_m * -(-n_out // launch["BLOCK_N"]),)
    weights = gates if gates is not None else c
    options = {k: launch[k] for k in ("num_warps", "num_stages") if launch.get(k) is not None}
    sizes = {k: launch[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")}

    def run() -> None:
        kernel[grid](a, w, c, weights, sorted_ids, expert_ids, n_out, k_in, rows, a_div, blocks_m,
                     a.stride(0), a.stride(1), w.stride(0), w.stride(1), w.stride(2), c.stride(0), c.stride(1),
                     MUL_WEIGHT=gates is not None, **sizes, **options)
    return run


def triton_runner(torch: Any, p: Problem, notes: List[str], tiles: Dict[str, Any]) -> Callable[[], Any]:
    """The case's stages on the bundled kernel with the tiles of ``choose_tiles`` (row block: the trace's)."""
    case, k, launch = p.case, p.case.topk, tiles["launch"]
    notes.append(f"bundled fused-MoE kernel, {describe_tiles(tiles)}; token/expert alignment built before timing")
    notes += tiles["notes"]
    blocks = align_blocks(torch, p.topk_ids, case.E, launch["BLOCK_M"])
    gates = p.topk_weights.reshape(-1).contiguous()
    rows = case.M * k
    steps: List[Callable[[], Any]] = []
    src = p.h if case.role == "down" else p.x
    if case.act_quant_group:  # the op's per-group fp8 quantisation of its input, as its own launches
        src = torch.empty_like(src)
        steps.append(lambda: src.copy_(op_input(torch, p)))
    h = src
    if case.role != "down":
        w1 = dequantised(torch, p.w1)
        up = torch.empty((rows, w1.shape[1]), dtype=p.x.dtype, device=p.x.device)
        steps.append(triton_stage(src, k, w1, up if case.role != "up" or case.act_fused else p.out, None,
                                  blocks, launch))
        if case.role == "fused" or case.act_fused:
            h = torch.empty((rows, case.N), dtype=p.x.dtype, device=p.x.device)
            target = p.out if case.role == "up" else h
            steps.append(lambda: target.copy_(activate(torch, up, case)))
    if case.role != "up":
        w2 = dequantised(torch, p.w2)
        per_slot = p.out.view(rows, case.K) if case.down_per_slot else torch.empty(
            (rows, case.K), dtype=h.dtype, device=h.device)
        steps.append(triton_stage(h, 1, w2, per_slot, gates, blocks, launch))
        if not case.down_per_slot:
            steps.append(lambda: torch.sum(per_slot.view(case.M, k, case.K), dim=1, out=p.out))

    def run() -> Any:
        for step in steps:
            step()
        return p.out
    return run
