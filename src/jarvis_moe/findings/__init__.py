"""Render the findings page (``category_findings/<cat>_findings.md``) from typed metrics.

The page has reader sections first and ends with the two sections the host
parses (:mod:`~jarvis_moe.findings.cards`). Each function is pure: metrics
in, markdown out; :func:`~jarvis_moe.findings.check.verify_findings` checks
the result before it is written.
"""

from __future__ import annotations

import re

from jarvis_moe.findings import advice, cards, routing, summary
from jarvis_moe.replay.ref import ReplayRef
from jarvis_moe.findings.text import code, inline, joined, sentence
from jarvis_moe.metrics import MetricsError, MetricsNoData, MetricsOk, WarningCode

TITLE = "# MoE Analysis Summary"
NO_MOE_NOTE = "- Model does not use Mixture of Experts architecture"
_PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.svg$")

__all__ = ["ReplayRef", "render", "render_error", "render_no_data"]


def render_no_data(m: MetricsNoData) -> str:
    """The missing-category page; its note says whether the model uses MoE at all."""
    if m.sibling_category:
        note = (f"- The model does use Mixture of Experts: its MoE layers are in the "
                f"{code(m.sibling_category)} category ({code(f'category_findings/{m.sibling_category}_findings.md')})")
    else:
        note = NO_MOE_NOTE
    return (f"{TITLE}\n\n## Overview\nNo MoE operations detected in this trace.\n\n## Additional Notes\n{note}\n\n"
            f"{cards.RECOMMENDATIONS}\n\n{cards.DETAILED}\n")


def render_error(m: MetricsError) -> str:
    """The page of a run whose input was bad: ``Status: ERROR``, the file and the problem."""
    lines = [TITLE, "", "## Overview", "", "Status: ERROR", "", f"- Category: {code(m.category)}.",
             f"- File: {code(m.file) if m.file else 'unknown'}."]
    if m.location:
        lines.append(f"- Where: {inline(m.location)}.")
    lines += [f"- Problem: {inline(m.message) or 'not described'}", "",
              "No bottleneck findings were produced. Fix the input and rerun: the rerun replaces this file "
              "and the metrics JSON.", "", cards.RECOMMENDATIONS, "", cards.DETAILED]
    return "\n".join(lines) + "\n"


def _warnings(m: MetricsOk) -> list[str]:
    items = [sentence(inline(w)) for w in m.input_warnings]
    by_text: dict[str, list[str]] = {}
    for op in m.operations:
        explained = op.moe is not None and op.moe.skew.over_100_explained
        for about, w in zip(op.warning_codes, op.warnings):
            if explained and about is WarningCode.OVER_100_ROUTING:
                continue  # said with the numbers under Routing and Load Balance
            if about is WarningCode.PEAK_SUBSTITUTED:
                continue  # said with the peaks in the overview
            by_text.setdefault(w, [])
            if op.display_name not in by_text[w]:
                by_text[w].append(op.display_name)
    for w, names in by_text.items():
        shown = [code(n, limit=70) for n in names[:3]] + ([f"{len(names) - 3} more"] if len(names) > 3 else [])
        items.append(f"{joined(shown)}: {sentence(inline(w))}")
    for op in m.operations:
        if op.high_variance:
            items.append(f"{code(op.display_name, limit=70)}: kernel time varies strongly across calls "
                         f"(cov {op.cov}).")
    return ["## Warnings", ""] + [f"- {x}" for x in dict.fromkeys(items)] if items else []


def _limits(m: MetricsOk) -> list[str]:
    items = [inline(x[0].lower() + x[1:]).rstrip(".") for x in m.category_specific.limits if x]
    return ["## What This Trace Cannot Show", "", f"A kernel trace cannot show {joined(items)}."]


def render(m: MetricsOk | MetricsNoData | MetricsError, plot_name: str | None = None,
           replay: ReplayRef | None = None) -> str:
    """The findings markdown for metrics of any status.

    :param plot_name: file name of a roofline PNG next to the findings, linked
        from the overview; None when none was written.
    :param replay: the replay artifact written with this run, for Path B.
    :raises ValueError: if ``plot_name`` is not a plain ``*.svg`` file name.
    """
    if isinstance(m, MetricsNoData):
        return render_no_data(m)
    if isinstance(m, MetricsError):
        return render_error(m)
    if plot_name is not None and not _PLOT_NAME.match(plot_name):
        raise ValueError(f"plot name {plot_name!r} must be a plain file name ending in .svg")
    rows = m.options.max_table_ops
    with summary.indexed(m):
        parts = [
            [TITLE], summary.overview(m, plot_name, routing.layer_line(m)), summary.operations(m, rows),
            routing.routing(m, rows),
            routing.layer_structure(m, rows), advice.optimisation_paths(m, replay), _warnings(m), _limits(m),
            cards.recommendations(m, replay.op_indexes() if replay else frozenset()),
            cards.detailed_analysis(m),
        ]
    return "\n\n".join("\n".join(p).strip("\n") for p in parts if p) + "\n"
