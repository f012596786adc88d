"""The Mixture-of-Experts model behind the MoE-specific figures (analysis §4).

Pure arithmetic on one MoE signature. Symbols follow the analysis document:
M tokens, K hidden size, N expert intermediate size, E experts, k experts
per token. A *kind* names what one kernel row covers:

- ``"fused"``: up projection, activation, down projection and the weighted
  combine in one op (``moe_fused``);
- ``"up"``: the up (gate+up when gated) projection of an unfused pipeline,
  op names containing ``unfused_up``;
- ``"down"``: the down projection of an unfused pipeline, op names
  containing ``unfused_down``.

Units: FLOPs and bytes per call, tokens and experts as counts, percentages
as 0..100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

KINDS = ("fused", "up", "down")

# Cap of the crossover search: far beyond any batch a single MoE layer sees.
MAX_CROSSOVER_TOKENS = 2**24


@dataclass(frozen=True)
class MoeShape:
    """Shape of one MoE op as the perf model or the input shapes describe it.

    ``gated`` means the up projection produces 2N columns (gate and up, as in
    SwiGLU). ``source`` is ``"perf_params"`` or ``"input_dims"``.
    """

    num_tokens: int
    hidden_dim: int
    inter_dim: int
    num_experts: int
    topk: int
    gated: bool
    input_dtype: str | None
    weight_dtype: str | None
    source: str


def projection_kind(op_name: str | None) -> str:
    """``"up"`` / ``"down"`` for unfused projections by op name, else ``"fused"``."""
    name = (op_name or "").lower()
    if "unfused_up" in name:
        return "up"
    if "unfused_down" in name:
        return "down"
    return "fused"


# --- dtypes -----------------------------------------------------------------

_DTYPE_BYTES: dict[str, float] = {
    "bfloat16": 2, "bf16": 2, "half": 2, "float16": 2, "fp16": 2,
    "float": 4, "float32": 4, "fp32": 4, "tf32": 4,
    "double": 8, "float64": 8, "fp64": 8,
    "int8": 1, "uint8": 1, "unsigned char": 1, "signed char": 1, "char": 1,
    "byte": 1, "bool": 1,
    "short": 2, "int16": 2, "int": 4, "int32": 4, "long": 8, "int64": 8,
    # 4-bit formats: bytes per logical element (two values share a byte).
    "fp4": 0.5, "mxfp4": 0.5, "nvfp4": 0.5, "fp4x2": 0.5, "int4": 0.5, "uint4": 0.5,
}

# Storage types that may hold two 4-bit weights per element; the stored last
# dimension is then half the logical one.
_PACKABLE = frozenset({"uint8", "unsigned char", "int8", "char", "signed char", "byte"})


def _dtype_key(name: str) -> str:
    key = name.strip().lower()
    for prefix in ("c10::", "torch."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def dtype_bytes(name: str | None) -> float | None:
    """Bytes per logical element of a dtype name, None when unknown.

    Case-insensitive; ``c10::`` and ``torch.`` prefixes are ignored. 4-bit
    formats (fp4, mxfp4, ``Float4_e2m1fn_x2``) count 0.5 byte per element.
    """
    if not isinstance(name, str):
        return None
    key = _dtype_key(name)
    if key in _DTYPE_BYTES:
        return float(_DTYPE_BYTES[key])
    if key.startswith(("float8", "fp8")):
        return 1.0
    if key.startswith(("float4", "fp4")):
        return 0.5
    return None


def _is_four_bit(name: str | None) -> bool:
    return isinstance(name, str) and dtype_bytes(name) == 0.5


# --- shape ------------------------------------------------------------------


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value > 0:
        return int(value)
    return None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def shape_from_perf_params(params: Mapping[str, Any] | None) -> MoeShape | None:
    """Shape from a parsed ``perf_params`` dict, None when incomplete or invalid.

    Every size must be a positive integer, ``gated`` a boolean and
    ``topk <= num_experts``.
    """
    if not isinstance(params, Mapping):
        return None
    sizes = [_positive_int(params.get(key)) for key in
             ("num_tokens", "hidden_dim", "inter_dim", "num_experts", "topk")]
    gated = _flag(params.get("gated"))
    if any(size is None for size in sizes) or gated is None:
        return None
    m, k_hidden, n, e, topk = (int(s) for s in sizes)  # type: ignore[arg-type]
    if topk > e:
        return None
    input_dtype = params.get("input_dtype")
    weight_dtype = params.get("weight_dtype")
    return MoeShape(
        num_tokens=m, hidden_dim=k_hidden, inter_dim=n, num_experts=e, topk=topk,
        gated=gated,
        input_dtype=input_dtype if isinstance(input_dtype, str) else None,
        weight_dtype=weight_dtype if isinstance(weight_dtype, str) else None,
        source="perf_params",
    )


def _match_weights(
    w1: tuple[int, ...], w2: tuple[int, ...], hidden: int, pack: int
) -> tuple[int, bool] | None:
    """(N, gated) when w1 [E, 2N|N, K/pack] and w2 [E, K, N/pack] fit K."""
    if w1[0] != w2[0] or w1[2] * pack != hidden or w2[1] != hidden:
        return None
    inter = w2[2] * pack
    if w1[1] == 2 * inter:
        return inter, True
    if w1[1] == inter:
        return inter, False
    return None


def shape_from_input_dims(
    dims: Sequence[Sequence[int]] | None, types: Sequence[str] | None
) -> MoeShape | None:
    """Shape from ``Input Dims`` / ``Input type`` of the known fused layout.

    Layout: hidden states [M, K] first, then w1 [E, 2N or N, K] and
    w2 [E, K, N] (the first pair of 3-D inputs that fits), then top-k
    weights or ids [M, k]. Weights stored two 4-bit values per byte have the
    last dimension halved and are corrected for; byte-typed storage read that
    way is reported as ``"fp4"``. An [M, E] input is router logits, not
    top-k. Returns None for any other layout.
    """
    if not dims or not isinstance(dims[0], Sequence) or len(dims[0]) != 2:
        return None
    names = list(types or ())
    names += [""] * (len(dims) - len(names))
    m, hidden = int(dims[0][0]), int(dims[0][1])
    if m <= 0 or hidden <= 0:
        return None
    cubes = [i for i, d in enumerate(dims) if len(d) == 3 and all(int(x) > 0 for x in d)]
    for pos, i in enumerate(cubes):
        for j in cubes[pos + 1:]:
            w1, w2 = tuple(int(x) for x in dims[i]), tuple(int(x) for x in dims[j])
            stored = names[i]
            # 4-bit types are normally stored packed; byte types only when
            # the shapes say so (uint8 also stores fp8 weights unpacked).
            packs = [1]
            if _is_four_bit(stored):
                packs = [2, 1]
            elif _dtype_key(stored) in _PACKABLE:
                packs = [1, 2]
            for pack in packs:
                fit = _match_weights(w1, w2, hidden, pack)
                if fit is None:
                    continue
                topk = _topk_from(dims, exclude=(i, j), tokens=m, experts=w1[0])
                if topk is None:
                    return None
                weight_dtype = stored or None
                if pack == 2 and not _is_four_bit(stored):
                    weight_dtype = "fp4"
                return MoeShape(
                    num_tokens=m, hidden_dim=hidden, inter_dim=fit[0],
                    num_experts=w1[0], topk=topk, gated=fit[1],
                    input_dtype=names[0] or None, weight_dtype=weight_dtype,
                    source="input_dims",
                )
    return None


def _topk_from(
    dims: Sequence[Sequence[int]], *, exclude: tuple[int, ...], tokens: int, experts: int
) -> int | None:
    for index, d in enumerate(dims[1:], start=1):
        if index in exclude or len(d) != 2:
            continue
        rows, cols = int(d[0]), int(d[1])
        # cols == E is the router-logit layout; top-k of every expert is not MoE.
        if rows == tokens and 1 <= cols < experts:
            return cols
    return None


# --- FLOPs and active experts ----------------------------------------------


def exact_flops(shape: MoeShape) -> float:
    """FLOPs of one fused call: 2MKNk·(2 if gated) + 2MKNk + MK(2k−1)."""
    return projection_flops(shape, "fused")


def projection_flops(shape: MoeShape, kind: str) -> float:
    """FLOPs of one call of the given kind.

    ``"up"`` = 2·M·K·N·k·(2 if gated else 1), ``"down"`` = 2·M·K·N·k and
    ``"fused"`` = up + down + M·K·(2k − 1) for the weighted combine.
    """
    m, hidden, inter, topk = shape.num_tokens, shape.hidden_dim, shape.inter_dim, shape.topk
    gemm = 2.0 * m * hidden * inter * topk
    up = gemm * (2 if shape.gated else 1)
    if kind == "up":
        return up
    if kind == "down":
        return gemm
    if kind == "fused":
        return up + gemm + float(m) * hidden * (2 * topk - 1)
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def _check_routing(num_experts: int, topk: int, num_tokens: int) -> None:
    if num_experts < 1 or topk < 1 or topk > num_experts or num_tokens < 1:
        raise ValueError(f"invalid routing E={num_experts} k={topk} M={num_tokens}")


def expected_active_experts(num_experts: int, topk: int, num_tokens: int) -> float:
    """Experts hit by at least one of M tokens under uniform routing: E·(1 − (1 − k/E)^M)."""
    _check_routing(num_experts, topk, num_tokens)
    if num_tokens == 1 or topk == num_experts:
        return float(topk if num_tokens == 1 else num_experts)
    # expm1/log1p keep precision when (1 − k/E)^M is close to 0 or 1.
    value = -num_experts * math.expm1(num_tokens * math.log1p(-topk / num_experts))
    return min(max(value, float(topk)), float(min(num_experts, num_tokens * topk)))


def active_experts(num_experts: int, topk: int, num_tokens: int) -> dict[str, float]:
    """``{"low": k, "expected": E_act, "high": min(E, M·k)}`` in experts (unrounded)."""
    return {
        "low": topk,
        "expected": expected_active_experts(num_experts, topk, num_tokens),
        "high": min(num_experts, num_tokens * topk),
    }


def tokens_per_expert(shape: MoeShape) -> float:
    """Average tokens routed to each expert per call: M·k / E."""
    return shape.num_tokens * shape.topk / shape.num_experts


def phase(num_tokens: int, decode_max_tokens: int = 256) -> str:
    """``"decode"`` when M ≤ decode_max_tokens, else ``"prefill"``."""
    return "decode" if num_tokens <= decode_max_tokens else "prefill"


# --- bytes, efficiency interval, crossover ----------------------------------


def bytes_per_call(shape: MoeShape, active: float, kind: str) -> float | None:
    """Bytes one call moves when ``active`` experts are hit; None for unknown dtypes.

    The same model as the host's ``Data Moved`` column (it reproduces the
    fixtures to the byte), with w = weight bytes and a = activation bytes
    per element, U = 2N when gated else N:

    - ``"fused"``: active·(U·K + K·N)·w + M·K·a (read) + M·K·a (write);
    - ``"up"``: active·U·K·w + M·K·a (read) + M·k·N·a (intermediate write);
    - ``"down"``: active·K·N·w + M·k·N·a (intermediate read) + M·K·a (write).

    Top-k ids and weights (M·k small values) are left out, as the host does.
    Every active expert's weights are read once per call.
    """
    weight, act = dtype_bytes(shape.weight_dtype), dtype_bytes(shape.input_dtype)
    if weight is None or act is None:
        return None
    m, hidden, inter, topk = shape.num_tokens, shape.hidden_dim, shape.inter_dim, shape.topk
    up_rows = 2 * inter if shape.gated else inter
    tokens_io = float(m) * hidden * act
    intermediate = float(m) * topk * inter * act
    if kind == "fused":
        return active * (up_rows * hidden + hidden * inter) * weight + 2 * tokens_io
    if kind == "up":
        return active * up_rows * hidden * weight + tokens_io + intermediate
    if kind == "down":
        return active * hidden * inter * weight + intermediate + tokens_io
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def efficiency_interval(
    eff_point: float | None, shape: MoeShape, kind: str
) -> dict[str, float] | None:
    """Efficiency (%) if the real active-expert count were k (low) or min(E, M·k) (high).

    For a memory-bound op the measured time is fixed and the roofline time is
    proportional to the bytes, so efficiency(x) = eff_point·bytes(x)/bytes(E_act).
    Meaningless for compute-bound ops (the caller leaves it out). None when
    the point or a dtype is unknown.
    """
    if eff_point is None or not math.isfinite(eff_point):
        return None
    e, topk, m = shape.num_experts, shape.topk, shape.num_tokens
    reference = bytes_per_call(shape, expected_active_experts(e, topk, m), kind)
    low = bytes_per_call(shape, topk, kind)
    high = bytes_per_call(shape, min(e, m * topk), kind)
    if reference is None or low is None or high is None or reference <= 0:
        return None
    return {"low": eff_point * low / reference, "high": eff_point * high / reference}


def arithmetic_intensity(shape: MoeShape, kind: str) -> float | None:
    """FLOP per byte of one call with the expected active experts; None for unknown dtypes."""
    active = expected_active_experts(shape.num_experts, shape.topk, shape.num_tokens)
    moved = bytes_per_call(shape, active, kind)
    if moved is None or moved <= 0:
        return None
    return projection_flops(shape, kind) / moved


@dataclass(frozen=True)
class Crossover:
    """Outcome of :func:`crossover_tokens`.

    ``reason`` is ``"found"`` (``tokens`` set), ``"compute_bound"`` (the op
    already reaches the ridge at its own M), ``"unreachable"`` (intensity
    stays below the ridge up to the search cap: the op stays memory-bound at
    any batch) or ``"unknown"`` (dtype or peaks missing). Intensities and the
    ridge are in FLOP/byte.
    """

    tokens: int | None
    reason: str
    ridge_flops_per_byte: float | None = None
    intensity_at_tokens: float | None = None


def crossover_tokens(
    shape: MoeShape,
    kind: str,
    peak_tflops: float | None,
    peak_tbs: float | None,
    *,
    max_tokens: int = MAX_CROSSOVER_TOKENS,
) -> Crossover:
    """Smallest token count whose arithmetic intensity reaches the ridge point.

    Ridge = peak_tflops / peak_tbs (TFLOP/s over TB/s is FLOP/byte). The
    intensity at M' uses the expected active experts at M' and the op's
    dtypes. Doubling from M brackets the crossing, bisection narrows it; the
    loop keeps intensity(lo) < ridge ≤ intensity(hi), so the answer reaches
    the ridge and one token fewer does not. Intensity is non-decreasing in M
    (FLOPs grow as M, bytes/M shrink because E_act/M does), so that crossing
    is the first one.
    """
    if not _positive_finite(peak_tflops) or not _positive_finite(peak_tbs):
        return Crossover(None, "unknown")
    ridge = float(peak_tflops) / float(peak_tbs)  # type: ignore[arg-type]

    def intensity(tokens: int) -> float | None:
        return arithmetic_intensity(replace(shape, num_tokens=tokens), kind)

    own = intensity(shape.num_tokens)
    if own is None:
        return Crossover(None, "unknown", ridge)
    if own >= ridge:
        return Crossover(None, "compute_bound", ridge, own)
    lo = shape.num_tokens
    while True:
        if lo >= max_tokens:
            return Crossover(None, "unreachable", ridge, own)
        candidate = min(2 * lo, max_tokens)
        value = intensity(candidate)
        if value is not None and value >= ridge:
            hi = candidate
            break
        lo = candidate
    while hi - lo > 1:
        mid = (lo + hi) // 2
        value = intensity(mid)
        if value is not None and value >= ridge:
            hi = mid
        else:
            lo = mid
    return Crossover(hi, "found", ridge, own)


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and value > 0
    )


def intermediate_bytes_per_call(shape: MoeShape, act_bytes: float) -> float:
    """Bytes of the unfused intermediate: 2·M·k·N·act_bytes (written once, read once)."""
    return 2.0 * shape.num_tokens * shape.topk * shape.inter_dim * act_bytes


# --- padding waste ----------------------------------------------------------


def default_block_rows(num_tokens: int) -> int:
    """Common fused-kernel row block: 16 / 32 / 64 / 128 for M ≤ 32 / ≤ 96 / ≤ 512 / larger."""
    if num_tokens <= 32:
        return 16
    if num_tokens <= 96:
        return 32
    if num_tokens <= 512:
        return 64
    return 128


def _expected_padding_exact(trials: int, prob: float, block: int) -> float:
    """E[(−n) mod B] for n ~ Binomial(trials, prob), summed outward from the mode."""
    ratio = prob / (1.0 - prob)
    mode = min(trials, max(0, math.floor((trials + 1) * prob)))
    # Work relative to the mode's pmf (taken as 1) and normalise by the summed
    # mass at the end: no lgamma, no underflow, and terms below 1e-18 of the
    # mode cannot move the result.
    cutoff = 1e-18
    mass = 1.0
    padded = float((-mode) % block)
    pmf, n = 1.0, mode
    while n < trials:
        pmf *= (trials - n) / (n + 1) * ratio
        n += 1
        if pmf < cutoff:
            break
        mass += pmf
        padded += pmf * ((-n) % block)
    pmf, n = 1.0, mode
    while n > 0:
        pmf *= n / ((trials - n + 1) * ratio)
        n -= 1
        if pmf < cutoff:
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
    spread = math.sqrt(trials * prob * (1.0 - prob))
    if spread >= block:
        # n mod B is then uniform to within ~exp(−2π²·(sd/B)²) < 3e-9, so the
        # mean padding is (B − 1)/2; this keeps large M at constant cost.
        return (block - 1) / 2.0
    return _expected_padding_exact(trials, prob, block)


def padding_waste_pct(shape: MoeShape, block_rows: int | None = None) -> tuple[float, int]:
    """Estimated % of issued rows that are padding under uniform routing, and B used.

    Each expert's tokens are padded up to a multiple of B rows, so issued rows
    = Σ_e E[ceil(n_e/B)·B] = M·k + E·E[padding] with n_e ~ Binomial(M, k/E)
    (each token picks expert e with probability k/E); useful rows = M·k.
    Experts without tokens issue nothing. Returns (waste in %, B).
    """
    block = block_rows if block_rows is not None else default_block_rows(shape.num_tokens)
    if block < 1:
        raise ValueError(f"block_rows must be >= 1, got {block}")
    m, topk, e = shape.num_tokens, shape.topk, shape.num_experts
    _check_routing(e, topk, m)
    useful = float(m * topk)
    padding = e * _expected_padding(m, topk / e, block)
    return 100.0 * padding / (useful + padding), block


# --- load-imbalance evidence ------------------------------------------------


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def skew(
    count: float | None,
    mean: float | None,
    median: float | None,
    std: float | None,
    max_: float | None,
    *,
    min_count: int = 10,
    max_over_median: float = 1.5,
    cov: float = 0.25,
) -> dict[str, Any]:
    """Spread of kernel durations across calls of one signature.

    Returns ``{"max_over_median", "cov", "flagged"}``: ratios rounded to 2
    places (None when an input is missing or the denominator is not
    positive); ``flagged`` when count ≥ min_count and either rounded ratio
    reaches its threshold. Indirect evidence only: routing skew or contention.
    """
    count_v, mean_v, median_v = _finite(count), _finite(mean), _finite(median)
    std_v, max_v = _finite(std), _finite(max_)
    ratio = max_v / median_v if max_v is not None and median_v and median_v > 0 else None
    spread = std_v / mean_v if std_v is not None and mean_v and mean_v > 0 else None
    ratio = None if ratio is None else round(ratio, 2)
    spread = None if spread is None else round(spread, 2)
    # Thresholds apply to the rounded figures, so the flag agrees with them.
    flagged = bool(
        count_v is not None and count_v >= min_count
        and ((ratio is not None and ratio >= max_over_median)
             or (spread is not None and spread >= cov))
    )
    return {"max_over_median": ratio, "cov": spread, "flagged": flagged}
