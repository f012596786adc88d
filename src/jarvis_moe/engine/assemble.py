"""Assemble the typed metrics of one category from its validated inputs.

The flow: column-wise figures of every row (:mod:`figures`), impact estimates
and ranked findings (:mod:`impact`), then the listed rows one by one — the
largest ops and every finding's members — with their MoE model
(:mod:`operations`), then the category-wide figures (:mod:`category`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from jarvis_moe.engine import category as cat
from jarvis_moe.engine import impact, levers
from jarvis_moe.engine.moe_block import SiblingRows, moe_block
from jarvis_moe.engine.figures import category_figures, ranked_figures
from jarvis_moe.engine.load import Inputs
from jarvis_moe.engine.moe_figures import Context
from jarvis_moe.engine.operations import (
    as_written, estimate_record, grouped_warnings, listed_moe, operation, prepare, report_rows,
)
from jarvis_moe.metrics import CategorySpecific, Finding, ImpactEstimate, MetricsOk
from jarvis_moe.options import Options

_ESTIMATE_INPUT = ("name", "time_us", "time_ms", "efficiency", "is_anomaly", "bound", "library", "pct_total")
# The figures read over every op, in rank order (the estimates, the sums of
# the category, its phases, the rest of the table, the trace-2 totals); the
# listed ops read every column, of their rows only.
_RANKED_COLUMNS = (*_ESTIMATE_INPUT, "count", "num_tokens", "t2_us")
_RECORD_COLUMNS = ("idx", "name", "type", "estimate_method", "impact_score", "impact_score_low",
                   "impact_score_high", "efficiency", "bound", "library", "time_ms", "pct_total")


def measurement_noise(options: Options) -> float:
    """Relative spread of call durations that is not routing: the floor ``routing_noise_pct``.

    Noise may only be estimated from calls whose work cannot differ by
    routing. Every call of an MoE category's ops streams or computes what its
    routing gives it (even a compute-bound call issues the padded rows of its
    experts), so none qualifies, and the floor is stated as the noise.
    """
    return options.routing_noise_pct / 100.0


def _trace_times(figures: pl.DataFrame, members: list[int]) -> dict[str, float | None]:
    """A comparative finding's listed members in both traces: times summed unrounded, rounded once."""
    if "t2_us" not in figures.columns or not members:
        return {}
    rows = figures[members]  # members are row positions of the figures frame
    t2 = rows.get_column("t2_us")
    if t2.null_count():
        return {}
    t1_ms, t2_ms = float(rows.get_column("time_us").sum()) / 1000.0, float(t2.sum()) / 1000.0
    return {"trace1_time_ms": round(t1_ms, 3), "trace2_time_ms": round(t2_ms, 3),
            "speedup_pct": round((t1_ms - t2_ms) / t1_ms * 100.0, 2) if t1_ms else None}


def _block(siblings: SiblingRows, operations: list, e2e: float | None) -> Any:
    """The MoE block's kernels in the other categories, sized against the listed ops' shape."""
    shaped = [op.moe for op in operations if op.moe is not None]
    chains = [op.module_chain for op in operations if op.module_chain]
    return moe_block(siblings.rows(), chains, shaped[0].hidden_dim if shaped else None,
                     shaped[0].inter_dim if shaped else None, e2e)


def build_metrics(inputs: Inputs, *, category: str, scope: str, options: Options,
                  generated_by: str) -> MetricsOk:
    """The metrics of a category whose CSV has rows (status OK)."""
    with SiblingRows(inputs.paths) as siblings:
        return _metrics(inputs, category, scope, options, generated_by, siblings)


