"""Assemble the metrics JSON of one category from validated input.

The column-wise figures come from ``metrics`` and ``impact``; here the rows
that the report shows (the top ops by time and the members of findings) are
looked at one by one: their literal cells are parsed, and the MoE model of
§4 (``routing``) and the trace strings (``structure``) are applied to them.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

from jarvis_moe import impact, routing, structure
from jarvis_moe.contract import OpCells
from jarvis_moe.load import Inputs
from jarvis_moe.metrics import COMPARATIVE, POSITION, category_figures, op_figures
from jarvis_moe.text import display_text

LIMITS = (
    "Cannot assess expert load balance from trace data: per-expert token counts are not in a kernel trace.",
    "Routing and gating quality cannot be seen in a kernel trace.",
    "The real per-expert byte traffic is not measured; bytes come from the pipeline's perf model under uniform routing.",
    "Cache hit rates, bank conflicts, occupancy and shared-memory use are not in the trace.",
)


def _r(value: Any, places: int) -> float | None:
    if value is None:
        return None
    return round(float(value), places)


def build_metrics(
    inputs: Inputs, *, category: str, scope: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The full metrics dict of a category whose CSV has rows (status OK)."""
    meta = inputs.metadata
    figures = op_figures(inputs.frame, meta, scope=scope, options=options)
    e2e = meta.e2e_time_ms
    # Only the columns the estimates read: the filters and sorts inside then
    # move a few narrow columns, not every figure.
    est = impact.estimates(figures.select(_ESTIMATE_INPUT), scope=scope, e2e_ms=e2e)
    groups = impact.findings(est, max_members=int(options["max_finding_members"]))

    listed = list(range(min(figures.height, int(options["max_operations_listed"]))))
    members = sorted({i for g in groups for i in g["members"]} - set(listed))
    listed += members
    position = {idx: pos for pos, idx in enumerate(listed)}
    rows = _report_rows(figures, inputs.frame, listed)
    max_chain = int(options["max_call_chain_ops"])
    parsed = _ParseCache()
    operations = [
        _operation(row, category=category, scope=scope, options=options, meta=meta,
                   with_call_chain=pos < max_chain, parsed=parsed)
        for pos, row in enumerate(rows)
    ]

    # Records only for the estimates the JSON shows: a 100 000-row input
    # has as many estimates, and the JSON lists the capped head of them.
    capped = est.head(int(options["max_operations_listed"])).get_column("idx").to_list()
    wanted = set(capped) | {i for g in groups for i in g["members"]}
    shown = est.filter(pl.col("idx").is_in(sorted(wanted))).select(_RECORD_COLUMNS)
    records = {r["idx"]: _estimate_record(r, category) for r in shown.iter_rows(named=True)}
    for g in groups:
        g["members"] = [dict(records[i], op_index=position.get(i)) for i in g["members"]]
    impact_estimates = [dict(records[i], op_index=position.get(i)) for i in capped]

    figures_cat = category_figures(figures, meta)
    warnings = list(inputs.warnings) + _grouped_op_warnings(operations)
    return {
        "category": category,
        "status": "OK",
        "comparison_scope": scope,
        **figures_cat,
        "e2e_time_ms": _r(e2e, 3),
        "platform": meta.platform,
        "operations_total": figures.height,
        "operations_omitted": figures.height - len(operations),
        "operations": operations,
        "category_specific": _category_specific(
            figures, operations, inputs, category=category, options=options,
            percent_of_compute=figures_cat["percent_of_compute"],
        ),
        "impact_estimates": impact_estimates,
        "impact_estimates_total": est.height,
        "category_findings": groups,
        "warnings": warnings,
        "options": dict(options),
    }


_ESTIMATE_INPUT = ("name", "time_us", "time_ms", "efficiency", "is_anomaly", "bound", "library", "pct_total")
_RECORD_COLUMNS = ("idx", "name", "type", "estimate_method", "impact_score", "impact_score_low",
                   "impact_score_high", "efficiency", "bound", "library", "time_ms", "pct_total")
# Cells of the input that the report shows or parses, for the listed rows only.
_REPORT_CELLS = ("Input Dims", "Input type", "perf_params", "kernel_details_summary",
                 "call_stack_full", "entry_point", "ex_UID")


def _report_rows(figures: pl.DataFrame, frame: pl.DataFrame, listed: list[int]) -> list[dict[str, Any]]:
    """The figures of the listed rows, each with its literal cells from the input."""
    if not listed:
        return []
    picked = figures[listed]
    cells = [c for c in _REPORT_CELLS if c in frame.columns]
    if not cells:
        return picked.to_dicts()
    texts = frame.select(pl.col(cells).gather(picked.get_column(POSITION)))
    return [dict(row, **text) for row, text in zip(picked.iter_rows(named=True), texts.iter_rows(named=True))]


