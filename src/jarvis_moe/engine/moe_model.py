"""The cost model of one MoE op: FLOPs, bytes, active experts, crossover, padding.

Pure arithmetic on a :class:`~jarvis_moe.engine.shapes.Shape`. Symbols: M
tokens, K hidden size, N expert intermediate size, E experts, k experts per
token, U = 2N when gated else N. One call of each kind does:

- ``fused``: up (2·M·K·N·k·(2 if gated)) + down (2·M·K·N·k) + the weighted
  combine (M·K·(2k − 1)); reads the active experts' U·K + K·N weights, M·K
  activations in, M·K out;
- ``up``: 2·M·K·N·k·(2 if gated); U·K weights per active expert, M·K in,
  M·k·N intermediate out;
- ``down``: 2·M·K·N·k; K·N weights per active expert, M·k·N in, M·K out;
- a grouped launch with its own GEMM (N', K') (SGLang's Triton fused MoE):
  2·M·k·N'·K'; N'·K' weights per active expert, M·k·K' in, M·k·N' out.

These are the pipeline's perf models term for term, so FLOPs equal its
``GFLOPS`` and bytes its ``Data Moved (MB)``; the scale bytes of quantised
formats are the one thing added, and kept apart.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.shapes import Shape

# Cap of the crossover search: far beyond any batch a single MoE layer sees.
MAX_CROSSOVER_TOKENS = 2**24


class Cost(NamedTuple):
    """A shape with the element sizes its bytes are counted at."""

    shape: Shape
    weight_bytes: float  # per weight element
    in_bytes: float  # per activation element read
    out_bytes: float  # per activation element written
    scale_overhead: float = 0.0  # scale and zero-point bytes per weight element

    def at_tokens(self, tokens: int) -> "Cost":
        """This cost at another token count (a crossover search asks for dozens per op)."""
        return self._replace(shape=self.shape._replace(num_tokens=tokens))


def cost_of(shape: Shape, weight_bits: float | None, scale_overhead: float = 0.0) -> Cost | None:
    """The cost model of a shape, None when a dtype size is unknown."""
    weight = weight_bits / 8 if weight_bits else dtypes.size(shape.weight_dtype)
    act_in = dtypes.size(shape.input_dtype)
    act_out = dtypes.size(shape.output_dtype) or act_in
    if weight is None or act_in is None or act_out is None:
        return None
    return Cost(shape, weight, act_in, act_out, scale_overhead)


def flops(shape: Shape) -> float:
    """FLOPs of one call (see the module docstring)."""
    m, hidden, inter, k = shape.num_tokens, shape.hidden_dim, shape.inter_dim, shape.topk
    if shape.gemm_n is not None and shape.gemm_k is not None:
        return 2.0 * m * k * shape.gemm_n * shape.gemm_k
    gemm = 2.0 * m * hidden * inter * k
    up = gemm * (2 if shape.gated is not False else 1)
    if shape.kind == "up":
        return up
    if shape.kind == "down":
        return gemm
    return up + gemm + float(m) * hidden * (2 * k - 1)


def weight_elements(shape: Shape) -> float:
    """Weight elements of one expert that one call reads."""
    if shape.gemm_n is not None and shape.gemm_k is not None:
        return float(shape.gemm_n) * shape.gemm_k
    up = float(shape.up_rows) * shape.hidden_dim
    down = float(shape.hidden_dim) * shape.inter_dim
    return {"up": up, "down": down}.get(shape.kind, up + down)


def activation_bytes(cost: Cost) -> float:
    """Bytes of one call that do not depend on routing: activations in and out."""
    s = cost.shape
    m, hidden, inter, k = s.num_tokens, s.hidden_dim, s.inter_dim, s.topk
    if s.gemm_n is not None and s.gemm_k is not None:
        return m * k * (s.gemm_k * cost.in_bytes + s.gemm_n * cost.out_bytes)
    if s.kind == "up":
        return m * hidden * cost.in_bytes + m * k * inter * cost.out_bytes
    if s.kind == "down":
        return m * k * inter * cost.in_bytes + m * hidden * cost.out_bytes
    return m * hidden * (cost.in_bytes + cost.out_bytes)


def expert_bytes(cost: Cost, with_scales: bool = False) -> float:
    """Weight bytes of one expert per call (scales and zero points when asked)."""
    per_element = cost.weight_bytes + (cost.scale_overhead if with_scales else 0.0)
    return weight_elements(cost.shape) * per_element


def bytes_per_call(cost: Cost, active: float, with_scales: bool = False) -> float:
    """Bytes one call moves when ``active`` experts receive tokens."""
    return activation_bytes(cost) + active * expert_bytes(cost, with_scales)


# --- routing ------------------------------------------------------------------


def expected_active_experts(experts: int, topk: int, tokens: int) -> float:
    """Experts hit by at least one of M tokens under uniform routing: E·(1 − (1 − k/E)^M)."""
    if experts < 1 or topk < 1 or topk > experts or tokens < 1:
        raise ValueError(f"invalid routing E={experts} k={topk} M={tokens}")
    if tokens == 1 or topk == experts:
        return float(topk if tokens == 1 else experts)
    value = -experts * math.expm1(tokens * math.log1p(-topk / experts))
    return min(max(value, float(topk)), float(min(experts, tokens * topk)))


def active_bounds(shape: Shape) -> tuple[int, float, int]:
    """(k, expected under uniform routing, min(E, M·k)) active experts per call."""
    e, k, m = shape.num_experts, shape.topk, shape.num_tokens
    return k, expected_active_experts(e, k, m), min(e, m * k)


def tokens_per_expert(shape: Shape) -> float:
    """Average tokens routed to each expert per call: M·k / E."""
    return shape.num_tokens * shape.topk / shape.num_experts


def efficiency_interval(eff: float, cost: Cost) -> tuple[float, float]:
    """Roofline % if the active experts were k (low) or min(E, M·k) (high).

    A memory-bound op's time is measured, its roofline time is its bytes over
    the bandwidth, so the efficiency scales with the bytes.
    """
    low, expected, high = active_bounds(cost.shape)
    reference = bytes_per_call(cost, expected)
    return eff * bytes_per_call(cost, low) / reference, eff * bytes_per_call(cost, high) / reference


# --- crossover ----------------------------------------------------------------


def intensity(cost: Cost, with_scales: bool = False) -> float:
    """FLOP per byte of one call with the expected active experts."""
    _, expected, _ = active_bounds(cost.shape)
    return flops(cost.shape) / bytes_per_call(cost, expected, with_scales)


class Crossover(NamedTuple):
    tokens: int | None
    note: str | None  # None (found), "compute_bound", "unreachable" or "unknown"


def crossover_tokens(cost: Cost, peak_tflops: float | None, peak_tbs: float | None,
                     with_scales: bool = False, max_tokens: int = MAX_CROSSOVER_TOKENS) -> Crossover:
    """Smallest token count whose arithmetic intensity reaches the ridge point of the peaks.

    Ridge = peak TFLOP/s ÷ peak TB/s (FLOP per byte), bytes at the expected
    active experts.
    """
    if not peak_tflops or not peak_tbs or peak_tflops <= 0 or peak_tbs <= 0:
        return Crossover(None, "unknown")
    ridge = peak_tflops / peak_tbs
    return _first_reaching(cost.shape.num_tokens, lambda m: intensity(cost.at_tokens(m), with_scales) >= ridge,
                           max_tokens)


def crossover_at_rates(cost: Cost, tflops: float | None, tbs: float | None, with_scales: bool = False,
                       max_tokens: int = MAX_CROSSOVER_TOKENS) -> Crossover:
    """Smallest token count whose compute time at ``tflops`` reaches its memory floor at ``tbs``.

    The floor is every expert's weights (min(E, M′·k) experts) plus the
    activations streamed at the rate the op's calls achieve; the compute
    time is its FLOPs at the rate compute-bound calls achieve. Where the
    two meet, the time stops being flat in the tokens: the knee a batch
    sweep measures.
    """
    if not tflops or not tbs or tflops <= 0 or tbs <= 0:
        return Crossover(None, "unknown")
    ridge = tflops / tbs
    s = cost.shape

    def reaches(tokens: int) -> bool:
        at = cost.at_tokens(tokens)
        return flops(at.shape) >= ridge * bytes_per_call(at, min(s.num_experts, tokens * s.topk), with_scales)

    return _first_reaching(s.num_tokens, reaches, max_tokens)


def _first_reaching(lo: int, reaches: Callable[[int], bool], max_tokens: int) -> Crossover:
    """The first M′ ≥ ``lo`` for which ``reaches`` holds, ``reaches`` monotone in M′.

    Doubling brackets the crossing and bisection finds the first M′ that
    reaches it while M′ − 1 does not.
    """
    if reaches(lo):
        return Crossover(None, "compute_bound")
    while True:
        if lo >= max_tokens:
            return Crossover(None, "unreachable")
        hi = min(2 * lo, max_tokens)
        if reaches(hi):
            break
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return Crossover(hi, None)


# --- padding ------------------------------------------------------------------


def _expected_padding_exact(trials: int, prob: float, block: int) -> float:
    """E[(−n) mod B] for n ~ Binomial(trials, prob), summed outward from the mode."""
    ratio = prob / (1.0 - prob)
    mode = min(trials, max(0, math.floor((trials + 1) * prob)))
    # Relative to the mode's pmf (taken as 1), normalised by the summed mass:
    # no lgamma, no underflow; terms below 1e-18 of the mode cannot matter.
    mass, padded = 1.0, float((-mode) % block)
    pmf, n = 1.0, mode
    while n < trials:
        pmf *= (trials - n) / (n + 1) * ratio
        n += 1
        if pmf < 1e-18:
            break
        mass += pmf
        padded += pmf * ((-n) % block)
    pmf, n = 1.0, mode
    while n > 0:
        pmf *= n / ((trials - n + 1) * ratio)
        n -= 1
        if pmf < 1e-18:
            break
        mass += pmf
        padded += pmf * ((-n) % block)
    return padded / mass


def _expected_padding(trials: int, prob: float, block: int) -> float:
    """Expected padded rows of one expert: E[ceil(n/B)·B − n], n ~ Binomial(M, k/E)."""
    if block <= 1:
        return 0.0
    if prob >= 1.0:
        return float((-trials) % block)
    if math.sqrt(trials * prob * (1.0 - prob)) >= block:
        # n mod B is then uniform to within ~exp(−2π²·(sd/B)²) < 3e-9.
        return (block - 1) / 2.0
    return _expected_padding_exact(trials, prob, block)


def padding_waste_pct(shape: Shape, block: int) -> float:
    """Estimated % of issued rows that are padding under uniform routing.

    Each expert's tokens are padded to a multiple of B rows: issued rows =
    M·k + E·E[padding of one expert], n_e ~ Binomial(M, k/E); experts with
    no token issue nothing; useful rows = M·k.
    """
    if block < 1:
        raise ValueError(f"block rows must be >= 1, got {block}")
    m, k, e = shape.num_tokens, shape.topk, shape.num_experts
    useful = float(m * k)
    padding = e * _expected_padding(m, k / e, block)
    return 100.0 * padding / (useful + padding)
