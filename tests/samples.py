"""Metrics for the findings tests, built by the engine itself from fixtures.

Every sample is what the engine produces for a real or generated output
directory, never hand-written figures: a page test then checks the page the
product really writes.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from jarvis_moe.engine import cells
from jarvis_moe.engine.assemble import build_metrics
from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine.load import load_inputs
from jarvis_moe.manifest import default_options
from jarvis_moe.options import build_options
from jarvis_moe.metrics import MetricsError, MetricsNoData, MetricsOk

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHETIC = "synthetic-mixtral-decode-bf16"
SYNTHETIC_VS = "synthetic-mixtral-decode-bf16-vs-faster"
GPT_OSS_DECODE = "gpt-oss-20b-mi300x-decode-bs32"
GPT_OSS_PREFILL = "gpt-oss-20b-mi300x-prefill-bs8192"
REAL_H200 = "real-h200-mixtral-sglang-mixed-routing"


def _has_rows(csv_path: Path) -> bool:
    return csv_path.is_file() and len(csv_path.read_bytes().strip().splitlines()) > 1


# (folder, category) of every fixture with MoE rows, comparative ones left out.
MOE_FIXTURES = sorted(
    (d.name, csv_path.name.removesuffix("_ops.csv"))
    for d in FIXTURES.iterdir() if not d.name.endswith("-vs-faster")
    for csv_path in (d / "category_data").glob("moe_*_ops.csv")
    if csv_path.name in ("moe_fused_ops.csv", "moe_unfused_ops.csv") and _has_rows(csv_path)
)


def fixture_rows(folder: str, category: str) -> list[dict[str, str]]:
    """The ops CSV of a fixture as text cells, one dict per row."""
    path = FIXTURES / folder / "category_data" / f"{category}_ops.csv"
    return pl.read_csv(path, infer_schema=False).fill_null("").to_dicts()


def category_of(directory: Path) -> str:
    return "moe_unfused" if (directory / "category_data" / "moe_unfused_ops.csv").is_file() else "moe_fused"


def metrics_for(directory: Path, scope: str = "standalone", **options: Any) -> MetricsOk:
    """The engine's metrics of an output directory (nothing is written)."""
    category = category_of(directory)
    inputs = load_inputs(CategoryPaths(directory, category))
    assert inputs is not None, f"{directory} has no {category} rows"
    opts = build_options(default_options(category), {"roofline_plot": False, **options})
    return build_metrics(inputs, category=category, scope=scope, options=opts, generated_by="jarvis-moe test")


def column_facts(frame: pl.DataFrame) -> list[pl.Expr]:
    """Every fact the engine reads column-wise from the literal cells, as expressions over ``frame``."""
    return [*cells.perf_facts(frame), *cells.type_facts(frame), *cells.kernel_facts(frame), cells.dims_tokens(frame)]


@lru_cache(maxsize=None)
def fixture_metrics(name: str, scope: str = "standalone") -> MetricsOk:
    """The engine's metrics of a bundled fixture (cached: fixtures are read-only)."""
    return metrics_for(FIXTURES / name, scope)


def edited(parent: Path, fixture: str, **cells: str) -> Path:
    """A copy of a fixture under ``parent`` with every row's ``cells`` replaced."""
    target = parent / fixture
    shutil.copytree(FIXTURES / fixture, target)
    path = target / "category_data" / f"{category_of(target)}_ops.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **{k: v for k, v in cells.items() if k in row}})
    return target


UNMODELLED = {c: "" for c in ("GFLOPS", "Data Moved (MB)", "FLOPS/Byte", "TFLOPS/s_mean", "TB/s_mean",
                                "Pct Roofline_mean", "Roofline Time (µs)_first", "Roofline Bound")}