class _ParseCache(dict):
    """Parsed literal cells and derived strings, keyed by (kind, cell text).

    The ops of one trace share call stacks and kernel lists across shapes,
    so the listed rows hold far fewer distinct cells than rows.
    """

    def remember(self, kind: str, text: Any, compute: Any) -> Any:
        key = (kind, text)
        if key not in self:
            self[key] = compute()
        return self[key]


def _grouped_op_warnings(operations: list[dict[str, Any]], shown: int = 3) -> list[str]:
    """One line per distinct op warning, naming the ops it applies to.

    A precision substitution usually applies to every signature of a trace;
    repeating it per op would bury the other warnings.
    """
    ops_by_warning: dict[str, list[str]] = {}
    for op in operations:
        for w in op["warnings"]:
            names = ops_by_warning.setdefault(w, [])
            if op["display_name"] not in names:
                names.append(op["display_name"])
    lines = []
    for w, names in ops_by_warning.items():
        who = ", ".join(names[:shown])
        if len(names) > shown:
            who += f" and {len(names) - shown} more"
        lines.append(f"{who}: {w}")
    return lines


def _estimate_record(r: dict[str, Any], category: str) -> dict[str, Any]:
    record = {
        "operation": display_text(r["name"]),
        "category": category,
        "type": r["type"],
        "estimate_method": r["estimate_method"],
        "impact_score": r["impact_score"],
        "impact_score_low": r["impact_score_low"],
        "impact_score_high": r["impact_score_high"],
        "efficiency_pct": _r(r["efficiency"], 2) if r["estimate_method"] == "quantified" else None,
        "bound_type": r["bound"] if r["estimate_method"] == "quantified" else None,
        "library": r["library"],
        "time_ms": _r(r["time_ms"], 3),
    }
    if r["estimate_method"] == "heuristic":
        record["percent_of_total"] = _r(r["pct_total"], 2)
    return record


def _operation(
    row: dict[str, Any], *, category: str, scope: str, options: Mapping[str, Any],
    meta: Any, with_call_chain: bool, parsed: _ParseCache,
) -> dict[str, Any]:
    cells = OpCells.from_row(row, cache=parsed)
    call_stack = cells.call_stack or []
    stack_key = (row.get("call_stack_full"), row.get("kernel_details_summary"))

    def kernels() -> tuple[str, str]:
        names = structure.kernel_names(call_stack) if call_stack else []
        if not names and cells.kernel_details:
            names = [str(k.get("name")) for k in cells.kernel_details if k.get("name")]
        # A blank name is no kernel; it would show as an empty "Kernel 2: ".
        names = [name for name in names if display_text(name)]
        raw, short = structure.kernel_name_display(names)
        return raw, _as_cell(short)

    kernel_name, kernel_trunc = parsed.remember("kernels", stack_key, kernels)
    chain = list(parsed.remember("chain", stack_key[0], lambda: structure.module_chain(call_stack)))
    library = row["library"]
    warnings = _op_warnings(row, scope)
    op: dict[str, Any] = {
        "name": row["name"],
        "display_name": display_text(row["name"]),
        "count": int(row["count"]),
        "time_ms": _r(row["time_ms"], 3),
        "percent_of_category": _r(row["pct_category"], 2),
        "percent_of_total": _r(row["pct_total"], 2),
        "efficiency": {
            "tflops_achieved": _r(row["tflops"], 2),
            "tb_s_achieved": _r(row["tbs"], 2),
            "efficiency_percent": _r(row["efficiency"], 2),
            "bound_type": row["bound"],
            "flops_per_byte": _r(row["fpb"], 2),
            "compute_spec": row["spec"],
            "resolved_peak_maf": _peak_number(row["peak_tflops"]),
            "resolved_peak_hbm_bw": _peak_number(row["peak_tbs"]),
            "warning": "; ".join(warnings) or None,
            "is_anomaly": bool(row["is_anomaly"]),
            "substituted_compute_spec": row["substituted_spec"],
            "efficiency_source": row["eff_source"],
            "roofline_efficiency_percent": _r(row["eff_roofline"], 2),
        },
        "Input Dims": row.get("Input Dims"),
        "Input type": row.get("Input type"),
        "args": _as_cell(structure.format_args(cells.input_dims or (), cells.input_types or ())),
    }
    if scope == COMPARATIVE:
        t2_ms = row["t2_us"] / 1000.0 if row["t2_us"] is not None else None
        op["t2_time_ms"] = _r(t2_ms, 3)
        op["count_trace2"] = int(row["count_trace2"]) if row["count_trace2"] is not None else None
        op["difference_ms"] = _r(t2_ms - row["time_ms"], 3) if t2_ms is not None else None
        op["speedup_pct"] = (
            _r((row["time_ms"] - t2_ms) / row["time_ms"] * 100.0, 2)
            if t2_ms is not None and row["time_ms"] else None
        )
    op.update({
        "cov": _r(row["cov"], 3),
        "high_variance": bool(row["high_variance"]),
        "library": library,
        "launcher_path": _as_cell(structure.launcher_path(
            row.get("entry_point"), [m for m in chain if display_text(m)], library)),
        "kernel_name": kernel_name,
        "kernel_name_trunc": kernel_trunc,
        "module_chain": chain,
    })
    if with_call_chain:
        op["call_chain"] = call_stack
    op["warnings"] = warnings
    op["moe"] = _moe_figures(row, cells, category=category, options=options, meta=meta)
    op["ex_uid"] = row.get("ex_UID")
    return op


