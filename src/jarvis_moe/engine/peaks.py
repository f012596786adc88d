"""The compute peak each op is rated against, resolved once per distinct (spec, dtype, kernel dtype).

Analysis §2's peak resolution with its precision-substitution rule
(:func:`resolve_peak`), and :func:`with_peaks`, which gives each op of the
figures its peak: every row gets the peak and whether the kernel's own
dtype chose it (its bound and efficiency read both); the warning, the
substituted spec and the activation dtype stay one row per distinct peak,
for the listed ops (:class:`~jarvis_moe.engine.ranking.Deferred`).
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.contract import Metadata
from jarvis_moe.engine.distinct import cell_id, distinct_groups
from jarvis_moe.engine.ranking import Deferred


class PeakChoice(NamedTuple):
    """The compute peak used for one (compute spec, activation dtype) pair."""

    peak: float | None
    substituted_spec: str | None
    warning: str | None
    basis: str | None = None  # kernel_name when the kernel's own dtype chose the peak


def resolve_peak(spec: str | None, act_dtype: str | None, metadata: Metadata,
                 kernel_dtype: str | None = None) -> PeakChoice:
    """Analysis §2 peak resolution, with the precision-substitution rule.

    What the kernel computes in comes first when its name says it
    (:data:`~jarvis_moe.engine.figures.KERNEL_DTYPE`): the same kernel is rated against the same peak
    whatever ``Compute Spec`` the pipeline gave its op.

    :param spec: the op's ``Compute Spec`` (``matrix_fp4``, ...), may be empty.
    :param act_dtype: the short dtype of the op's first input (``bf16``, ...).
    :param kernel_dtype: the dtype the kernel's name says it computes in.
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
    by_kernel = f"matrix_{kernel_dtype}" if kernel_dtype else None
    if by_kernel and by_kernel in peaks and by_kernel != spec and (spec is None or spec in peaks):
        return PeakChoice(
            peaks[by_kernel], by_kernel,
            f"its kernel computes in {kernel_dtype} (the kernel name says so), so it is rated against the "
            f"{_spoken(by_kernel)} peak ({peaks[by_kernel]:g} TFLOP/s)"
            + (f", not the {_spoken(spec)} peak of its Compute Spec" if spec else ""), "kernel_name")
    if spec and spec in peaks:
        return PeakChoice(peaks[spec], None, None, "compute_spec")
    fallback = f"matrix_{act_dtype}" if act_dtype else None
    if fallback and fallback in peaks:
        if spec is None:
            return PeakChoice(peaks[fallback], fallback, None, "activation_dtype")
        return PeakChoice(
            peaks[fallback], fallback,
            f"{metadata.platform or 'this platform'} has no {_spoken(spec)} peak; the op is rated against "
            f"its {_spoken(fallback)} peak ({peaks[fallback]:g} TFLOP/s), the dtype of its activations, as the "
            f"kernel computes on dequantised weights; weight bytes are kept as measured", "activation_dtype",
        )
    return PeakChoice(
        None, None,
        f"no compute peak for {spec or 'an unknown compute spec'}"
        + (f" or {fallback}" if fallback else "")
        + "; efficiency is left unknown",
    )


def _spoken(spec: str) -> str:
    """``matrix_fp4`` as a sentence says it: ``fp4 matrix``."""
    kind, _, dtype = spec.partition("_")
    return f"{dtype} {kind}" if dtype else spec


# Whether the kernel's own dtype chose the peak: read by every row's bound and efficiency.
BY_KERNEL = "__by_kernel"


def with_peaks(f: pl.DataFrame, types: Deferred, stacks: Deferred,
               metadata: Metadata) -> tuple[pl.DataFrame, Deferred]:
    """``f`` with the compute peak of each op; its warning and what chose it, per distinct peak.

    Resolved once per distinct (spec, first input dtype, kernel dtype) and
    gathered back to the rows: a join on the three texts hashed every row's
    texts and copied every column (0.1-0.2 s at a million rows). The texts'
    ids are read per distinct cell and gathered, so no row's text is hashed.
    """
    def ids(facts: Deferred, column: str) -> pl.Series:
        return facts.facts.select(cell_id(facts.facts, column)).to_series().gather(f.get_column(facts.group))

    group, firsts = distinct_groups(pl.DataFrame([ids(types, "spec").alias("spec"),
                                                  ids(types, "first_type").alias("first_type"),
                                                  ids(stacks, "kernel_dtype").alias("kernel_dtype")]))
    keys = types.facts.select("spec", "first_type")[f.get_column(types.group).gather(firsts)].hstack(
        stacks.facts.select("kernel_dtype")[f.get_column(stacks.group).gather(firsts)].get_columns())
    rows = []
    for spec, first_type, kernel_dtype in keys.iter_rows():
        act = dtypes.args_label(first_type) if first_type else None
        choice = resolve_peak(spec, act, metadata, kernel_dtype)
        rows.append((act, choice.peak, choice.substituted_spec, choice.warning, choice.basis))
    peaks = pl.DataFrame(
        rows,
        schema={"act_dtype": pl.String, "peak_tflops": pl.Float64, "substituted_spec": pl.String,
                "peak_warning": pl.String, "peak_basis": pl.String},
        orient="row",
    ).with_columns((pl.col("peak_basis") == "kernel_name").alias(BY_KERNEL))
    every_row = ("peak_tflops", BY_KERNEL)
    f = f.hstack([*peaks.select(every_row)[group].get_columns(), group.alias("__peaks")])
    return f, Deferred("__peaks", peaks.drop(every_row))
