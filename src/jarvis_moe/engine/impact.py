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
ALL_BUCKETS = "all"  # the one efficiency band of comparative estimates


def estimates(figures: pl.DataFrame, *, scope: str, e2e_ms: float | None) -> pl.DataFrame:
    """One row per op with an estimate, scores rounded to 2 places.

    Columns: ``idx`` (row position in ``figures``), ``estimate_method``,
    ``type``, ``impact_score_low`` / ``impact_score`` / ``impact_score_high``,
    ``eff_bucket`` and the fields :func:`findings` groups by.
    """
    f = figures.with_row_index("idx").filter(pl.col("time_us") > 0)
    if not e2e_ms:
        return f.head(0).with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("estimate_method", "type", "eff_bucket")
        ).with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("impact_score_low", "impact_score", "impact_score_high")
        )
    share = pl.col("time_ms") / e2e_ms * 100.0
    gap = pl.max_horizontal(pl.lit(0.0), 1.0 - pl.col("efficiency") / 100.0)
    quantified = pl.col("efficiency").is_not_null() & ~pl.col("is_anomaly")
    kept = quantified & (gap * share >= MIN_OP_IMPACT)
    if scope == COMPARATIVE:
        est = f.filter(kept).with_columns(
            estimate_method=pl.lit("quantified"),
            type=pl.lit("kernel_tuning"),
            **_scores(gap, (LOW, MID, 1.0), share),
            eff_bucket=pl.lit(ALL_BUCKETS),
        )
    else:
        eff = pl.col("efficiency")
        bucket = pl.when(eff < 30).then(pl.lit("0-30")).when(eff < 60).then(pl.lit("30-60")).otherwise(pl.lit("60-100"))
        pot = pl.col("pct_total")
        # Quantified and heuristic estimates in one frame, in the rows' order:
        # a stable sort by score then keeps ties in that order, as a sort by
        # (score, idx) would, at a tenth of its cost.
        quant = pl.col("_quantified")
        est = f.with_columns(_quantified=quantified).filter(kept | (~quantified & pot.is_not_null())).with_columns(
            estimate_method=pl.when(quant).then(pl.lit("quantified")).otherwise(pl.lit("heuristic")),
            type=pl.when(quant).then(pl.lit("kernel_tuning")).otherwise(pl.lit("unmodeled_significant")),
            **{name: pl.when(quant).then(q).otherwise(h) for (name, q), h in zip(
                _scores(gap, (LOW, MID, 1.0), share).items(), _scores(pot, HEURISTIC).values())},
            eff_bucket=pl.when(quant).then(bucket).otherwise(pl.lit("unknown")),
        )
        est = est.drop("_quantified")
    return est.sort("impact_score", descending=True, maintain_order=True)


def _scores(base: pl.Expr, factors: tuple[float, ...], then: pl.Expr | None = None) -> dict[str, pl.Expr]:
    """The low, middle and high impact scores, rounded to 2 places: ``base`` times each factor, times ``then``.

    A factor of 1 is left out (the product is the same to the bit).
    """
    scores = {}
    for name, factor in zip(("impact_score_low", "impact_score", "impact_score_high"), factors):
        score = base if factor == 1.0 else base * factor
        scores[name] = (score if then is None else score * then).round(2)
    return scores


def findings(est: pl.DataFrame, *, max_members: int) -> list[dict[str, Any]]:
    """Groups of estimates summed, filtered and ranked, as JSON-ready dicts.

    ``members`` holds the ``idx`` of up to ``max_members`` members sorted by
    impact; the caller turns them into member records.
    """
    if est.height == 0:
        return []
    # A group is (bound, library, efficiency band) for quantified estimates
    # and the op name for heuristic ones; each part is grouped by its own
    # key cells (a key string built for every row cost more than the
    # grouping), in the estimates' order, and named once per group.
    by_op = pl.col("estimate_method") == "heuristic"
    bound = pl.col("bound").fill_null("-")
    any_heuristic = est.select(by_op.any()).item()
    quantified = est.filter(~by_op) if any_heuristic else est
    parts = [
        _summed(quantified, ["bound", "library", "eff_bucket"], max_members).with_columns(
            group=pl.when(pl.col("eff_bucket") == ALL_BUCKETS)
            .then(pl.concat_str([bound, pl.col("library")], separator="|"))
            .otherwise(pl.concat_str([bound, pl.col("library"), pl.col("eff_bucket")], separator="|"))),
    ]
    if any_heuristic:
        parts.append(_summed(est.filter(by_op), ["name"], max_members).with_columns(
            group=pl.concat_str([pl.lit("op"), pl.col("name")], separator="|")).drop("name"))
    groups = (
        pl.concat([p.select(parts[0].columns) for p in parts])
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


def _summed(est: pl.DataFrame, keys: list[str], max_members: int) -> pl.DataFrame:
    """The sums of each group of ``est`` by ``keys``; ``members``: the ``idx`` of its first ``max_members``."""
    return est.group_by(keys, maintain_order=True).agg(
        pl.col("estimate_method").first(),
        *(pl.col(c).first() for c in ("bound", "library", "eff_bucket") if c not in keys),
        pl.col("pct_total").sum().alias("percent_of_total"),
        pl.col("time_ms").sum().alias("time_ms"),
        ((pl.col("efficiency") * pl.col("time_ms")).sum() / pl.col("time_ms").sum()).alias("mean_eff"),
        pl.col("library").n_unique().alias("n_libraries"),
        pl.col("impact_score_low").sum(),
        pl.col("impact_score").sum(),
        pl.col("impact_score_high").sum(),
        pl.len().alias("member_count"),
        pl.col("idx").head(max_members).alias("members"),
    )