def _as_cell(display: str) -> str:
    """A display string exactly as a markdown table cell shows it.

    The findings copy ``args``, ``launcher_path`` and ``kernel_name_trunc``
    into table cells verbatim, and a cell loses its outer blanks: each
    ``<br>`` line is trimmed here so the JSON and the table say the same.
    """
    return "<br>".join(line.strip() for line in display.split("<br>")).strip()


def _peak_number(value: float | None) -> float | int | None:
    """Peaks as the metadata wrote them: 708, not 708.0."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _op_warnings(row: dict[str, Any], scope: str) -> list[str]:
    out = []
    if row["peak_warning"]:
        out.append(row["peak_warning"])
    eff = row["eff_roofline"]
    if row["is_anomaly"]:
        out.append(
            f"{eff:.2f}% of roofline is not physically possible: the measurement or the "
            "peak is wrong; the op is kept out of quantified impact"
        )
    elif row["over_100"]:
        out.append(f"{eff:.2f}% of roofline is above 100%: check the peak or the perf model")
    if scope == COMPARATIVE and row["clamped"]:
        out.append(
            f"trace-2 time would put the op below its trace-1 roofline efficiency; "
            f"efficiency floored at {eff:.2f}%"
        )
    return out


def _moe_figures(
    row: dict[str, Any], cells: OpCells, *, category: str, options: Mapping[str, Any], meta: Any
) -> dict[str, Any] | None:
    """Analysis §4 for one op, or ``None`` when its shape is unknown."""
    shape = None
    if cells.perf_params is not None:
        shape = routing.shape_from_perf_params(cells.perf_params.model_dump())
    if shape is None and cells.input_dims:
        shape = routing.shape_from_input_dims(cells.input_dims, cells.input_types or ())
    if shape is None:
        return None
    kind = routing.projection_kind(row["name"])
    m, e, k = shape.num_tokens, shape.num_experts, shape.topk
    bound = row["bound"]
    eff = row["eff_roofline"]
    interval = None
    if bound == "memory" and eff is not None:
        interval = routing.efficiency_interval(eff, shape, kind)
    crossover = None
    crossover_note = None
    if row["peak_tflops"]:
        result = routing.crossover_tokens(shape, kind, row["peak_tflops"], meta.peak_hbm_bw_tbs)
        crossover, crossover_note = _crossover_parts(result)
    waste, block = routing.padding_waste_pct(shape)
    skew = routing.skew(
        row["count"], row.get("Kernel Time (µs)_mean"), row.get("Kernel Time (µs)_median"),
        row.get("Kernel Time (µs)_std"), row.get("Kernel Time (µs)_max"),
        min_count=int(options["skew_min_count"]),
        max_over_median=float(options["skew_max_over_median"]),
        cov=float(options["skew_cov"]),
    )
    active = routing.active_experts(e, k, m)
    return {
        "num_tokens": m, "hidden_dim": shape.hidden_dim, "inter_dim": shape.inter_dim,
        "num_experts": e, "topk": k, "gated": shape.gated,
        "input_dtype": shape.input_dtype, "weight_dtype": shape.weight_dtype,
        "shape_source": shape.source, "kind": kind,
        "flops_per_call": routing.projection_flops(shape, kind),
        "tokens_per_expert": _r(routing.tokens_per_expert(shape), 2),
        "active_experts": {
            "low": active["low"], "expected": _r(active["expected"], 1), "high": active["high"],
        },
        "efficiency_interval": (
            {"low": _r(interval["low"], 1), "high": _r(interval["high"], 1)} if interval else None
        ),
        "crossover_tokens": crossover,
        "crossover_note": crossover_note,
        "padding_waste_pct": _r(waste, 1),
        "padding_block_rows": block,
        "phase": routing.phase(m, int(options["decode_max_tokens"])),
        "skew": skew,
    }


def _crossover_parts(result: Any) -> tuple[int | None, str | None]:
    if result is None:
        return None, None
    reason = getattr(result, "reason", None)
    return getattr(result, "tokens", None), (None if reason == "found" else reason)


def _category_specific(
    figures: pl.DataFrame, operations: list[dict[str, Any]], inputs: Inputs, *,
    category: str, options: Mapping[str, Any], percent_of_compute: float,
) -> dict[str, Any]:
    meta = inputs.metadata
    peaks = meta.compute_peaks()
    out: dict[str, Any] = {
        "peak_maf_tflops": _peak_number(peaks.get("matrix_bf16", meta.peak_bf16_maf_tflops)),
        "peak_hbm_bw_tbs": _peak_number(meta.peak_hbm_bw_tbs),
        "significance": significance(
            percent_of_compute if meta.e2e_time_ms else None,
            float(options["significance_band_low_pct"]),
            float(options["significance_band_high_pct"]),
        ),
        "layer_structure": structure.layer_structure(
            [
                {"name": op["name"], "ex_uid": op.get("ex_uid"), "time_ms": op["time_ms"],
                 "call_stack": op.get("call_chain")}
                for op in operations[: int(options["max_call_chain_ops"])]
            ],
            {k: v.model_dump() for k, v in inputs.tree.items()} if inputs.tree else None,
        ),
        "phase_split": phase_split(figures, int(options["decode_max_tokens"])),
        "limits": list(LIMITS),
    }
    if category == "moe_unfused":
        out["fusion_payoff"] = fusion_payoff(operations, meta.peak_hbm_bw_tbs, meta.e2e_time_ms)
    return out


def significance(pct: float | None, low: float, high: float) -> dict[str, Any]:
    """Where the category's share of GPU time sits against the usual band."""
    band = f"{low:g}–{high:g} %"
    if pct is None:
        position, statement = "unknown", (
            "The end-to-end GPU time is unknown, so the share of MoE layers cannot be placed "
            f"against the {band} they typically take in MoE models."
        )
    elif pct < low:
        position, statement = "below", (
            f"MoE layers take {pct:.2f}% of GPU time, below the {band} they typically take in "
            "MoE models: other work dominates this trace."
        )
    elif pct <= high:
        position, statement = "within", (
            f"MoE layers take {pct:.2f}% of GPU time, within the {band} they typically take in MoE models."
        )
    else:
        position, statement = "above", (
            f"MoE layers take {pct:.2f}% of GPU time, above the {band} they typically take in "
            "MoE models: they are the main cost of this trace."
        )
    return {"percent_of_compute": pct, "band_low_pct": low, "band_high_pct": high,
            "position": position, "statement": statement}


