"""Per-op figures of analysis §1–2, computed column-wise over every row.

One polars pass turns the validated ops frame into a frame of figures (time,
shares, throughput, resolved peaks, bound type, efficiency, variance,
library). Only the few rows that end up in the report are looked at
one by one later (``analysis``); nothing here loops over rows in Python,
so a 100 000-signature file costs about as much as reading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import polars as pl

from jarvis_moe import structure
from jarvis_moe.contract import TIME_SUM, Metadata

COMPARATIVE = "comparative"


@dataclass(frozen=True)
class PeakChoice:
    """The compute peak used for one (compute spec, activation dtype) pair."""

    peak: float | None
    substituted_spec: str | None
    warning: str | None


def resolve_peak(spec: str | None, act_dtype: str | None, metadata: Metadata) -> PeakChoice:
    """Analysis §2 peak resolution, with the precision-substitution rule.

    :param spec: the op's ``Compute Spec`` (``matrix_fp4``, ...), may be empty.
    :param act_dtype: the short dtype of the op's first input (``bf16``, ...).
    :return: the peak in TFLOP/s (``None`` when nothing applies), the spec it
        was taken from when that differs from ``spec``, and the warning that
        says so.
    """
    peaks = metadata.compute_peaks()
    spec = (spec or "").strip() or None
    if not peaks:
        # Older metadata: one BF16 peak stands for every spec.
        old = metadata.peak_bf16_maf_tflops
        if spec and spec != "matrix_bf16" and old:
            return PeakChoice(
                old, "matrix_bf16",
                f"metadata has only a BF16 peak (older pipeline); {old:g} TFLOP/s used for {spec}",
            )
        return PeakChoice(old, None, None)
    if spec and spec in peaks:
        return PeakChoice(peaks[spec], None, None)
    fallback = f"matrix_{act_dtype}" if act_dtype else None
    if fallback and fallback in peaks:
        if spec is None:
            return PeakChoice(peaks[fallback], fallback, None)
        return PeakChoice(
            peaks[fallback], fallback,
            f"{metadata.platform or 'this platform'} has no {spec} peak; the op is rated "
            f"against the {fallback} peak ({peaks[fallback]:g} TFLOP/s) of its activation "
            f"dtype, as the kernel computes on dequantised weights; weight bytes are kept as measured",
        )
    return PeakChoice(
        None, None,
        f"no compute peak for {spec or 'an unknown compute spec'}"
        + (f" or {fallback}" if fallback else "")
        + "; efficiency is left unknown",
    )


def _first_float(frame: pl.DataFrame, *cols: str) -> pl.Expr:
    present = [pl.col(c) for c in cols if c in frame.columns]
    if not present:
        return pl.lit(None, dtype=pl.Float64)
    return pl.coalesce(present) if len(present) > 1 else present[0]


def _text(frame: pl.DataFrame, col: str) -> pl.Expr:
    if col in frame.columns:
        return pl.col(col)
    return pl.lit(None, dtype=pl.String)


def _contains_any(expr: pl.Expr, rules: tuple[tuple[str, str, bool], ...]) -> pl.Expr:
    """The library of the first rule whose substring ``expr`` contains."""
    out = pl.lit(None, dtype=pl.String)
    for needle, library, case_sensitive in reversed(rules):
        hay = expr if case_sensitive else expr.str.to_lowercase()
        pat = needle if case_sensitive else needle.lower()
        out = pl.when(hay.str.contains(pat, literal=True)).then(pl.lit(library)).otherwise(out)
    return out


def kernel_names_text(frame: pl.DataFrame) -> pl.Expr:
    """All kernel names of a row as one string, for substring rules.

    Taken from the ``name`` entries of ``kernel_details_summary``, else the
    last frame of ``call_stack_full``: the same names the report shows,
    without parsing the literals of every row.
    """
    details = _text(frame, "kernel_details_summary").str.extract_all(r"'name':\s*'([^']*)'").list.join(" ")
    last_frame = _text(frame, "call_stack_full").str.extract(r"'([^']*)'\]*\s*$", 1)
    return pl.coalesce([pl.when(details != "").then(details), last_frame, pl.lit("")])


def op_figures(
    inputs_frame: pl.DataFrame,
    metadata: Metadata,
    *,
    scope: str,
    options: Mapping[str, Any],
) -> pl.DataFrame:
    """Every per-op figure of §2, one row per signature, sorted by time.

    Columns added (units in the name where there is one): ``time_ms``,
    ``count``, ``mean_us``, ``pct_category``, ``pct_total``, ``tflops``,
    ``tbs``, ``fpb``, ``act_dtype``, ``peak_tflops``, ``peak_tbs``,
    ``substituted_spec``, ``peak_warning``, ``bound``, ``eff_roofline``,
    ``eff_source``, ``efficiency``, ``clamped``, ``is_anomaly``,
    ``over_100``, ``cov``, ``high_variance``, ``library``, ``num_tokens``.
    """
    f = inputs_frame
    e2e = metadata.e2e_time_ms
    bw = metadata.peak_hbm_bw_tbs
    total_us = float(f.get_column(TIME_SUM).sum())

    count = pl.col("operation_count").round(0).cast(pl.Int64) if "operation_count" in f.columns else pl.lit(None, pl.Int64)
    f = f.with_columns(
        time_us=pl.col(TIME_SUM),
        count=pl.when(count > 0).then(count).otherwise(1),
        first_type=_text(f, "Input type").str.extract(r"^\s*[\(\[]\s*['\"]([^'\"]*)['\"]", 1),
        spec=_text(f, "Compute Spec").str.strip_chars(),
    )
    f = f.with_columns(
        mean_us=pl.coalesce(
            [_first_float(f, "Kernel Time (µs)_mean"), pl.col("time_us") / pl.col("count")]
        ),
    )

    # Peaks: resolved once per distinct (spec, first input dtype) pair.
    pairs = f.select("spec", "first_type").unique()
    rows = []
    for spec, first_type in pairs.iter_rows():
        act = structure.short_dtype(first_type) if first_type else None
        choice = resolve_peak(spec, act, metadata)
        rows.append((spec, first_type, act, choice.peak, choice.substituted_spec, choice.warning))
    peak_table = pl.DataFrame(
        rows,
        schema={"spec": pl.String, "first_type": pl.String, "act_dtype": pl.String,
                "peak_tflops": pl.Float64, "substituted_spec": pl.String, "peak_warning": pl.String},
        orient="row",
    )
    f = f.join(peak_table, on=["spec", "first_type"], how="left", nulls_equal=True)

    gflops = _first_float(f, "GFLOPS")
    mib = _first_float(f, "Data Moved (MB)")
    peak = pl.col("peak_tflops")
    f = f.with_columns(
        peak_tbs=pl.lit(bw, pl.Float64),
        tflops=pl.coalesce([_first_float(f, "TFLOPS/s_mean"), gflops / pl.col("mean_us") * 1000.0]),
        tbs=pl.coalesce([_first_float(f, "TB/s_mean"), mib * 1.048576 / pl.col("mean_us")]),
        fpb=pl.coalesce(
            [_first_float(f, "FLOPS/Byte"),
             pl.when(mib > 0).then(gflops * 1e9 / (mib * 1048576.0))]
        ),
        # Ideal time of one call at the roofline, microseconds.
        roofline_us=pl.max_horizontal(gflops * 1000.0 / peak, mib * 1.048576 / bw),
    )
    bound_col = _text(f, "Roofline Bound").str.strip_chars().str.to_uppercase()
    f = f.with_columns(
        bound=pl.when(bound_col == "COMPUTE_BOUND").then(pl.lit("compute"))
        .when(bound_col == "MEMORY_BOUND").then(pl.lit("memory"))
        .when(pl.col("fpb").is_not_null() & peak.is_not_null())
        .then(pl.when(pl.col("fpb") >= peak / bw).then(pl.lit("compute")).otherwise(pl.lit("memory"))),
    )
    roofline_first = _first_float(f, "Roofline Time (µs)_first")
    computed = pl.coalesce([pl.col("roofline_us"), roofline_first]) / pl.col("mean_us") * 100.0
    pct = _first_float(f, "Pct Roofline_mean")
    f = f.with_columns(
        eff_roofline=pl.coalesce([pct, computed]),
        eff_source=pl.when(pct.is_not_null()).then(pl.lit("pct_roofline"))
        .when(computed.is_not_null()).then(pl.lit("computed")),
    )
    f = _efficiency_in_scope(f, scope)
    warn_pct = float(options["efficiency_warn_pct"])
    anomaly_pct = float(options["anomaly_pct"])
    f = f.with_columns(
        over_100=(pl.col("eff_roofline") > warn_pct).fill_null(False),
        is_anomaly=(pl.col("eff_roofline") > anomaly_pct).fill_null(False),
        time_ms=pl.col("time_us") / 1000.0,
        pct_category=(pl.col("time_us") / total_us * 100.0) if total_us > 0 else pl.lit(0.0),
        pct_total=(pl.col("time_us") / 1000.0 / e2e * 100.0) if e2e else pl.lit(None, pl.Float64),
    )
    std = _first_float(f, "Kernel Time (µs)_std")
    eligible = (pl.col("count") > int(options["variance_min_count"])) & (
        pl.col("pct_total") >= float(options["variance_min_percent_of_total"])
    ).fill_null(False)
    cov = pl.when(eligible & (pl.col("mean_us") > 0)).then(std / pl.col("mean_us"))
    f = f.with_columns(
        cov=cov,
        high_variance=(cov > float(options["high_variance_cov"])).fill_null(False),
        library=pl.coalesce(
            [_contains_any(pl.col("name"), structure.OP_NAME_LIBRARY_RULES),
             _contains_any(kernel_names_text(f), structure.KERNEL_LIBRARY_RULES),
             pl.lit("Unknown")]
        ),
        num_tokens=pl.coalesce(
            [_text(f, "perf_params").str.extract(r"'num_tokens':\s*(\d+)", 1).cast(pl.Int64, strict=False),
             _text(f, "Input Dims").str.extract(r"^\s*\(\s*\(\s*(\d+)", 1).cast(pl.Int64, strict=False)]
        ),
    )
    return f.sort("time_us", descending=True, maintain_order=True)


def _efficiency_in_scope(f: pl.DataFrame, scope: str) -> pl.DataFrame:
    """Standalone: the roofline %. Comparative: 100 × t2 / t1, floored at it."""
    if scope != COMPARATIVE:
        return f.with_columns(
            efficiency=pl.col("eff_roofline"), clamped=pl.lit(False),
            t2_us=pl.lit(None, pl.Float64), count_trace2=pl.lit(None, pl.Float64),
        )
    delta = _first_float(f, "delta_us (trace2 - trace1)")
    speedup = _first_float(f, "speedup (trace2/trace1)")
    t1 = pl.col("time_us")
    t2 = pl.coalesce([t1 + delta, t1 * speedup])
    ratio = pl.when(t1 > 0).then(100.0 * t2 / t1)
    floor = pl.col("eff_roofline")
    clamped = (ratio < floor).fill_null(False)
    return f.with_columns(
        t2_us=t2,
        count_trace2=_first_float(f, "lca_count_trace2"),
        efficiency=pl.when(clamped).then(floor).otherwise(ratio),
        clamped=clamped,
        eff_source=pl.when(ratio.is_not_null()).then(pl.lit("comparative")),
    )


def category_figures(figures: pl.DataFrame, metadata: Metadata) -> dict[str, Any]:
    """Analysis §1: the category's total time, share and call count."""
    total_ms = float(figures.get_column("time_us").sum()) / 1000.0
    e2e = metadata.e2e_time_ms
    return {
        "total_time_ms": round(total_ms, 3),
        "percent_of_compute": round(total_ms / e2e * 100.0, 2) if e2e else 0,
        "operation_count": int(figures.get_column("count").sum()),
    }
