"""One category run over an output directory: load → metrics → findings → files.

:func:`analyse` is what the plugin registers. It never raises: bad input
becomes ``ERROR`` outputs and exit 2, a bug becomes ``ERROR`` outputs (when
they can still be written) and exit 1. This is the one place that turns an
unexpected exception into an internal error (``JARVIS_DEBUG`` prints its
traceback).
"""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from jarvis_moe import __version__
from jarvis_moe.errors import ContractError, OutputError
from jarvis_moe.manifest import default_options

if TYPE_CHECKING:
    from jarvis_moe.options import Options

GENERATED_BY = f"jarvis-moe {__version__}"
SIBLING = {"moe_fused": "moe_unfused", "moe_unfused": "moe_fused"}
KIND = {"moe_fused": "fused", "moe_unfused": "unfused"}
OPTIONS_SOURCE = "options (plugin.toml defaults, user config)"


class Status(str, enum.Enum):
    """Outcome of a category run, as the metrics JSON writes it."""

    OK = "OK"
    NO_DATA = "NO_DATA"
    ERROR = "ERROR"


class AnalysisResult(NamedTuple):
    """What a category run returns to the host: plain data, no host types.

    ``status`` is ``OK``, ``NO_DATA`` or ``ERROR``; ``internal_error`` tells a
    bug (exit 1) from input that breaks the contract (exit 2).
    """

    status: Status
    message: str = ""
    outputs: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    internal_error: bool = False

    @property
    def exit_code(self) -> int:
        """0 for OK and NO_DATA, 2 for bad input, 1 for a bug."""
        return 0 if self.status is not Status.ERROR else 1 if self.internal_error else 2


def analyse(output_dir: Path, *, category: str, scope: str = "standalone",
            options: Mapping[str, Any] | None = None) -> AnalysisResult:
    """Analyse ``category`` in ``output_dir`` and write its outputs.

    :param options: the category's options; missing keys take the manifest defaults. Built
        once into an :class:`~jarvis_moe.options.Options`; a bad value is an ``ERROR`` (exit 2).
    """
    from jarvis_moe import output
    from jarvis_moe.collector import collector_paused
    from jarvis_moe.options import OptionsError, build_options

    output_dir = Path(output_dir)
    try:
        output.check_output_dir(output_dir)
        opts = build_options(default_options(category), options)
        with collector_paused():
            return _analyse(output_dir, category, scope, opts)
    except ContractError as exc:
        return _write_error(output_dir, category, scope, exc.problem, exc.file, exc.location, str(exc))
    except OptionsError as exc:
        return _write_error(output_dir, category, scope, str(exc), OPTIONS_SOURCE, exc.key, str(exc))
    except OutputError as exc:
        return AnalysisResult(Status.ERROR, str(exc))
    except Exception as exc:  # a bug: report it, keep the host alive
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if os.environ.get("JARVIS_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        message = f"internal error in the {category} analyser: {detail}"
        result = _write_error(output_dir, category, scope, message, None, None, message)
        return AnalysisResult(Status.ERROR, message, result.outputs, internal_error=True)


def _analyse(output_dir: Path, category: str, scope: str, options: Options) -> AnalysisResult:
    from jarvis_moe import findings, output
    from jarvis_moe.engine.assemble import build_metrics
    from jarvis_moe.engine.contract import CategoryPaths
    from jarvis_moe.engine.load import load_inputs
    from jarvis_moe.metrics import MetricsNoData
    from jarvis_moe.replay.spec import replay_files

    paths = CategoryPaths(output_dir, category)
    inputs = load_inputs(paths)
    if inputs is None:
        sibling = _sibling_with_moe(output_dir, category)
        if sibling:  # "no MoE" would contradict the sibling's report
            summary = f"no {KIND[category]} MoE operations; the MoE layers are in {sibling}"
            text = f"No {KIND[category]} MoE operations in this trace; its MoE layers are in {sibling}."
        else:
            summary, text = "no MoE operations in this trace", "No MoE operations detected in this trace."
        metrics = MetricsNoData(category=category, status="NO_DATA", comparison_scope=scope,
                                generated_by=GENERATED_BY, message=text, sibling_category=sibling)
        written = _write(output_dir, category, metrics, findings.render(metrics), [])
        return AnalysisResult(Status.NO_DATA, summary, written)
    metrics = build_metrics(inputs, category=category, scope=scope, options=options, generated_by=GENERATED_BY)
    warnings = list(metrics.input_warnings)
    extra, replay = replay_files(metrics, options.replay_below_pct)
    plot_name = None
    if options.roofline_plot:
        from jarvis_moe.findings.plot import roofline_svg

        svg = roofline_svg(metrics, options.max_table_ops)
        if svg is not None:
            chart = output.CategoryOutputs(category).roofline
            extra.append((chart, svg))
            plot_name = chart.rpartition("/")[2]
    markdown = findings.render(metrics, plot_name=plot_name, replay=replay)
    written = _write(output_dir, category, metrics, markdown, extra)
    message = (f"{metrics.total_time_ms:.3f} ms in {metrics.operations_total} signature(s), "
               f"{metrics.percent_of_compute:.2f}% of GPU time; {len(metrics.category_findings)} finding(s)")
    return AnalysisResult(Status.OK, message, written, tuple(warnings))


def _sibling_with_moe(output_dir: Path, category: str) -> str | None:
    """The other MoE category, when its CSV has a data row (then the model does use MoE)."""
    from jarvis_moe.engine.contract import CategoryPaths
    from jarvis_moe.engine.csv_header import read_header

    sibling = SIBLING.get(category)
    if sibling is None:
        return None
    path = CategoryPaths(output_dir, sibling).ops_csv
    try:
        return sibling if path.is_file() and read_header(path, path.name, []) is not None else None
    except ContractError:
        return sibling  # rows there, just not readable: the model still has MoE layers


def _write(output_dir: Path, category: str, metrics: Any, markdown: str,
           extra: list[tuple[str, bytes]]) -> tuple[Path, ...]:
    """Check the page against its metrics, then write every output as one set, findings last."""
    from pydantic_core import from_json

    from jarvis_moe import output
    from jarvis_moe.findings.check import ensure_findings

    payload = output.metrics_json(metrics)
    # The page is checked against the JSON as written, read back by pydantic's
    # parser: the same floats to the bit as the json module's, in half its
    # time (3 ms against 6 ms for a 1 MB metrics file).
    ensure_findings(markdown, from_json(payload))
    names = output.CategoryOutputs(category)
    files = extra + [(names.metrics, payload.encode("utf-8")), (names.findings, markdown.encode("utf-8"))]
    kept = {name for name, _ in files}
    return output.write_outputs(output_dir, files, stale=[name for name in names.optional if name not in kept])


def _write_error(output_dir: Path, category: str, scope: str, problem: str, file: str | None,
                 location: str | None, text: str) -> AnalysisResult:
    from jarvis_moe import findings
    from jarvis_moe.metrics import MetricsError

    metrics = MetricsError(category=category, status="ERROR", comparison_scope=scope, generated_by=GENERATED_BY,
                           message=problem, file=file, location=location)
    try:
        written = _write(output_dir, category, metrics, findings.render(metrics), [])
    except OutputError as exc:
        return AnalysisResult(Status.ERROR, f"{text}; and the error outputs could not be written: {exc}")
    return AnalysisResult(Status.ERROR, text, written)
