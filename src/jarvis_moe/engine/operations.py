"""The listed ops of the metrics JSON, one typed :class:`Operation` each.

The figures frame has one row per signature; the report lists the largest
ones and every member of a finding. For those rows only, the literal cells
the column-wise pass does not read are parsed (``Input Dims``, the frames of
``call_stack_full``), the MoE family is looked up, the shape inferred (with
sibling stages settling each other's gating) and the MoE figures built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import polars as pl

from jarvis_moe.engine import cells, trace_text
from jarvis_moe.engine.families import BY_KEY, Family
from jarvis_moe.engine.figures import COMPARATIVE, POSITION
from jarvis_moe.engine.moe_figures import Context, compute_rates, moe_figures, rounded, settle_verdicts
from jarvis_moe.engine.shapes import Shape, infer_shape, settle_siblings
from jarvis_moe.metrics import Efficiency, MoeFigures, Operation, WarningCode

# Cells of the input that listed ops show or parse.
REPORT_CELLS = ("Input Dims", "Input type", "call_stack_full", "entry_point", "ex_UID")
PERF_KEYS = cells.PERF_INT_KEYS + cells.PERF_TEXT_KEYS + cells.PERF_FLAG_KEYS


@dataclass
class Listed:
    """One listed op while the metrics are assembled."""

    row: dict[str, Any]
    family: Family | None
    dims: tuple[tuple[int, ...], ...] | None
    call_stack: list[Any]
    shape: Shape | None = None


def report_rows(picked: pl.DataFrame, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The figures of the listed rows (``picked``), each with its literal cells from the input (``frame``)."""
    if picked.is_empty():
        return []
    parsed = ("perf_params", *cells.KERNEL_CELLS)
    present = [c for c in (*REPORT_CELLS, *parsed) if c in frame.columns]
    # "name" is always there and keeps the row count when no other cell is.
    cells_of = frame.select(pl.col(["name", *present]).gather(picked.get_column(POSITION)))
    texts = cells_of.select(pl.col("name").alias("_name"), *(c for c in REPORT_CELLS if c in present),
                            *cells.perf_facts(cells_of), *cells.type_facts(cells_of),
                            *cells.kernel_facts(cells_of)).drop("_name")
    return [{**row, **text} for row, text in zip(picked.to_dicts(), texts.iter_rows(named=True))]


class ParseCache(dict):
    """Parsed cells by (kind, text): ops of one trace share call stacks and shapes."""

    def get_or(self, kind: str, text: Any, parse: Any) -> Any:
        key = (kind, text)
        if key not in self:
            self[key] = parse(text)
        return self[key]


def prepare(rows: list[dict[str, Any]]) -> list[Listed]:
    """Parse each listed row's cells and infer its shape; siblings settle gating."""
    cache = ParseCache()
    listed = []
    for row in rows:
        family = BY_KEY.get(row["family"]) if row.get("family") else None
        dims = cache.get_or("dims", row.get("Input Dims"), cells.parse_dims)
        stack = cache.get_or("stack", row.get("call_stack_full"), cells.parse_call_stack) or []
        item = Listed(row, family, dims, stack)
        if family is not None:
            params = {key: row.get(f"pp_{key}") for key in PERF_KEYS}
            item.shape = infer_shape(family, params, dims, row.get("input_types") or [], row.get("num_tokens"))
        listed.append(item)
    for item, shape in zip(listed, settle_siblings([item.shape for item in listed])):
        item.shape = shape
    return listed


