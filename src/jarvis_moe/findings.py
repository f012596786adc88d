"""Write the MoE findings markdown (``category_findings/<cat>_findings.md``).

The file has reader sections first (see :mod:`jarvis_moe.findings_sections`
and :mod:`jarvis_moe.findings_paths`) and ends with the two sections the host
parses, ``## Recommendations`` and ``## Detailed Analysis``, whose shape is
fixed by the shared findings format (:mod:`jarvis_moe.findings_cards`). Every
function here is pure: metrics in, markdown out.
:func:`jarvis_moe.mdcheck.verify_findings` checks the result and
:func:`jarvis_moe.output.write_outputs` refuses to write text that fails it.
"""

from __future__ import annotations

import re

from jarvis_moe import findings_paths, findings_sections
from jarvis_moe.findings_cards import (
    COMPARATIVE_COLUMNS, DETAILED, MAX_DATA_ROWS, RECOMMENDATIONS, STANDALONE_COLUMNS,
    detailed_analysis, finding_title, recommendations,
)
from jarvis_moe.findings_format import raw_inline
from jarvis_moe.findings_sections import Metrics

__all__ = ["COMPARATIVE_COLUMNS", "MAX_DATA_ROWS", "STANDALONE_COLUMNS", "detailed_analysis",
           "finding_title", "recommendations", "render_error", "render_findings", "render_no_data"]

TITLE = "# MoE Analysis Summary"
NO_DATA_TEXT = (
    f"{TITLE}\n\n## Overview\nNo MoE operations detected in this trace.\n\n"
    "## Additional Notes\n- Model does not use Mixture of Experts architecture\n\n"
    f"{RECOMMENDATIONS}\n\n{DETAILED}\n"
)
_PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.png$")


# -- Public API -------------------------------------------------------------

UNFUSED_NOTE = (
    "- No unfused MoE pipeline (separate up and down projection kernels) in this trace; "
    "fused MoE kernels, if any, are reported under moe_fused"
)


def render_no_data(category: str) -> str:
    """The findings file of a category with no MoE rows (the format's fixed form).

    ``moe_unfused`` keeps the form but not its note: a model whose MoE layers
    run fused kernels does use Mixture of Experts, so that note would be false.
    """
    if category == "moe_unfused":
        return NO_DATA_TEXT.replace("- Model does not use Mixture of Experts architecture", UNFUSED_NOTE)
    return NO_DATA_TEXT


def render_error(category: str, message: str, file: str | None, location: str | None = None) -> str:
    """The findings file of a run whose input was bad: ``Status: ERROR``, no findings.

    :param category: ``moe_fused`` or ``moe_unfused``.
    :param message: the problem in plain words.
    :param file: the input file, relative to the output directory.
    :param location: row/column or JSON path inside that file, when known.
    """
    lines = [TITLE, "", "## Overview", "", "Status: ERROR", "",
             f"- Category: {raw_inline(category)}.",
             f"- File: {raw_inline(file) if file else 'unknown'}."]
    if location:
        lines.append(f"- Where: {raw_inline(location)}.")
    lines += [f"- Problem: {raw_inline(message) or 'not described'}", "",
              "No bottleneck findings were produced. Fix the input and rerun: the rerun replaces "
              "this file and the metrics JSON.", "", RECOMMENDATIONS, "", DETAILED]
    return "\n".join(lines) + "\n"


def render_findings(metrics: Metrics, plot_name: str | None = None) -> str:
    """The findings markdown for a metrics dict of any status.

    :param metrics: the engine's metrics dict (not modified).
    :param plot_name: file name of a roofline PNG written next to the findings,
        linked from the overview; None when no plot was written.
    :raises ValueError: if ``plot_name`` is not a plain ``*.png`` file name.
    """
    status = metrics.get("status")
    category = str(metrics.get("category") or "")
    if status == "NO_DATA":
        return render_no_data(category)
    if status == "ERROR":
        return render_error(category, str(metrics.get("message") or ""), metrics.get("file"),
                            metrics.get("location"))
    if plot_name is not None and not _PLOT_NAME.match(plot_name):
        raise ValueError(f"plot name {plot_name!r} must be a plain file name ending in .png")
    parts = [
        [TITLE],
        findings_sections.overview(metrics, plot_name),
        findings_sections.operations(metrics),
        findings_sections.routing(metrics),
        findings_sections.layer_structure(metrics),
        findings_sections.fusion_payoff(metrics),
        findings_sections.warnings(metrics),
        findings_paths.optimisation_paths(metrics),
        findings_sections.limits(metrics),
        recommendations(metrics),
        detailed_analysis(metrics),
    ]
    blocks = ["\n".join(p).strip("\n") for p in parts if p]
    return "\n\n".join(blocks) + "\n"
