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
from jarvis_moe.contract import FLOAT_COLUMNS, TIME_SUM, Metadata

COMPARATIVE = "comparative"
# Column of the figures: the row's position in the frame they came from.
POSITION = "__position"
# The frames here are in memory already; the streaming engine's set-up
# costs more than it saves on them.
ENGINE = "in-memory"


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


_DETAIL_NAMES = r"'name':\s*'([^']*)'"
_LAST_FRAME = r"'([^']*)'\]*\s*$"
_PARAMS_TOKENS = r"'num_tokens':\s*(\d+)"
_DIMS_TOKENS = r"^\s*\(\s*\(\s*(\d+)"


def _fill_from_fallbacks(f: pl.DataFrame, src: pl.DataFrame) -> pl.DataFrame:
    """Kernel names and token counts from their second source, where missing.

    Kernel names come from ``kernel_details_summary``, else the last frame
    of ``call_stack_full``; token counts from ``perf_params``, else the
    first dimension of ``Input Dims``: the same strings the report shows,
    without parsing the literals of every row. The second sources are read
    only for the rows that need them, which in a pipeline's file are few.
    """
    fallbacks = (
        ("kernels", "call_stack_full", lambda e: e.str.extract(_LAST_FRAME, 1)),
        ("num_tokens", "Input Dims", lambda e: e.str.extract(_DIMS_TOKENS, 1).cast(pl.Int64, strict=False)),
    )
    for target, column, derive in fallbacks:
        missing = f.get_column(target).is_null()
        if column not in src.columns or not missing.any():
            continue
        rows = missing.arg_true()
        values = src.select(derive(pl.col(column).gather(rows))).to_series()
        f = f.with_columns(f.get_column(target).scatter(rows, values))
    return f.with_columns(pl.col("kernels").fill_null(""))


def op_figures(
    inputs_frame: pl.DataFrame,
    metadata: Metadata,
    *,
    scope: str,
    options: Mapping[str, Any],
) -> pl.DataFrame:
    """Every per-op figure of §2, one row per signature, sorted by time.

    The result is narrow: the op name, the number columns of the input and
    the figures, not the long literal cells. ``POSITION`` is the row's
    position in ``inputs_frame``, where the caller finds those cells for the
    few rows it reports; sorting and filtering the figures therefore never
    copies them.

    Columns added (units in the name where there is one): ``time_ms``,
    ``count``, ``mean_us``, ``pct_category``, ``pct_total``, ``tflops``,
    ``tbs``, ``fpb``, ``act_dtype``, ``peak_tflops``, ``peak_tbs``,
    ``substituted_spec``, ``peak_warning``, ``bound``, ``eff_roofline``,
    ``eff_source``, ``efficiency``, ``clamped``, ``is_anomaly``,
    ``over_100``, ``cov``, ``high_variance``, ``library``, ``num_tokens``.
    """
    src = inputs_frame
    e2e = metadata.e2e_time_ms
    bw = metadata.peak_hbm_bw_tbs
    total_us = float(src.get_column(TIME_SUM).sum())

    # One pass over the input: every text-derived column is computed here,
    # in parallel, and nothing else of the long cells is kept.
    f = src.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(POSITION),
        pl.col("name"),
        *(c for c in FLOAT_COLUMNS if c in src.columns),
        first_type=_text(src, "Input type").str.extract(r"^\s*[\(\[]\s*['\"]([^'\"]*)['\"]", 1),
        spec=_text(src, "Compute Spec").str.strip_chars(),
        bound_text=_text(src, "Roofline Bound").str.strip_chars().str.to_uppercase(),
        # replace(): an empty list of names counts as missing.
        kernels=_text(src, "kernel_details_summary").str.extract_all(_DETAIL_NAMES).list.join(" ").replace("", None),
        num_tokens=_text(src, "perf_params").str.extract(_PARAMS_TOKENS, 1).cast(pl.Int64, strict=False),
    ).collect(engine=ENGINE)
    f = _fill_from_fallbacks(f, src)

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

    # The rest is one lazy plan over the narrow frame, collected once.
    base = f
    count = pl.col("operation_count").round(0).cast(pl.Int64) if "operation_count" in base.columns else pl.lit(None, pl.Int64)
    lf = _with_library(base.lazy()).join(
        peak_table.lazy(), on=["spec", "first_type"], how="left", nulls_equal=True, maintain_order="left"
    ).with_columns(
        time_us=pl.col(TIME_SUM),
        count=pl.when(count > 0).then(count).otherwise(1),
    )
    lf = lf.with_columns(
        mean_us=pl.coalesce(
            [_first_float(base, "Kernel Time (µs)_mean"), pl.col("time_us") / pl.col("count")]
        ),
    )

    gflops = _first_float(base, "GFLOPS")
    mib = _first_float(base, "Data Moved (MB)")
    peak = pl.col("peak_tflops")
    lf = lf.with_columns(
        peak_tbs=pl.lit(bw, pl.Float64),
        tflops=pl.coalesce([_first_float(base, "TFLOPS/s_mean"), _known(gflops / pl.col("mean_us") * 1000.0)]),
        tbs=pl.coalesce([_first_float(base, "TB/s_mean"), _known(mib * 1.048576 / pl.col("mean_us"))]),
        fpb=pl.coalesce(
            [_first_float(base, "FLOPS/Byte"),
             pl.when(mib > 0).then(_known(gflops * 1e9 / (mib * 1048576.0)))]
        ),
        # Ideal time of one call at the roofline, microseconds. An op with
        # FLOPs but no compute peak has no roofline: its bandwidth term alone
        # would call a compute-bound op hopelessly slow.
        roofline_us=pl.when(gflops.is_null() | peak.is_not_null()).then(
            _known(pl.max_horizontal(gflops * 1000.0 / peak, mib * 1.048576 / bw))
        ),
    )
    bound_col = pl.col("bound_text")
    lf = lf.with_columns(
        bound=pl.when(bound_col == "COMPUTE_BOUND").then(pl.lit("compute"))
        .when(bound_col == "MEMORY_BOUND").then(pl.lit("memory"))
        .when(pl.col("fpb").is_not_null() & peak.is_not_null())
        .then(pl.when(pl.col("fpb") >= peak / bw).then(pl.lit("compute")).otherwise(pl.lit("memory"))),
    )
    roofline_first = _first_float(base, "Roofline Time (µs)_first")
    computed = _known(pl.coalesce([pl.col("roofline_us"), roofline_first]) / pl.col("mean_us") * 100.0)
    pct = _first_float(base, "Pct Roofline_mean")
    lf = lf.with_columns(
        eff_roofline=pl.coalesce([pct, computed]),
        eff_source=pl.when(pct.is_not_null()).then(pl.lit("pct_roofline"))
        .when(computed.is_not_null()).then(pl.lit("computed")),
    )
    lf = _efficiency_in_scope(lf, base, scope)
    warn_pct = float(options["efficiency_warn_pct"])
    anomaly_pct = float(options["anomaly_pct"])
    lf = lf.with_columns(
        over_100=(pl.col("eff_roofline") > warn_pct).fill_null(False),
        is_anomaly=(pl.col("eff_roofline") > anomaly_pct).fill_null(False),
        time_ms=pl.col("time_us") / 1000.0,
        pct_category=_known(pl.col("time_us") / total_us * 100.0) if total_us > 0 else pl.lit(0.0),
        pct_total=_known(pl.col("time_us") / 1000.0 / e2e * 100.0) if e2e else pl.lit(None, pl.Float64),
    )
    std = _first_float(base, "Kernel Time (µs)_std")
    eligible = (pl.col("count") > int(options["variance_min_count"])) & (
        pl.col("pct_total") >= float(options["variance_min_percent_of_total"])
    ).fill_null(False)
    cov = pl.when(eligible & (pl.col("mean_us") > 0)).then(_known(std / pl.col("mean_us")))
    lf = lf.with_columns(
        cov=cov,
        high_variance=(cov > float(options["high_variance_cov"])).fill_null(False),
    )
    return lf.drop("bound_text").sort("time_us", descending=True, maintain_order=True).collect(engine=ENGINE)


