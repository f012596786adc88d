"""The shared per-op figures of analysis §1–2, computed column-wise over every row.

One polars pass turns the validated ops frame into a narrow frame of figures:
time, shares, throughput, resolved peaks, bound type, efficiency, variance,
the op's MoE family and library, and the facts of the literal cells that
every row needs (:mod:`jarvis_moe.engine.cells`). Nothing here
loops over rows in Python, so a 100 000-signature file costs about as much
as reading it; the few rows the report lists are modelled one by one later.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from jarvis_moe.engine.cells import (
    STACK_CELLS,
    TYPE_CELLS,
    detail_kernels,
    dims_tokens,
    named,
    perf_facts,
    stack_kernels,
    text_column,
    type_facts,
)
from jarvis_moe.engine.contract import FLOAT_COLUMNS, TIME_SUM, Metadata
from jarvis_moe.engine.distinct import distinct_facts
from jarvis_moe.engine.families import BY_KEY, name_to_key
from jarvis_moe.engine.libraries import library_expr, name_library
from jarvis_moe.engine.peaks import BY_KERNEL, with_peaks
from jarvis_moe.engine.ranking import Deferred, Ranked
from jarvis_moe.options import Options

COMPARATIVE = "comparative"
# What a kernel computes in, from its name (lower case). Triton matmul_ogs
# names its operands ``<activation>x<activation>x<weight>``: the product is
# taken in the activation dtype whatever the weights are stored in. AITER's
# FP8 MoE kernels quantise the activations (per token or per block) and
# multiply in FP8.
KERNEL_DTYPE = {
    "16-bit": r"(?:^|[^a-z0-9])(bf16|fp16)x(?:bf16|fp16)x",
    "fp8": r"fp8_g1u1|pertokenfp8|blockscalefp8|fp8_blockscale|_w8a8|a8w8",
}
# Column of the figures: the row's position in the frame they came from.
POSITION = "__position"
# The frames here are in memory already; the streaming engine's set-up
# costs more than it saves on them.
ENGINE = "in-memory"
# Cells read once per distinct combination, with the dtype list.
SHARED_CELLS = ("perf_params", "Compute Spec", "Roofline Bound")


def _first_float(frame: pl.DataFrame, *cols: str) -> pl.Expr:
    present = [pl.col(c) for c in cols if c in frame.columns]
    if not present:
        return pl.lit(None, dtype=pl.Float64)
    return pl.coalesce(present) if len(present) > 1 else present[0]


def ranked_figures(inputs_frame: pl.DataFrame, metadata: Metadata, *, scope: str, options: Options) -> Ranked:
    """Every per-op figure of §2, one row per signature, with the order by time.

    The frame is narrow: the op name, the number columns of the input and
    the figures, not the long literal cells. ``POSITION`` is the row's
    position in ``inputs_frame``, where the caller finds those cells for the
    few rows it reports; sorting and filtering the figures therefore never
    copies them.

    Columns added (units in the name where there is one): ``time_ms``,
    ``count``, ``mean_us``, ``pct_category``, ``pct_total``, ``tflops``,
    ``tbs``, ``fpb``, ``act_dtype``, ``peak_tflops``, ``peak_tbs``,
    ``substituted_spec``, ``peak_warning``, ``bound``, ``eff_roofline``,
    ``eff_source``, ``efficiency``, ``clamped``, ``is_anomaly``,
    ``over_100``, ``cov``, ``high_variance``, ``family``, ``library``, ``num_tokens``
    ``first_type`` (the first input dtype). Facts of distinct cells that
    only listed ops read (``first_type``, ``spec``, ``family``,
    ``kernel_dtype``, ``act_dtype``, ``substituted_spec``, ``peak_warning``,
    ``peak_basis``) come with :meth:`Ranked.rows` and :meth:`Ranked.frame`,
    not with :meth:`Ranked.columns`.
    """
    base, types, stacks = _read_facts(inputs_frame)
    peaked, peaks = with_peaks(base, types, stacks, metadata)
    lf = _rates(peaked, metadata.peak_hbm_bw_tbs)
    lf = _efficiency_in_scope(_bound_and_efficiency(lf, base, metadata.peak_hbm_bw_tbs), base, scope)
    # Summed in one piece: a sum over several pieces depends in its last bits
    # on where the reader's blocks ended, and a share on a rounding edge would
    # print differently for the same file read in other blocks.
    total_us = float(inputs_frame.get_column(TIME_SUM).rechunk().sum())
    lf = _shares_and_variance(lf, base, options, total_us, metadata.e2e_time_ms)
    return Ranked.by_time(lf.drop("bound_text", BY_KERNEL).collect(engine=ENGINE), (types, stacks, peaks))


def _read_facts(src: pl.DataFrame) -> tuple[pl.DataFrame, Deferred, Deferred]:
    """The narrow frame of the figures' inputs: positions, numbers and the facts of the text cells.

    With it, the facts only listed ops read (first input dtype and spec;
    family and kernel dtype), one row per distinct cell.
    """
    # Every fact of the text cells that a figure needs is read here, once per
    # distinct cell (categoricals: the ops of a trace share a few dtype lists,
    # specs and call stacks, and one perf_params per token count, over
    # thousands of shapes): the token count, the first input dtype, the spec
    # and bound, and the family and library. The dtype and kernel lists
    # themselves are parsed for the listed ops only (operations.report_rows).
    repeated = [c for c in (*TYPE_CELLS, *STACK_CELLS, *SHARED_CELLS) if c in src.columns]
    lf = src.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(POSITION),
        pl.col("name"),
        *(c for c in FLOAT_COLUMNS if c in src.columns),
        *repeated,
    )
    facts = [*perf_facts(src, ("num_tokens",)), type_facts(src)[0].list.first().alias("first_type"),
             text_column(src, "Compute Spec").str.strip_chars().alias("spec"),
             text_column(src, "Roofline Bound").str.strip_chars().str.to_uppercase().alias("bound_text")]
    f, types = _split_facts(lf.collect(engine=ENGINE), (*TYPE_CELLS, *SHARED_CELLS), facts,
                            ("pp_num_tokens", "bound_text"), "__types")
    f, stacks = _with_family(_with_token_counts(f, src), src)
    return f, types, stacks


def _split_facts(f: pl.DataFrame, cells: tuple[str, ...], facts: list[pl.Expr], every_row: tuple[str, ...],
                 group: str, keep: tuple[str, ...] = (), first: list[pl.Expr] | None = None,
                 ) -> tuple[pl.DataFrame, Deferred]:
    """``f`` with the ``every_row`` facts of its distinct ``cells`` and, as ``group``, each row's group.

    The other facts stay one row per group: only listed ops read them, and
    a text column of every row is 16 bytes a row to gather and fault in
    (0.09 s for ten of them at a million rows).
    """
    groups, table = distinct_facts(f, cells, facts, keep, first)
    present = [c for c in cells if c in f.columns]
    f = f.drop(present).hstack([*table.select(every_row)[groups].get_columns(), groups.alias(group)])
    return f, Deferred(group, table.drop(every_row))


def _rates(base: pl.DataFrame, bw: float) -> pl.LazyFrame:
    """Calls, mean time, achieved rates and the ideal time at the roofline."""
    count = pl.col("operation_count").round(0).cast(pl.Int64) if "operation_count" in base.columns else pl.lit(None, pl.Int64)
    derived = (pl.col(TIME_SUM) / _first_float(base, "Kernel Time (µs)_mean")).round(0)
    derived = pl.when(derived <= 1e12).then(derived).cast(pl.Int64, strict=False)
    lf = base.lazy().with_columns(
        time_us=pl.col(TIME_SUM),
        # A missing count (or one of 0, refused as a cell) is the time sum over
        # the mean time when both are there, else one call.
        count=pl.when(count > 0).then(count).otherwise(
            pl.when(derived >= 1).then(derived).otherwise(1)),
    )
    lf = lf.with_columns(
        mean_us=pl.coalesce(
            [_first_float(base, "Kernel Time (µs)_mean"), pl.col("time_us") / pl.col("count")]
        ),
    )

    gflops = _first_float(base, "GFLOPS")
    mib = _first_float(base, "Data Moved (MB)")
    peak = pl.col("peak_tflops")
    return lf.with_columns(
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


def _bound_and_efficiency(lf: pl.LazyFrame, base: pl.DataFrame, bw: float) -> pl.LazyFrame:
    """The bound of each op and its roofline efficiency, with where that came from."""
    # A peak chosen by the kernel's dtype replaces the pipeline's: its
    # bound and roofline % were judged against the other peak.
    by_kernel = pl.col(BY_KERNEL)
    peak = pl.col("peak_tflops")
    bound_col = pl.when(by_kernel).then(pl.lit(None, pl.String)).otherwise(pl.col("bound_text"))
    lf = lf.with_columns(
        bound=pl.when(bound_col == "COMPUTE_BOUND").then(pl.lit("compute"))
        .when(bound_col == "MEMORY_BOUND").then(pl.lit("memory"))
        .when(pl.col("fpb").is_not_null() & peak.is_not_null())
        .then(pl.when(pl.col("fpb") >= peak / bw).then(pl.lit("compute")).otherwise(pl.lit("memory"))),
    )
    roofline_first = _first_float(base, "Roofline Time (µs)_first")
    computed = _known(pl.coalesce([pl.col("roofline_us"), roofline_first]) / pl.col("mean_us") * 100.0)
    pct = pl.when(by_kernel.fill_null(False).not_()).then(_first_float(base, "Pct Roofline_mean"))
    return lf.with_columns(
        eff_roofline=pl.coalesce([pct, computed]),
        eff_source=pl.when(pct.is_not_null()).then(pl.lit("pct_roofline"))
        .when(computed.is_not_null()).then(pl.lit("computed")),
    )


def _shares_and_variance(lf: pl.LazyFrame, base: pl.DataFrame, options: Options, total_us: float,
                         e2e: float | None) -> pl.LazyFrame:
    """Warning and anomaly flags, shares of time and the variance figures the options ask for."""
    lf = lf.with_columns(
        over_100=(pl.col("eff_roofline") > options.efficiency_warn_pct).fill_null(False),
        is_anomaly=(pl.col("eff_roofline") > options.anomaly_pct).fill_null(False),
        time_ms=pl.col("time_us") / 1000.0,
        pct_category=_category_share(total_us),
        pct_total=_known(pl.col("time_us") / 1000.0 / e2e * 100.0) if e2e else pl.lit(None, pl.Float64),
    )
    std = _first_float(base, "Kernel Time (µs)_std")
    eligible = (pl.col("count") > options.variance_min_count) & (
        pl.col("pct_total") >= options.variance_min_percent_of_total
    ).fill_null(False)
    cov = pl.when(eligible & (pl.col("mean_us") > 0)).then(_known(std / pl.col("mean_us")))
    return lf.with_columns(
        cov=cov,
        high_variance=(cov > options.high_variance_cov).fill_null(False),
    )


def _category_share(total_us: float) -> pl.Expr:
    """Each op's share of the category's time in percent; 0 for every op when the category has no time.

    No time exceeds the total, so the share is finite. Polars divides by a
    scalar through its reciprocal, and a total below about 1e-308 µs (a
    subnormal such as 2.2e-313) has none that is finite: 0 × inf made NaN.
    Such a total and the times are first scaled by 2^600, which is exact.
    """
    if total_us <= 0:
        return pl.lit(0.0)
    scale = 2.0 ** 600 if total_us < 2.0 ** -900 else 1.0
    return pl.col("time_us") * scale / (total_us * scale) * 100.0


def _with_token_counts(f: pl.DataFrame, src: pl.DataFrame) -> pl.DataFrame:
    """``num_tokens``: perf_params' token count, else the first size of ``Input Dims``.

    ``Input Dims`` is read only for the rows whose perf_params lack the count.
    """
    tokens = f.get_column("pp_num_tokens")
    missing = tokens.is_null()
    if "Input Dims" in src.columns and missing.any():
        rows = src.select(pl.col("Input Dims").gather(f.get_column(POSITION).filter(missing)))
        tokens = tokens.scatter(missing.arg_true(), rows.select(dims_tokens(rows)).to_series())
    return f.drop("pp_num_tokens").with_columns(tokens.alias("num_tokens"))


def _known(expr: pl.Expr) -> pl.Expr:
    """A derived figure, or null where it is NaN or infinite.

    Inputs are finite, but a ratio of them need not be (0/0, a mean of
    1e-300 µs): such a figure is unknown, and must not be compared, ranked
    or printed as if it were a number.
    """
    return pl.when(expr.is_finite()).then(expr)


def _with_family(f: pl.DataFrame, src: pl.DataFrame) -> tuple[pl.DataFrame, Deferred]:
    """Add ``library`` to every row; ``family`` (the key of the op's MoE family, null when unknown)
    and the kernel's dtype stay one row per distinct (name, call stack), for the listed ops.

    In two levels. Once per distinct (name, call stack), a trace has a
    handful of those however many shapes it holds: the family, and the
    library from the family's row, the op-name rules or the kernels of the
    stack. Then, only for the rows still without a library (no family, no
    name rule, a stack without kernel frames), the kernel names of
    ``kernel_details_summary``, a cell that differs on every row.
    """
    names = name_to_key()
    libraries = {key: family.library for key, family in BY_KEY.items()}
    name = pl.col("name")
    family = name.str.strip_chars().str.to_lowercase().replace_strict(names, default=None, return_dtype=pl.String)
    from_stack, kernels = pl.col("_stack_kernels"), pl.col("_kernels")
    settled = (from_stack.list.len() > 0).fill_null(False) | name_library(name).is_not_null()
    library = pl.coalesce(
        family.replace_strict(libraries, default=None, return_dtype=pl.String),
        pl.when(settled).then(library_expr(name, kernels)),
    )
    # What the kernel computes in, from the op name and the stack's kernels.
    said = pl.concat_str([name, kernels], separator="\n", ignore_nulls=True).str.to_lowercase()
    kernel_dtype = (pl.when(said.str.contains(KERNEL_DTYPE["16-bit"])).then(said.str.extract(KERNEL_DTYPE["16-bit"], 1))
                    .when(said.str.contains(KERNEL_DTYPE["fp8"])).then(pl.lit("fp8")))
    f, stacks = _split_facts(f, STACK_CELLS, [family.alias("family"), library.alias("library"),
                                              kernel_dtype.alias("kernel_dtype")], ("library",), "__stacks",
                             keep=("name",), first=[stack_kernels(src).alias("_stack_kernels"),
                                                     named(from_stack).list.join("\n").alias("_kernels")])
    open_rows = f.get_column("library").is_null()
    if not open_rows.any():
        return f, stacks
    positions = f.filter(open_rows).get_column(POSITION)
    details = src.select(name, detail_kernels(src).alias("_details")).gather(positions)
    found = details.select(
        positions, library_expr(name, named(pl.col("_details")).list.join("\n")).alias("_library"))
    return f.join(found, on=POSITION, how="left", maintain_order="left").with_columns(
        library=pl.coalesce("library", "_library")).drop("_library"), stacks


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