def as_written(value: float | None) -> float | None:
    """Peaks as the metadata wrote them: 708, not 708.0."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _as_cell(display: str) -> str:
    """A display string as a table cell shows it: each ``<br>`` line trimmed."""
    return "<br>".join(line.strip() for line in display.split("<br>")).strip()


def _kernels(row: Mapping[str, Any]) -> list[str]:
    return [k for k in row.get("kernels") or [] if trace_text.display_text(k)]


def listed_moe(items: list[Listed], ctx: Context) -> list[MoeFigures | None]:
    """The MoE figures of every listed op, sibling stages sharing one routing verdict."""
    rates = compute_rates([(item.family, item.shape, item.row) for item in items])
    return settle_verdicts([
        moe_figures(item.family, item.shape, item.row, _kernels(item.row), item.dims, ctx, rates)
        if item.family is not None and item.shape is not None else None
        for item in items
    ])


def operation(item: Listed, moe: MoeFigures | None, *, scope: str, with_call_chain: bool,
              warn_pct: float) -> Operation:
    """The typed record of one listed op; ``warn_pct`` is the efficiency (% of roofline) warned above."""
    row = item.row
    kernels = _kernels(row)
    kernel_name, kernel_trunc = trace_text.kernel_name_display(kernels)
    chain = trace_text.module_chain(item.call_stack)
    coded = op_warnings(item, scope, moe, warn_pct)
    warnings = [text for _, text in coded]
    op = Operation(
        name=row["name"], display_name=trace_text.display_text(row["name"]), count=int(row["count"]),
        time_ms=round(row["time_ms"], 3), percent_of_category=round(row["pct_category"], 2),
        percent_of_total=rounded(row["pct_total"], 2),
        efficiency=Efficiency(
            tflops_achieved=rounded(row["tflops"], 2), tb_s_achieved=rounded(row["tbs"], 2),
            efficiency_percent=rounded(row["efficiency"], 2), bound_type=row["bound"],
            flops_per_byte=rounded(row["fpb"], 2), compute_spec=row["spec"],
            resolved_peak_maf=as_written(row["peak_tflops"]), resolved_peak_hbm_bw=as_written(row["peak_tbs"]),
            warning="; ".join(warnings) or None, is_anomaly=bool(row["is_anomaly"]),
            substituted_compute_spec=row["substituted_spec"], efficiency_source=row["eff_source"],
            roofline_efficiency_percent=rounded(row["eff_roofline"], 2),
            ridge_flops_per_byte=(rounded(row["peak_tflops"] / row["peak_tbs"], 2)
                                  if row["peak_tflops"] and row["peak_tbs"] else None),
            peak_basis=row.get("peak_basis"),
        ),
        input_dims=row.get("Input Dims"), input_type=row.get("Input type"),
        args=_as_cell(trace_text.format_args(item.dims or (), row.get("input_types") or ())),
        cov=rounded(row["cov"], 3), high_variance=bool(row["high_variance"]), library=row["library"],
        family=item.family.key if item.family else None,
        implementation=item.family.implementation if item.family else None,
        launcher_path=_as_cell(trace_text.launcher_path(
            row.get("entry_point"), [m for m in chain if trace_text.display_text(m)], row["library"])),
        kernel_name=kernel_name, kernel_name_trunc=_as_cell(kernel_trunc), kernels=kernels, module_chain=chain,
        call_chain=list(item.call_stack) if with_call_chain else None,
        warnings=warnings, warning_codes=[code for code, _ in coded], moe=moe, ex_uid=row.get("ex_UID"),
    )
    if scope == COMPARATIVE:
        t2 = row["t2_us"] / 1000.0 if row["t2_us"] is not None else None
        op.t2_time_ms = rounded(t2, 3)
        op.count_trace2 = int(row["count_trace2"]) if row["count_trace2"] is not None else None
        op.difference_ms = rounded(t2 - row["time_ms"], 3) if t2 is not None else None
        op.speedup_pct = rounded((row["time_ms"] - t2) / row["time_ms"] * 100.0, 2) if t2 is not None and row[
            "time_ms"] else None
    return op


def op_warnings(item: Listed, scope: str, moe: Any, warn_pct: float) -> list[tuple[WarningCode, str]]:
    """The op's warnings with their codes, each a sentence that stands on its own."""
    row = item.row
    out = []
    if row["peak_warning"]:
        warning = row["peak_warning"]
        if row["efficiency"] is not None and warning.endswith("efficiency is left unknown"):
            # The pipeline's own roofline column still rates the op.
            warning = warning.replace("efficiency is left unknown", "the efficiency is the pipeline's Pct Roofline")
        out.append((WarningCode.PEAK_SUBSTITUTED if row["substituted_spec"] else WarningCode.NO_PEAK, warning))
    if item.family is None:
        out.append((WarningCode.NO_FAMILY, "matches no known MoE op family, so it gets the shared figures only "
                   "(no MoE shape, routing or padding figures)"))
    elif item.shape is None:
        out.append((WarningCode.NO_SHAPE, f"the {item.family.implementation} shape could not be read from "
                    "perf_params or Input Dims, so it gets the shared figures only"))
    if moe is not None and moe.padding_block_kernel_name_rows is not None:
        out.append((WarningCode.BLOCK_CONFLICT, f"its launch arguments give {moe.padding_block_rows}-row blocks and its kernel name "
                   f"{moe.padding_block_kernel_name_rows}: the padding and weight passes use the launch arguments, "
                   "the buffer the kernel walks"))
    eff = row["eff_roofline"]
    if row["over_100"] or row["is_anomaly"]:
        explained = moe is not None and moe.skew.over_100_explained
        kept_out = "; the shared rule keeps it out of quantified impact" if row["is_anomaly"] else ""
        if explained:
            out.append((WarningCode.OVER_100_ROUTING, f"{eff:.2f}% of roofline counts the weight bytes of uniform routing; the calls read "
                       f"fewer experts' weights than that (see its routing evidence){kept_out}"))
        elif row["is_anomaly"]:
            out.append((WarningCode.ANOMALY, f"{eff:.2f}% of roofline is not physically possible and no routing explains it: the "
                       f"measurement or the peak is wrong{kept_out}"))
        else:
            out.append((WarningCode.OVER_100, f"{eff:.2f}% of roofline is above {warn_pct:g}%: check the peak or the perf model"))
    if scope == COMPARATIVE and row["clamped"]:
        out.append((WarningCode.TRACE2_CLAMPED, f"trace-2 time would put the op below its trace-1 roofline efficiency; "
                   f"efficiency floored at {eff:.2f}%"))
    return out


def grouped_warnings(operations: list[Operation], shown: int = 3) -> list[str]:
    """One line per distinct op warning, naming the ops it applies to."""
    ops_by_warning: dict[str, list[str]] = {}
    for op in operations:
        for w in op.warnings:
            names = ops_by_warning.setdefault(w, [])
            if op.display_name not in names:
                names.append(op.display_name)
    lines = []
    for w, names in ops_by_warning.items():
        who = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        lines.append(f"{who}: {w}")
    return lines


def estimate_record(r: Mapping[str, Any], category: str) -> dict[str, Any]:
    """One impact estimate as the JSON holds it (its ``op_index`` is set by the caller)."""
    quantified = r["estimate_method"] == "quantified"
    return {
        "operation": trace_text.display_text(r["name"]), "category": category, "type": r["type"],
        "estimate_method": r["estimate_method"], "impact_score": r["impact_score"],
        "impact_score_low": r["impact_score_low"], "impact_score_high": r["impact_score_high"],
        "efficiency_pct": rounded(r["efficiency"], 2) if quantified else None,
        "bound_type": r["bound"] if quantified else None, "library": r["library"],
        "time_ms": rounded(r["time_ms"], 3), "percent_of_total": None if quantified else rounded(r["pct_total"], 2),
    }
