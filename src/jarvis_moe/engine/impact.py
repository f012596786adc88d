"""Analysis §3: impact estimates and their grouping into ranked findings.

These scores rank this category against every other category of the host
on one scale, so the rules are the shared ones, not options: quantified
gaps from the roofline, a heuristic share for ops without a perf model or
with an anomalous efficiency, groups by bound type, library and efficiency
band, groups under 0.5 dropped. A heuristic finding is ``bound_type:
unmodeled``, ``eff_bucket: unknown``, whatever its member's roofline says.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from jarvis_moe.engine.figures import COMPARATIVE

MIN_OP_IMPACT = 0.01
MIN_GROUP_MID = 0.5
LOW, MID = 0.75, 0.875
HEURISTIC = (0.15, 0.30, 0.45)


def estimates(figures: pl.DataFrame, *, scope: str, e2e_ms: float | None) -> pl.DataFrame:
    """One row per op with an estimate, scores rounded to 2 places.

    Columns: ``idx`` (row position in ``figures``), ``estimate_method``,
    ``type``, ``impact_score_low`` / ``impact_score`` / ``impact_score_high``,
    ``group`` (the grouping key as a string) and the fields of the group.
    """
    f = figures.with_row_index("idx").filter(pl.col("time_us") > 0)
    if not e2e_ms:
        return f.head(0).with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("estimate_method", "type", "group", "eff_bucket")
        ).with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("impact_score_low", "impact_score", "impact_score_high")
        )
    share = pl.col("time_ms") / e2e_ms * 100.0
    gap = pl.max_horizontal(pl.lit(0.0), 1.0 - pl.col("efficiency") / 100.0)
    quantified = pl.col("efficiency").is_not_null() & ~pl.col("is_anomaly")
    q = f.filter(quantified).with_columns(
        estimate_method=pl.lit("quantified"),
        type=pl.lit("kernel_tuning"),
        impact_score_low=(gap * LOW * share).round(2),
        impact_score=(gap * MID * share).round(2),
        impact_score_high=(gap * share).round(2),
        _high_raw=gap * share,
    ).filter(pl.col("_high_raw") >= MIN_OP_IMPACT).drop("_high_raw")
    if scope == COMPARATIVE:
        q = q.with_columns(eff_bucket=pl.lit("all"))
        q = q.with_columns(group=pl.concat_str([pl.col("bound").fill_null("-"), pl.col("library")], separator="|"))
        parts = [q]
    else:
        eff = pl.col("efficiency")
        q = q.with_columns(
            eff_bucket=pl.when(eff < 30).then(pl.lit("0-30")).when(eff < 60).then(pl.lit("30-60")).otherwise(pl.lit("60-100"))
        )
        q = q.with_columns(
            group=pl.concat_str([pl.col("bound").fill_null("-"), pl.col("library"), pl.col("eff_bucket")], separator="|")
        )
        low, mid, high = HEURISTIC
        pot = pl.col("pct_total")
        h = f.filter(~quantified & pot.is_not_null()).with_columns(
            estimate_method=pl.lit("heuristic"),
            type=pl.lit("unmodeled_significant"),
            impact_score_low=(pot * low).round(2),
            impact_score=(pot * mid).round(2),
            impact_score_high=(pot * high).round(2),
            eff_bucket=pl.lit("unknown"),
            group=pl.concat_str([pl.lit("op"), pl.col("name")], separator="|"),
        )
        parts = [q, h]
    out = pl.concat(parts, how="vertical_relaxed")
    return out.sort(["impact_score", "idx"], descending=[True, False])


def findings(est: pl.DataFrame, *, max_members: int) -> list[dict[str, Any]]:
    """Groups of estimates summed, filtered and ranked, as JSON-ready dicts.

    ``members`` holds the ``idx`` of up to ``max_members`` members sorted by
    impact; the caller turns them into member records.
    """
    if est.height == 0:
        return []
    groups = (
        est.group_by("group", maintain_order=True)
        .agg(
            pl.col("estimate_method").first(),
            pl.col("bound").first(),
            pl.col("pct_total").sum().alias("percent_of_total"),
            pl.col("time_ms").sum().alias("time_ms"),
            ((pl.col("efficiency") * pl.col("time_ms")).sum() / pl.col("time_ms").sum()).alias("mean_eff"),
            pl.col("library").first(),
            pl.col("library").n_unique().alias("n_libraries"),
            pl.col("eff_bucket").first(),
            pl.col("impact_score_low").sum(),
            pl.col("impact_score").sum(),
            pl.col("impact_score_high").sum(),
            pl.len().alias("member_count"),
            pl.col("idx").head(max_members).alias("members"),
        )
        .with_columns(pl.col(c).round(2) for c in ("impact_score_low", "impact_score", "impact_score_high"))
        .filter(pl.col("impact_score") >= MIN_GROUP_MID)
        .sort(["impact_score", "group"], descending=[True, False])
    )
    out = []
    for rank, g in enumerate(groups.iter_rows(named=True), start=1):
        library = g["library"] if g["n_libraries"] == 1 else "Mixed"
        heuristic = g["estimate_method"] == "heuristic"
        out.append({
            "bound_type": "unmodeled" if heuristic else g["bound"],
            "library": library,
            "eff_bucket": g["eff_bucket"],
            "estimate_method": g["estimate_method"],
            "impact_score": g["impact_score"],
            "impact_score_low": g["impact_score_low"],
            "impact_score_high": g["impact_score_high"],
            "percent_of_total": None if g["percent_of_total"] is None else round(g["percent_of_total"], 2),
            "time_ms": round(g["time_ms"], 3),
            "efficiency_pct": None if heuristic or g["mean_eff"] is None else round(g["mean_eff"], 2),
            "member_count": g["member_count"],
            "members": list(g["members"]),
            "rank": rank,
        })
    return out