def phase_split(figures: pl.DataFrame, decode_max_tokens: int) -> dict[str, float]:
    """Time of decode-like, prefill-like and unknown-shape signatures, ms."""
    m = pl.col("num_tokens")
    sums = figures.select(
        decode_ms=pl.col("time_ms").filter(m <= decode_max_tokens).sum(),
        prefill_ms=pl.col("time_ms").filter(m > decode_max_tokens).sum(),
        unknown_ms=pl.col("time_ms").filter(m.is_null()).sum(),
    ).row(0, named=True)
    return {k: round(float(v or 0.0), 3) for k, v in sums.items()}


def fusion_payoff(
    operations: list[dict[str, Any]], peak_tbs: float, e2e_ms: float | None
) -> dict[str, Any] | None:
    """Bytes an unfused pipeline moves through memory between its halves.

    The up projection writes the M·k·N activation and the down projection
    reads it back; counted once per up-projection call (or once per call of
    every shaped op when the halves cannot be told apart).
    """
    shaped = [op for op in operations if op.get("moe")]
    ups = [op for op in shaped if op["moe"]["kind"] == "up"] or shaped
    if not ups:
        return None
    total_bytes = 0.0
    calls = 0
    per_call = []
    for op in ups:
        moe = op["moe"]
        act = routing.dtype_bytes(moe.get("input_dtype") or "") or 2.0
        shape = routing.MoeShape(
            num_tokens=moe["num_tokens"], hidden_dim=moe["hidden_dim"], inter_dim=moe["inter_dim"],
            num_experts=moe["num_experts"], topk=moe["topk"], gated=moe["gated"],
            input_dtype=moe.get("input_dtype"), weight_dtype=moe.get("weight_dtype"),
            source=moe["shape_source"],
        )
        b = routing.intermediate_bytes_per_call(shape, act)
        per_call.append(b)
        total_bytes += b * op["count"]
        calls += op["count"]
    time_ms = total_bytes / (peak_tbs * 1e12) * 1e3
    return {
        "intermediate_bytes_per_call": int(per_call[0]) if len(set(per_call)) == 1 else int(max(per_call)),
        "total_bytes": int(total_bytes),
        "calls": calls,
        "total_time_ms_at_peak": round(time_ms, 3),
        "percent_of_total": round(time_ms / e2e_ms * 100.0, 2) if e2e_ms else None,
    }
