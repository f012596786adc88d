"""Run one MoE category on an output directory: load → metrics → findings.

``analyse`` is the callable the plugin registers with the host. It never
raises: bad input becomes ERROR outputs and exit 2, a bug becomes ERROR
outputs (when they can still be written) and exit 1.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping

from jarvis_moe.errors import ContractError, OutputError
from jarvis_moe.host.category import CategoryResult, Status

CATEGORIES = ("moe_fused", "moe_unfused")


def analyse(
    output_dir: Path, *, category: str, scope: str = "standalone",
    options: Mapping[str, Any] | None = None,
) -> CategoryResult:
    """Analyse ``category`` in ``output_dir`` and write its two outputs.

    :param output_dir: the analysis output directory.
    :param category: ``moe_fused`` or ``moe_unfused``.
    :param scope: ``standalone`` or ``comparative``.
    :param options: the category's options; missing keys take the defaults
        of the plugin manifest.
    :return: the status, a one-line message and the files written.
    """
    from jarvis_moe import output

    output_dir = Path(output_dir)
    opts = _with_defaults(category, options)
    try:
        output.check_output_dir(output_dir)
    except OutputError as exc:
        return CategoryResult(Status.ERROR, str(exc))
    try:
        return _analyse(output_dir, category, scope, opts)
    except ContractError as exc:
        return _write_error(output_dir, category, scope, exc)
    except OutputError as exc:
        return CategoryResult(Status.ERROR, str(exc))
    except Exception as exc:  # a bug: report it, keep the host alive
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if os.environ.get("JARVIS_DEBUG"):  # same switch as the host
            traceback.print_exc(file=sys.stderr)
        message = f"internal error in the {category} analyser: {detail}"
        result = _write_error(output_dir, category, scope, None, message=message)
        return CategoryResult(Status.ERROR, message, result.outputs, internal_error=True)


def _analyse(output_dir: Path, category: str, scope: str, options: Mapping[str, Any]) -> CategoryResult:
    from jarvis_moe import findings
    from jarvis_moe.analysis import build_metrics
    from jarvis_moe.load import CategoryPaths, load_inputs

    paths = CategoryPaths(output_dir, category)
    inputs = load_inputs(paths)
    if inputs is None:
        metrics = no_data_metrics(category, scope)
        markdown = findings.render_no_data(category)
        written = _write(output_dir, category, metrics, markdown)
        return CategoryResult(Status.NO_DATA, "no MoE operations in this trace", written)
    metrics = build_metrics(inputs, category=category, scope=scope, options=options)
    plot_name = None
    if options.get("roofline_plot"):
        # The outputs must be writable before the plot is drawn, or a run
        # that ends in ERROR would leave a new PNG behind.
        from jarvis_moe.output import output_paths

        output_paths(output_dir, category)
        from jarvis_moe import plot

        plot_name = plot.write_roofline(output_dir, category, _plotted(metrics, options))
    markdown = findings.render_findings(metrics, plot_name=plot_name)
    written = _write(output_dir, category, metrics, markdown, plot_name)
    n = len(metrics["category_findings"])
    message = (
        f"{metrics['total_time_ms']:.3f} ms in {metrics['operations_total']} signature(s), "
        f"{metrics['percent_of_compute']:.2f}% of GPU time; {n} finding(s)"
    )
    return CategoryResult(Status.OK, message, written, tuple(metrics["warnings"]))


def _write(
    output_dir: Path, category: str, metrics: Mapping[str, Any], markdown: str,
    plot_name: str | None = None,
) -> tuple[Path, ...]:
    """Write both outputs; drop a roofline PNG of an earlier run that this one did not draw."""
    from jarvis_moe import output

    written = output.write_outputs(output_dir, category, metrics, markdown)
    plot_path = output_dir / "category_findings" / f"{category}_roofline.png"
    if plot_name is None:
        output.remove_stale(plot_path)
        return written
    return (*written, plot_path)


def _plotted(metrics: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics as the roofline plot gets them: the ops of the findings' table.

    Each op is a point and a legend entry: the hundreds a large trace lists
    take seconds to draw and cannot be told apart.
    """
    shown = int(options.get("max_table_ops", 15))
    return {**metrics, "operations": metrics["operations"][:shown]}


def no_data_metrics(category: str, scope: str) -> dict[str, Any]:
    """The metrics of a trace without this category."""
    return {
        "category": category,
        "status": "NO_DATA",
        "comparison_scope": scope,
        "message": "No MoE operations detected in this trace.",
        "total_time_ms": 0.0,
        "percent_of_compute": 0.0,
        "operation_count": 0,
        "operations": [],
        "impact_estimates": [],
        "category_findings": [],
    }


def error_metrics(category: str, scope: str, message: str, file: str | None, location: str | None) -> dict[str, Any]:
    return {
        "category": category,
        "status": "ERROR",
        "comparison_scope": scope,
        "message": message,
        "file": file,
        "location": location,
        "operations": [],
        "impact_estimates": [],
        "category_findings": [],
    }


def _write_error(
    output_dir: Path, category: str, scope: str, exc: ContractError | None, *, message: str | None = None
) -> CategoryResult:
    from jarvis_moe import findings

    file = exc.file if exc else None
    location = exc.location if exc else None
    problem = exc.problem if exc else (message or "unknown error")
    text = str(exc) if exc else problem
    metrics = error_metrics(category, scope, problem, file, location)
    try:
        markdown = findings.render_error(category, problem, file, location)
        written = _write(output_dir, category, metrics, markdown)
    except OutputError as out_exc:
        return CategoryResult(Status.ERROR, f"{text}; and the error outputs could not be written: {out_exc}")
    return CategoryResult(Status.ERROR, text, written)


def _with_defaults(category: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    from jarvis_moe.plugin import default_options

    merged = default_options(category)
    merged.update(options or {})
    return merged