def _known(expr: pl.Expr) -> pl.Expr:
    """A derived figure, or null where it is NaN or infinite.

    Inputs are finite, but a ratio of them need not be (0/0, a mean of
    1e-300 µs): such a figure is unknown, and must not be compared, ranked
    or printed as if it were a number.
    """
    return pl.when(expr.is_finite()).then(expr)


def _with_library(f: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``library`` from the op name and kernel names, then drop ``kernels``.

    The substring rules run once per distinct (name, kernels) pair: a trace
    has a handful of those however many shapes it holds.
    """
    pairs = f.select("name", "kernels").unique().with_columns(
        library=pl.coalesce(
            [_contains_any(pl.col("name"), structure.OP_NAME_LIBRARY_RULES),
             _contains_any(pl.col("kernels"), structure.KERNEL_LIBRARY_RULES),
             pl.lit("Unknown")]
        )
    )
    return f.join(pairs, on=["name", "kernels"], how="left", nulls_equal=True,
                  maintain_order="left").drop("kernels")


def _efficiency_in_scope(f: pl.LazyFrame, base: pl.DataFrame, scope: str) -> pl.LazyFrame:
    """Standalone: the roofline %. Comparative: 100 × t2 / t1, floored at it."""
    if scope != COMPARATIVE:
        return f.with_columns(
            efficiency=pl.col("eff_roofline"), clamped=pl.lit(False),
            t2_us=pl.lit(None, pl.Float64), count_trace2=pl.lit(None, pl.Float64),
        )
    delta = _first_float(base, "delta_us (trace2 - trace1)")
    speedup = _first_float(base, "speedup (trace2/trace1)")
    t1 = pl.col("time_us")
    t2 = _known(pl.coalesce([t1 + delta, t1 * speedup]))
    ratio = pl.when(t1 > 0).then(_known(100.0 * t2 / t1))
    floor = pl.col("eff_roofline")
    clamped = (ratio < floor).fill_null(False)
    return f.with_columns(
        t2_us=t2,
        count_trace2=_first_float(base, "lca_count_trace2"),
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
