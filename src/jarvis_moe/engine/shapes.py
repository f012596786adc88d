"""The MoE shape of one op: M, K, N, E, k, gating and dtypes, and its role.

Symbols: M tokens, K hidden size, N expert intermediate size (per gate or up
half), E experts, k experts per token. The shape comes from the pipeline's
``perf_params`` first, in either schema of the input contract:

- ``moe``: ``num_tokens, hidden_dim, inter_dim, num_experts, topk[, gated]``
  (down stages omit ``gated``: it comes from the sibling up stage);
- ``grouped_gemm``: ``m_work, num_tokens, topk, N, K, num_experts``, where
  (N, K) is the launch's own GEMM: N = 2·inter, K = hidden for the up launch,
  N = hidden, K = inter for the down launch. Which one a row is comes from
  its shapes: the up launch reads M rows of activations, the down launch
  M·k rows.

Without usable ``perf_params`` the shape comes from ``Input Dims`` read by
role (weights stored two 4-bit values per byte are corrected for).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.families import Family

Dims = Sequence[Sequence[int]]


class Shape(NamedTuple):
    num_tokens: int
    hidden_dim: int
    inter_dim: int
    num_experts: int
    topk: int
    gated: bool | None
    gated_source: str | None
    input_dtype: str | None
    weight_dtype: str | None
    output_dtype: str | None
    source: str  # "perf_params" or "input_dims"
    kind: str  # "fused", "up" or "down"
    kind_source: str  # "op_name" or "shapes"
    gemm_n: int | None = None  # the launch's own GEMM, grouped launches only
    gemm_k: int | None = None

    @property
    def up_rows(self) -> int:
        """Output columns of the up projection: 2N when gated, else N (gated assumed when unknown)."""
        return 2 * self.inter_dim if self.gated is not False else self.inter_dim


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


def infer_shape(
    family: Family, params: Mapping[str, Any], dims: Dims | None, types: Sequence[str], num_tokens: int | None
) -> Shape | None:
    """The shape of one op of ``family``, or None when neither source gives one.

    :param params: perf_params values by key (None where missing).
    :param dims: the parsed ``Input Dims``, or None.
    :param types: the ``Input type`` names.
    :param num_tokens: M as the column-wise pass read it (one source for M).
    """
    dims = [tuple(d) for d in dims] if dims else []
    if family.schema == "grouped_gemm":
        shape = _grouped(params, dims, types)
    else:
        shape = _from_params(family, params, dims, types) or _from_dims(family, dims, types)
    if shape is None:
        return None
    if num_tokens is not None and shape.num_tokens != num_tokens:
        return None  # two readings of M disagree: the cell is not trustworthy
    if shape.topk > shape.num_experts or not plausible(shape):
        return None
    return shape


# Largest sizes of one MoE launch taken as real: far beyond every known model
# (DeepSeek-V3: K 7168, N 2048, E 256, k 8) and a 16M-token batch. A larger
# value is a corrupt cell: the op's shape is unknown, so no FLOPs, bytes or
# replay case are built from it (their products would run to hundreds of digits).
SHAPE_CAPS = {"num_tokens": 1 << 24, "hidden_dim": 1 << 17, "inter_dim": 1 << 18, "num_experts": 1 << 14,
              "topk": 1 << 10, "gemm_n": 1 << 19, "gemm_k": 1 << 18}


def plausible(shape: Shape) -> bool:
    """Every size of ``shape`` within :data:`SHAPE_CAPS`."""
    return all((getattr(shape, name) or 0) <= cap for name, cap in SHAPE_CAPS.items())


# --- perf_params ------------------------------------------------------------


def _from_params(family: Family, p: Mapping[str, Any], dims: list[tuple[int, ...]],
                 types: Sequence[str]) -> Shape | None:
    sizes = [_positive(p.get(k)) for k in ("num_tokens", "hidden_dim", "inter_dim", "num_experts", "topk")]
    if any(s is None for s in sizes):
        return None
    m, hidden, inter, e, k = (int(s) for s in sizes)  # type: ignore[arg-type]
    gated, gated_source = p.get("gated"), "perf_params"
    if gated is None:
        gated, gated_source = _gated_from_dims(dims, inter), "input_dims"
        if gated is None:
            gated_source = None
    weight = p.get("weight_dtype") or _weight_type(dims, types)
    return Shape(m, hidden, inter, e, k, gated, gated_source, p.get("input_dtype") or _first(types),
                 weight, p.get("output_dtype"), "perf_params", _role(family), "op_name")


def _grouped(p: Mapping[str, Any], dims: list[tuple[int, ...]], types: Sequence[str]) -> Shape | None:
    m, k = _positive(p.get("num_tokens")), _positive(p.get("topk"))
    n_l, k_l, e = _positive(p.get("N")), _positive(p.get("K")), _positive(p.get("num_experts"))
    source = "perf_params"
    if None in (m, k, n_l, k_l, e):
        source = "input_dims"
        weights = dims[1] if len(dims) > 1 and len(dims[1]) == 3 else None
        if not weights or not dims or len(dims[0]) != 2:
            return None
        e, n_l, k_l = weights
        rows_a = dims[0][0]
        # Top-k ids are (M, k): the up launch reads M rows, the down launch M·k.
        ids = next((d for d in dims[2:] if len(d) == 2 and 1 <= d[1] < e
                    and rows_a in (d[0], d[0] * d[1])), None)
        m, k = (ids[0], ids[1]) if ids else (None, None)
        if m is None or k is None or k >= e:
            return None
    assert m is not None and k is not None and n_l is not None and k_l is not None and e is not None
    rows = dims[0][0] if dims and len(dims[0]) >= 1 else None
    if rows == m and m != m * k:
        kind = "up"
    elif rows == m * k and k > 1:
        kind = "down"
    else:
        out = next((d for d in dims[2:5] if len(d) in (2, 3)), None)
        kind = "down" if out is not None and len(out) == 3 else "up" if out is not None else ""
    if not kind:
        return None
    # The halves' logical sizes; gating of the up launch is settled against
    # its down sibling (see settle_siblings), assumed until then.
    if kind == "up":
        hidden, inter, gated, gated_source = k_l, n_l // 2 if n_l % 2 == 0 else n_l, n_l % 2 == 0, "assumed"
    else:
        hidden, inter, gated, gated_source = n_l, k_l, None, None
    weight = p.get("weight_dtype") or (types[1] if len(types) > 1 else None)
    return Shape(m, hidden, inter, e, k, gated, gated_source, p.get("input_dtype") or _first(types), weight,
                 p.get("output_dtype"), source, kind, "shapes", n_l, k_l)


def settle_siblings(shapes: list[Shape | None]) -> list[Shape | None]:
    """Gating of each pipeline from its sibling stage (same M, E, k and hidden size).

    A grouped pair is settled from its launches' own GEMMs: gated when the
    up launch's N is twice the down launch's K (the intermediate size), and
    both stages take that answer. Otherwise a down stage without ``gated``
    takes its up stage's.
    """
    out = list(shapes)
    for i, shape in enumerate(shapes):
        if shape is None or shape.kind != "up":
            continue
        key = (shape.num_tokens, shape.num_experts, shape.topk, shape.hidden_dim)
        for j, down in enumerate(shapes):
            if down is None or down.kind != "down" or (
                    down.num_tokens, down.num_experts, down.topk, down.hidden_dim) != key:
                continue
            if shape.gemm_n is not None and down.gemm_k is not None:
                if shape.gemm_n not in (2 * down.gemm_k, down.gemm_k):
                    continue
                gated = shape.gemm_n == 2 * down.gemm_k
                out[i] = shape._replace(inter_dim=down.gemm_k, gated=gated, gated_source="sibling")
                out[j] = down._replace(gated=gated, gated_source="sibling")
            elif down.gated is None and shape.gated is not None and shape.inter_dim == down.inter_dim:
                out[j] = down._replace(gated=shape.gated, gated_source="sibling")
            else:
                continue
            break
    return out


def _role(family: Family) -> str:
    return family.role if family.role in ("fused", "up", "down") else "fused"


def _first(types: Sequence[str]) -> str | None:
    return types[0] if types and types[0] else None


def _weight_type(dims: list[tuple[int, ...]], types: Sequence[str]) -> str | None:
    for i, d in enumerate(dims):
        if len(d) == 3 and i < len(types) and types[i]:
            return types[i]
    return None


def _gated_from_dims(dims: list[tuple[int, ...]], inter: int) -> bool | None:
    for d in dims:
        if len(d) == 3 and d[1] in (2 * inter, inter) and d[1] != d[2]:
            return d[1] == 2 * inter
    return None


# --- Input Dims ---------------------------------------------------------------


def _packs(dtype: str) -> list[int]:
    """Storage packing to try: 4-bit types are normally packed, byte types only when shapes say so."""
    if dtypes.is_four_bit(dtype):
        return [2, 1]
    if dtypes.is_packable(dtype):
        return [1, 2]
    return [1]


def _from_dims(family: Family, dims: list[tuple[int, ...]], types: Sequence[str]) -> Shape | None:
    if not dims or any(x <= 0 for d in dims[:1] for x in d):
        return None
    names = list(types) + [""] * (len(dims) - len(types))
    role = _role(family)
    found = (_down_dims if role == "down" else _up_or_fused_dims)(dims, names, role)
    if found is None:
        return None
    m, hidden, inter, e, k, gated, weight = found
    return Shape(m, hidden, inter, e, k, gated, "input_dims" if gated is not None else None,
                 names[0] or None, weight, None, "input_dims", role, "op_name")


def _up_or_fused_dims(dims, names, role):
    x = next((d for d in dims if len(d) == 2), None)
    if x is None:
        return None
    m, hidden = x
    cubes = [(i, d) for i, d in enumerate(dims) if len(d) == 3 and all(v > 0 for v in d)]
    for pos, (i, w1) in enumerate(cubes):
        for pack in _packs(names[i]):
            if w1[2] * pack != hidden:
                continue
            e, rows = w1[0], w1[1]
            w2 = next((d for j, d in cubes[pos + 1:] if d[0] == e and d[1] == hidden), None)
            out = next((d for j, d in cubes if d[0] == m and d is not w1 and d[1] < e), None)
            inter = w2[2] * pack if w2 else out[2] if out else None
            if inter is None or rows not in (inter, 2 * inter):
                continue
            if role == "fused" and w2 is None:
                continue
            k = out[1] if out else _topk(dims, m, e)
            if k is None:
                continue
            weight = names[i] or None
            if pack == 2 and not dtypes.is_four_bit(names[i]):
                weight = "int4" if role != "fused" else "fp4"
            return m, hidden, inter, e, k, rows == 2 * inter, weight
    return None


def _down_dims(dims, names, role):
    first = dims[0]
    if len(first) == 3:
        m, k, inter = first
    else:
        return None
    for i, w2 in enumerate(dims[1:], start=1):
        if len(w2) != 3:
            continue
        for pack in _packs(names[i]):
            if w2[2] * pack == inter and w2[1] != inter:
                gated = next((d[1] == 2 * inter for d in dims[1:] if len(d) == 3 and d[0] == w2[0]
                              and d is not w2 and d[1] in (inter, 2 * inter)), None)
                return m, w2[1], inter, w2[0], k, gated, names[i] or None
    return None


def _topk(dims: list[tuple[int, ...]], m: int, e: int) -> int | None:
    for d in dims[1:]:
        # (M, E) is the router-logit layout: top-k of every expert is not MoE.
        if len(d) == 2 and d[0] == m and 1 <= d[1] < e:
            return d[1]
    return None
