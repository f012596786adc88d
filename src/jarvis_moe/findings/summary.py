"""The top of the findings page: the overview and the operations table.

Every number printed here is a field of the metrics; nothing is recomputed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from jarvis_moe.findings.text import (
    DASH, bound_label, code, count, inline, joined, num, pct, peak, plural, table,
)
from jarvis_moe.metrics import MetricsOk, Operation

CATEGORY_LABELS = {
    "moe_fused": "fused MoE kernels",
    "moe_unfused": "an unfused pipeline: separate up and down projection kernels",
}
ROLE_LABELS = {"fused": "whole MoE", "up": "up projection", "down": "down projection"}


def spoken(spec: str) -> str:
    """``matrix_fp4`` as a sentence says it: ``fp4 matrix``."""
    kind, _, dtype = spec.partition("_")
    return f"{inline(dtype)} {inline(kind)}" if dtype else inline(spec)


def phase_label(phase: str | None) -> str:
    return {"decode": "decode-like", "prefill": "prefill-like"}.get(phase or "", DASH)


def role_label(op: Operation) -> str:
    if op.moe is None:
        return DASH
    label = ROLE_LABELS[op.moe.kind]
    if op.moe.kind == "up" and op.moe.activation_fused:
        label += ", activation fused"
    return label


def efficiency_cell(op: Operation) -> str:
    """``X.XX% of Y TB/s`` (memory-bound) or ``X.XX% of Y TFLOPS`` (compute-bound)."""
    eff = op.efficiency
    if eff.efficiency_percent is None or eff.bound_type is None:
        return DASH
    if eff.bound_type == "memory":
        return f"{eff.efficiency_percent:.2f}% of {peak(eff.resolved_peak_hbm_bw)} TB/s"
    return f"{eff.efficiency_percent:.2f}% of {peak(eff.resolved_peak_maf)} TFLOPS"


def _compute_peaks(m: MetricsOk) -> str:
    """The matrix peaks the listed ops are rated against, by dtype (the bf16 one when none is)."""
    used: dict[str, float] = {}
    for op in m.operations:
        eff = op.efficiency
        spec = eff.substituted_compute_spec or eff.compute_spec
        if spec and spec.startswith("matrix_") and eff.resolved_peak_maf is not None:
            used.setdefault(spec.partition("_")[2], eff.resolved_peak_maf)
    if not used:
        return f"{peak(m.category_specific.peak_maf_tflops)} TFLOP/s for bf16"
    return joined([f"{peak(v)} TFLOP/s for {inline(k)}" for k, v in sorted(used.items(), key=lambda kv: kv[1])])


BLOCK_PARTS = {"routing": "router (gate, top-k)", "sorting": "token sorting and alignment",
               "activation": "activation", "sum": "combining the experts' outputs", "padding": "padding copies",
               "quantisation": "quantising activations",
               "other": "other"}


def block_lines(m: MetricsOk) -> list[str]:
    """The MoE block's kernels that other categories hold, and a padded hidden size."""
    block = m.category_specific.moe_block
    if block is None:
        return []
    where = f"called from {code(block.module)}" if block.module else "named for MoE routing work"
    share = f" ({pct(block.percent_of_total)} of GPU time)" if block.percent_of_total is not None else ""
    parts = ", ".join(f"{BLOCK_PARTS[p.kind]} {num(p.time_ms, 3)} ms" for p in block.parts)
    lines = [f"- Beyond these kernels the MoE block spends {num(block.time_ms, 3)} ms{share} in kernels the pipeline "
             f"files under other categories, {where}: {parts}."]
    pad = block.hidden_padding
    if pad is not None:
        alike = (f"; the intermediate size, {pad.padded_to} here as well, is padded alike" if pad.intermediate_padded
                 else "")
        lines.append(f"- Hidden size: a padding kernel widens the model's {pad.model_hidden} to {pad.padded_to} for the "
                     f"expert kernels{alike}, so they read and compute about {num(pad.extra_pct, 1)}% more weight "
                     "bytes and FLOPs than the model holds.")
    return lines