def hostile(name: str, *, kernel: str | None = None, path: str | None = None, args: str | None = None,
            warning: str | None = None, comparative: bool = False, heuristic: bool = False,
            platform: str | None = None) -> MetricsOk:
    """The engine's metrics of the synthetic fixture whose trace strings are attacker-chosen.

    ``args`` becomes a dtype name of the first input, ``warning`` the text of
    an unusable number cell (the loader quotes it in a warning), and
    ``heuristic`` blanks the roofline columns so the op is estimated from its
    share of GPU time.
    """
    kernel = name if kernel is None else kernel
    frames = [f"nn.Module: {name}", "nn.Module: DecoderLayer", path or name, kernel]
    cells = dict(name=name, entry_point=path or name, call_stack_full=repr(frames),
                 kernel_details_summary=repr([{"name": kernel, "stream": 7}]))
    if args is not None:
        cells["Input type"] = repr((args, "c10::BFloat16"))
    if warning is not None:
        cells["FLOPS/Byte"] = warning if warning.strip() else "x"
    if heuristic:
        cells.update(UNMODELLED)
    with tempfile.TemporaryDirectory(prefix="jarvis-sample-") as tmp:
        directory = edited(Path(tmp), SYNTHETIC_VS if comparative else SYNTHETIC, **cells)
        if platform is not None:
            meta = directory / "metadata" / "moe_fused_metadata.json"
            data = json.loads(meta.read_text(encoding="utf-8"))
            meta.write_text(json.dumps({**data, "platform": platform}), encoding="utf-8")
        return metrics_for(directory, "comparative" if comparative else "standalone")


def no_data(category: str = "moe_fused", sibling: str | None = None) -> MetricsNoData:
    return MetricsNoData(category=category, status="NO_DATA", comparison_scope="standalone",
                         generated_by="jarvis-moe test", message="No MoE operations detected in this trace.",
                         sibling_category=sibling)


def to_json_data(metrics: MetricsOk | MetricsNoData | MetricsError) -> dict[str, Any]:
    """The metrics as the JSON data the metrics file holds (documented key names, nulls kept)."""
    return metrics.model_dump(mode="json", by_alias=True)


def error_metrics(category: str = "moe_fused") -> MetricsError:
    return MetricsError(category=category, status="ERROR", comparison_scope="standalone",
                        generated_by="jarvis-moe test",
                        message="The column 'Kernel Time (µs)_sum' holds text where a number is expected.",
                        file=f"category_data/{category}_ops.csv", location="row 3, column 'Kernel Time (µs)_sum'")


def write_and_check(out_dir: Path, metrics: MetricsOk | MetricsNoData | MetricsError,
                    plot_name: str | None = None) -> list[str]:
    """Render, self-check and write the outputs, then run the shared checker on them.

    :return: the shared checker's violations (empty when the outputs conform).
    """
    from conformance.check_findings import check

    from jarvis_moe.findings import render
    from jarvis_moe.findings.check import ensure_findings
    from jarvis_moe.output import metrics_json, write_outputs

    markdown = render(metrics, plot_name=plot_name)
    payload = metrics_json(metrics)
    ensure_findings(markdown, json.loads(payload))
    write_outputs(out_dir, [(f"category_data/{metrics.category}_metrics.json", payload.encode()),
                            (f"category_findings/{metrics.category}_findings.md", markdown.encode())])
    _, errors = check(Path(out_dir), metrics.category)
    return errors


# The shared checker compares Data cells with the metrics JSON character for
# character. The JSON keeps the trace's text unescaped; a cell that would be
# markup (a tag, a comment, a forged marker) is entity-escaped on the page, so
# for such text, and only for it, the checker's verbatim rule is broken on
# purpose: safety wins.
VERBATIM_RULES = ("is not verbatim from operations[]", "is not a member of")
DISPLAY_KEYS = ("display_name", "args", "launcher_path", "kernel_name_trunc")


def conformance_problems(out_dir: Path, category: str) -> list[str]:
    """The shared checker's violations, less the verbatim ones that markup in the trace's text forces."""
    from conformance.check_findings import check

    from jarvis_moe.findings.text import safe_cell

    metrics, violations = check(out_dir, category)
    texts = [str(op.get(key) or "") for op in (metrics or {}).get("operations") or [] for key in DISPLAY_KEYS]
    if any(safe_cell(t) != t for t in texts):
        violations = [v for v in violations if not any(rule in v for rule in VERBATIM_RULES)]
    return violations
