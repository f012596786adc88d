"""Path B's ``Implementation:`` lines: is each MoE implementation the newest known?

One line per distinct implementation check (the running implementation and
the catalogue row the engine matched): the ops it covers, the verdict, each
newer implementation with its switch as a code span and its source, and the
tuning paths the engine filled in for this GPU and shape. Nothing here is
computed: every text comes from ``operations[].moe.implementation_check``.
"""

from __future__ import annotations

from jarvis_moe.findings.summary import op_ref
from jarvis_moe.findings.text import code, inline, joined
from jarvis_moe.metrics import MetricsOk, Operation
from jarvis_moe.metrics_implementation import ImplementationCheck


def _groups(m: MetricsOk) -> list[list[Operation]]:
    """The MoE ops by (what runs, catalogue row, verdict), in table order."""
    groups: dict[tuple[str, str | None, str], list[Operation]] = {}
    for op in m.operations:
        if op.moe is not None:
            check = op.moe.implementation_check
            groups.setdefault((check.running, check.catalogue_row, check.verdict), []).append(op)
    return list(groups.values())


def _verdict(check: ImplementationCheck) -> str:
    if check.verdict == "unknown":
        return f"Whether a newer implementation exists is unknown here: {inline(check.note).rstrip('.')}."
    if check.verdict == "newest_known":
        return f"Newest known here. {inline(check.note)}"
    parts = [f"{inline(alt.name)}, enabled with {code(alt.enable)} ([source]({alt.source})). {inline(alt.note)}"
             for alt in check.alternatives]
    return f"{inline(check.note)} Newer or faster here: {' Also: '.join(parts)}"


def _tuning(m: MetricsOk, ops: list[Operation]) -> str:
    """Each tuning path once, with the ops each filled-in text applies to when they differ."""
    by_path: dict[str, dict[str, list[str]]] = {}
    for op in ops:
        assert op.moe is not None
        for path in op.moe.implementation_check.tuning:
            by_path.setdefault(path.name, {}).setdefault(path.how, []).append(op_ref(m, op))
    parts = []
    for name, texts in by_path.items():
        if len(texts) == 1:
            parts.append(f"{inline(name)}: {code(next(iter(texts)))}")
        else:
            parts.append(f"{inline(name)}: " + "; ".join(f"{code(how)} for {joined(refs)}"
                                                       for how, refs in texts.items()))
    return f" Tuning path: {'. '.join(parts)}." if parts else ""


def implementation_lines(m: MetricsOk) -> list[str]:
    """The ``Implementation:`` items of Path B, one per distinct implementation check."""
    lines = []
    for ops in _groups(m):
        first = ops[0].moe
        assert first is not None
        check = first.implementation_check
        where = f" on {check.arch}" if check.arch else ""
        lines.append(f"Implementation: {joined([op_ref(m, op) for op in ops])} "
                     f"{'runs' if len(ops) == 1 else 'run'} {inline(check.running)}{where}. "
                     f"{_verdict(check)}{_tuning(m, ops)}")
    return lines