def overview(m: MetricsOk, plot_name: str | None, layers: str | None = None) -> list[str]:
    spec = m.category_specific
    comparative = m.comparison_scope == "comparative"
    lines = ["## Overview", ""]
    if comparative:
        lines.append("- Scope: comparative; times are trace 1 unless marked trace 2.")
    share = ""
    if m.e2e_time_ms is not None:
        share = (f", {pct(m.percent_of_compute)} of the {num(m.e2e_time_ms, 3)} ms of GPU time. "
                 f"{spec.significance.statement}")
    lines.append(f"- MoE time: {num(m.total_time_ms, 3)} ms in {plural(m.operation_count, 'call')} of "
                 f"{plural(m.operations_total, 'signature')} ({CATEGORY_LABELS.get(m.category, 'MoE kernels')})"
                 f"{share or '.'}")
    platform = inline(m.platform) if m.platform else "unknown platform"
    lines.append(f"- Platform: {platform}; matrix compute {_compute_peaks(m)} (a maximum achievable figure), HBM "
                 f"bandwidth {peak(spec.peak_hbm_bw_tbs)} TB/s (the datasheet peak). Savings below assume both "
                 "reachable: they are upper bounds.")
    substituted: dict[tuple[str | None, str, str, float | None], list[str]] = {}
    for op in m.operations:
        eff = op.efficiency
        if eff.substituted_compute_spec and (eff.compute_spec or eff.peak_basis == "kernel_name"):
            key = (eff.peak_basis, eff.compute_spec or "", eff.substituted_compute_spec, eff.resolved_peak_maf)
            substituted.setdefault(key, []).append(op_ref(m, op))
    for (basis, spec_name, used, value), refs in substituted.items():
        refs = list(dict.fromkeys(refs))
        verb = "is" if len(refs) == 1 else "are"
        if basis == "kernel_name":
            given = f", not the {spoken(spec_name)} peak of the Compute Spec" if spec_name else ""
            lines.append(f"- {joined(refs)} {verb} rated against the {spoken(used)} peak ({peak(value)} TFLOP/s): "
                         f"the kernel names say the products are taken in {inline(used.partition('_')[2])}{given}.")
            continue
        lines.append(f"- {platform} has no {spoken(spec_name)} peak: {joined(refs)} {verb} rated against its "
                     f"{spoken(used)} peak ({peak(value)} TFLOP/s), the dtype of the activations, as the kernels "
                     "compute on dequantised weights; weight bytes are counted as stored.")
    split = spec.phase_split
    parts = [(label, ms, share) for label, ms, share in (
        ("decode-like", split.decode_ms, split.decode_pct), ("prefill-like", split.prefill_ms, split.prefill_pct),
        ("of unknown shape", split.unknown_ms, split.unknown_pct)) if ms]
    meaning = (f"decode-like means at most {m.options.decode_max_tokens} tokens per call, which a "
               "small chunked prefill also matches")
    if len(parts) == 1:
        lines.append(f"- All of it is {parts[0][0]} ({meaning}).")
    elif parts:
        shares = ", ".join(f"{label} {num(ms, 3)} ms ({pct(share)})" for label, ms, share in parts)
        lines.append(f"- Phases: {shares}; {meaning}.")
    if layers:
        lines.append(layers)
    lines += block_lines(m)
    if comparative and spec.trace2_total_ms is not None:
        lines.append(f"- Trace 2: {num(spec.trace2_total_ms, 3)} ms for the same signatures.")
    if plot_name:
        lines += ["", f"![Roofline]({plot_name})"]
    return lines