def _metrics(inputs: Inputs, category: str, scope: str, options: Options, generated_by: str,
             siblings: SiblingRows) -> MetricsOk:
    """:func:`build_metrics` while the other categories' rows are read (``siblings``)."""
    meta = inputs.metadata
    ranked = ranked_figures(inputs.frame, meta, scope=scope, options=options)
    figures = ranked.columns(_RANKED_COLUMNS)
    e2e = meta.e2e_time_ms
    if scope == "comparative" and figures.get_column("t2_us").is_null().all():
        inputs.warnings.append(
            "comparative scope, but the ops CSV has no trace-2 times ('delta_us (trace2 - trace1)' or "
            "'speedup (trace2/trace1)'): no op can be compared and no finding is ranked; rerun with "
            "--comparison-scope standalone")
    # Only the columns the estimates read: their filters and sorts move a
    # few narrow columns.
    est = impact.estimates(figures.select(_ESTIMATE_INPUT), scope=scope, e2e_ms=e2e)
    groups = impact.findings(est, max_members=options.max_finding_members)

    cap = options.max_operations_listed
    listed = list(range(min(figures.height, cap)))
    listed += sorted({i for g in groups for i in g["members"]} - set(listed))
    position = {idx: pos for pos, idx in enumerate(listed)}
    ctx = Context(peak_tbs=meta.peak_hbm_bw_tbs, noise=measurement_noise(options), options=options,
                  platform=meta.platform)
    max_chain = options.max_call_chain_ops
    items = prepare(report_rows(ranked.rows(listed), inputs.frame))
    operations = [operation(item, moe, scope=scope, with_call_chain=pos < max_chain,
                            warn_pct=options.efficiency_warn_pct)
                  for pos, (item, moe) in enumerate(zip(items, listed_moe(items, ctx)))]

    # Records only for the estimates the JSON shows: a 100 000-row input has
    # as many estimates, and the JSON lists the capped head of them.
    capped = est.head(cap).get_column("idx").to_list()
    wanted = set(capped) | {i for g in groups for i in g["members"]}
    shown = est.filter(pl.col("idx").is_in(sorted(wanted))).select(_RECORD_COLUMNS)
    records = {r["idx"]: estimate_record(r, category) for r in shown.iter_rows(named=True)}
    findings = [Finding(**{**g, **_trace_times(figures, g["members"]),
                           "members": [ImpactEstimate(**records[i], op_index=position.get(i)) for i in g["members"]]})
                for g in groups]
    estimates = [ImpactEstimate(**records[i], op_index=position.get(i)) for i in capped]

    figures_cat = category_figures(figures, meta)
    specific = _category_specific(inputs, figures, operations, options, category,
                                  figures_cat["percent_of_compute"] if e2e else None, siblings)
    return MetricsOk(
        category=category, status="OK", comparison_scope=scope, generated_by=generated_by, **figures_cat,
        e2e_time_ms=None if e2e is None else round(e2e, 3), platform=meta.platform,
        operations_total=figures.height, operations_omitted=figures.height - len(operations),
        operations=operations, category_specific=specific, impact_estimates=estimates,
        impact_estimates_total=est.height, category_findings=findings,
        warnings=list(inputs.warnings) + grouped_warnings(operations), input_warnings=list(inputs.warnings),
        options=options,
    )


def _category_specific(inputs: Inputs, figures: pl.DataFrame, operations: list, options: Options, category: str,
                       pct: float | None, siblings: SiblingRows) -> CategorySpecific:
    """The category-wide figures: peaks, significance, layers, phases, pipelines, levers, the MoE block."""
    meta = inputs.metadata
    e2e = meta.e2e_time_ms
    block = _block(siblings, operations, e2e)
    activation = sum(p.time_ms for p in block.parts if p.kind == "activation") if block is not None else 0.0
    pairs = cat.pipelines(operations, meta.peak_hbm_bw_tbs, e2e, activation or None)
    peaks = meta.compute_peaks()
    found, sums = levers.levers(operations, pairs, meta, e2e, options.sibling_gap_ratio,
                                options.lever_min_pct)
    return CategorySpecific(
        peak_maf_tflops=as_written(peaks.get("matrix_bf16", meta.peak_bf16_maf_tflops)),
        peak_hbm_bw_tbs=as_written(meta.peak_hbm_bw_tbs),
        significance=cat.significance(pct, options.significance_band_low_pct, options.significance_band_high_pct),
        layer_structure=cat.layer_structure(operations, inputs.tree, options.max_call_chain_ops),
        phase_split=cat.phase_split(figures, options.decode_max_tokens),
        fusion_payoff=cat.fusion_payoff(pairs, e2e) if category == "moe_unfused" else None,
        table_rest=cat.table_rest(figures, max(1, options.max_table_ops)),
        trace2_total_ms=cat.trace2_total(figures) if "t2_us" in figures.columns else None,
        levers=found, lever_sums=sums, moe_block=block,
        limits=list(cat.LIMITS),
    )