def operations(m: MetricsOk, max_rows: int) -> list[str]:
    """The top ops by time, each with its role and phase, and one line for the rest."""
    lines = ["## Operations", ""]
    if not m.operations:
        return lines + ["No operations are listed."]
    shown = m.operations[:max_rows]
    if m.comparison_scope == "comparative":
        header = ["#", "Operation", "Role", "Phase", "Trace 1 Time (ms)", "Trace 2 Time (ms)", "Change (trace 2)",
                  "%E2E", "Count (T1/T2)", "Bound"]
        rows = [[str(i), code(op.display_name, in_table=True, limit=70), role_label(op),
                 phase_label(op.moe.phase if op.moe else None), num(op.time_ms, 3), num(op.t2_time_ms, 3),
                 change(op.speedup_pct), num(op.percent_of_total), f"{op.count}/{count(op.count_trace2)}",
                 bound_label(op.efficiency.bound_type)] for i, op in enumerate(shown, start=1)]
    else:
        header = ["#", "Operation", "Role", "Phase", "Implementation", "Time (ms)", "%E2E", "Count", "Efficiency",
                  "Bound"]
        rows = [[str(i), code(op.display_name, in_table=True, limit=70), role_label(op),
                 phase_label(op.moe.phase if op.moe else None), implementation(op), num(op.time_ms, 3),
                 num(op.percent_of_total), str(op.count), efficiency_cell(op),
                 bound_label(op.efficiency.bound_type)] for i, op in enumerate(shown, start=1)]
    lines += table(header, rows)
    rest = m.category_specific.table_rest
    if rest is not None:
        lines += ["", f"{plural(rest.signatures, 'more signature')}: {num(rest.time_ms, 3)} ms "
                      f"({pct(rest.percent_of_category)} of MoE time)."]
    return lines


# While a page is rendered: its operations list, how many ops carry each
# display name and each op's position (a page names ops ~850 times).
_PAGE = threading.local()


@contextmanager
def indexed(m: MetricsOk) -> Iterator[None]:
    """Within the block, :func:`op_ref` looks names and positions of ``m``'s ops up once."""
    ops = m.operations
    previous = getattr(_PAGE, "index", None)
    _PAGE.index = (ops, *_count(ops))
    try:
        yield
    finally:
        _PAGE.index = previous


def _ref_index(ops: list[Operation]) -> tuple[Counter[str], dict[int, int]]:
    """The names and positions of ``ops``: from the page being rendered, else counted now."""
    index = getattr(_PAGE, "index", None)
    if index is not None and index[0] is ops:
        return index[1], index[2]
    return _count(ops)


def _count(ops: list[Operation]) -> tuple[Counter[str], dict[int, int]]:
    positions: dict[int, int] = {}
    for i, op in enumerate(ops):
        positions.setdefault(id(op), i)  # the first place, as a scan finds it
    return Counter(op.display_name for op in ops), positions


def op_ref(m: MetricsOk, op: Operation) -> str:
    """An op as sentences name it: its name, or its row of the operations table when names repeat.

    SGLang launches both GEMMs of a layer under one name, and every family
    lists one op at decode and at prefill shapes: ``#3 (up, decode-like)``
    says which one without repeating a long name.
    """
    names, positions = _ref_index(m.operations)
    if names[op.display_name] < 2 or op.moe is None:
        return code(op.display_name, limit=70)
    where = f"{op.moe.kind}, {phase_label(op.moe.phase)}"
    index = positions[id(op)]
    rows = m.options.max_table_ops
    return f"#{index + 1} ({where})" if index < rows else f"{code(op.display_name, limit=70)} ({where})"


def implementation(op: Operation) -> str:
    if op.implementation:
        return op.implementation  # our own label, from the family table
    return f"unknown family ({inline(op.library)})" if op.library != "Unknown" else "unknown family"


def change(speedup_pct: float | None) -> str:
    """How trace 2 compares with trace 1: ``X.XX% faster`` / ``slower``, never a ratio."""
    if speedup_pct is None:
        return DASH
    if abs(speedup_pct) < 0.005:
        return "no change"
    return f"{abs(speedup_pct):.2f}% {'faster' if speedup_pct > 0 else 'slower'}"
