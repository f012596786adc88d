"""Time and size one MoE category run against reading its CSV, on realistic rows.

    python benchmarks/bench_scale.py [--rows 10000 100000] [--large] [--repeat 5] [--check]
    python benchmarks/bench_scale.py --profile 100000

Builds a category CSV of ``--rows`` distinct signatures from the rows of a
fixture output directory (default: the synthetic Mixtral fixture). Rows are
realistic in the ways that cost: every row has a token count a serving
engine would batch (1 to 8192), its own example event id and kernel times, and its ``kernel_details_summary`` carries that
row's own per-kernel durations (so no two cells are alike, as in a real
trace); its call stack is one of a few variants of the fixture's stack under
the outer frames a serving engine adds (a real trace has a handful of
distinct stacks per op, not one per row). ``--large`` adds 1 000 000 rows.

Three steps are measured, each in a fresh process of this interpreter:

- ``read``: ``polars.read_csv(path)``, the whole file, nothing else;
- ``floor``: a projected scan, ``polars.scan_csv(path).select(<the columns
  the analysis reads>).collect()``: the least any analysis of the file does;
- ``category``: the whole category run (``jarvis_moe.run.analyse``).

Each measuring process imports everything and runs all three steps once on a
one-row copy (so no step pays for imports or first calls), resets the
high-water mark of its resident set (``/proc/self/clear_refs``), runs its
step once and reports the wall time and the rise of the resident set
(``VmHWM``). A round is one process per step; ``--repeat`` rounds alternate.
Ratios are taken within a round (the machine may be busy) and their median
is reported, beside the median of each figure.

Targets (``--check`` exits 1 when one is missed): at 100 000 rows and more
the category takes at most 1.3x (1.0x from 1 000 000 rows) the wall time and
0.5x the peak memory of the read; its metrics JSON and findings stay within
fixed sizes whatever the row count.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = REPO / "tests" / "fixtures" / "synthetic-mixtral-decode-bf16"
CATEGORIES = ("moe_fused", "moe_unfused")
STEPS = ("read", "floor", "category")
LARGE_ROWS = 1_000_000

# (rows at least, wall ratio, memory ratio) of the category over the read.
TARGETS = ((LARGE_ROWS, 1.0, 0.5), (100_000, 1.3, 0.5))
# Outputs must not grow with the row count; these bounds hold for any input.
MAX_METRICS_BYTES = 4 << 20
MAX_FINDINGS_BYTES = 512 << 10

_FIRST_INT = re.compile(r"\d+")
_NUM_TOKENS = re.compile(r"('num_tokens':\s*)\d+")
_TIME_COLUMN = re.compile(r"^Kernel Time \((?:µs|μs|us)\)_(?:sum|mean|std|median|min|max)$")
_RATE_COLUMNS = ("TFLOPS/s_mean", "TB/s_mean")
# A duration inside a kernel-details cell: the number after the key, bare or
# inside a numpy wrapper (``'mean_duration_us': np.float64(1091.63)``).
_DETAIL_DURATION = re.compile(
    r"('(?:total|mean|median|std_dev|min|max)_duration_us':\s*(?:np\.float64\()?)([-+0-9.eE]+)"
)
_DETAIL_COLUMNS = ("kernel_details_summary", "trunc_kernel_details")
# Outer frames a serving engine puts above a model's forward (vLLM's v1
# worker replaying a captured graph); the variants differ in one line number,
# as stacks of one op from different code paths do.
_OUTER_FRAMES = (
    "torch/utils/_contextlib.py(117): decorate_context",
    "vllm/v1/worker/gpu_model_runner.py({line}): execute_model",
    "vllm/v1/worker/gpu_model_runner.py(3102): _model_forward",
    "vllm/compilation/cuda_graph.py(208): __call__",
    "torch/cuda/graphs.py(139): replay",
    "torch/nn/modules/module.py(1779): _call_impl",
    "vllm/compilation/decorators.py(384): __call__",
    "vllm/compilation/wrapper.py(208): __call__",
    "torch/_dynamo/eval_frame.py(1039): _fn",
    "torch/fx/graph_module.py(836): call_wrapped",
    "torch/_functorch/aot_autograd.py(1126): forward",
    "torch/_inductor/output_code.py(590): __call__",
)
STACK_VARIANTS = 6
# Token counts of one MoE call: decode batches and prefill chunks up to a
# serving engine's usual cap of batched tokens per step.
MAX_TOKENS = 8192


# --- building the input -------------------------------------------------------


def fixture_category(fixture: Path) -> str:
    """The MoE category whose ops CSV the fixture holds."""
    for category in CATEGORIES:
        if (fixture / "category_data" / f"{category}_ops.csv").is_file():
            return category
    raise SystemExit(f"{fixture}: no category_data/<moe_fused|moe_unfused>_ops.csv")


def _scaled(cell: str, factor: float) -> str:
    try:
        value = float(cell)
    except ValueError:
        return cell
    return repr(value * factor)


def _scaled_details(cell: str, factor: float) -> str:
    """A kernel-details cell with every duration scaled: a distinct cell per row."""
    return _DETAIL_DURATION.sub(lambda m: m.group(1) + repr(float(m.group(2)) * factor), cell)


def _stack_variants(cell: str) -> list[str]:
    """The fixture's call stack under each variant of the engine's outer frames.

    The fixture is trusted input of the benchmark, so its cell is parsed
    with ``ast.literal_eval``; shared outer frames come first, as the
    pipeline writes them.
    """
    try:
        frames = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return [cell]
    if not isinstance(frames, list):
        return [cell]
    return [repr([f.format(line=3380 + 7 * k) for f in _OUTER_FRAMES] + frames) for k in range(STACK_VARIANTS)]


def _copy_side_files(target: Path, fixture: Path, category: str) -> None:
    for sub in ("category_data", "metadata", "category_findings"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    meta = f"metadata/{category}_metadata.json"
    (target / meta).write_bytes((fixture / meta).read_bytes())
    tree = f"category_data/{category}_tree_data.json"
    if (fixture / tree).is_file():
        (target / tree).write_bytes((fixture / tree).read_bytes())


def build_output_dir(target: Path, rows: int, fixture: Path = DEFAULT_FIXTURE, seed: int = 0) -> Path:
    """Write an output directory whose category CSV has ``rows`` signatures.

    Every row is a fixture row with a token count from 1 to ``MAX_TOKENS``
    (the first number of ``Input Dims`` and ``num_tokens`` of
    ``perf_params``), its own example event id, its kernel times (columns and kernel details) scaled by a
    random factor, and one of ``STACK_VARIANTS`` call stacks. The metadata
    and the tree data (when present) are copied as they are.

    :param target: the directory to create (its parents must exist).
    :param rows: number of data rows.
    :param fixture: an output directory holding one MoE category.
    :param seed: seed of the time factors and stack choices.
    :return: the path of the CSV written.
    """
    category = fixture_category(fixture)
    source = fixture / "category_data" / f"{category}_ops.csv"
    with source.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        templates = [row for row in reader if row]
    if not templates:
        raise SystemExit(f"{source}: no data rows to build from")

    index = {name: i for i, name in enumerate(header)}
    time_cols = [i for name, i in index.items() if _TIME_COLUMN.match(name)]
    rate_cols = [index[c] for c in _RATE_COLUMNS if c in index]
    detail_cols = [index[c] for c in _DETAIL_COLUMNS if c in index]
    dims, params, uid = index.get("Input Dims"), index.get("perf_params"), index.get("ex_UID")
    stack = index.get("call_stack_full")
    variants = [_stack_variants(t[stack]) if stack is not None else [] for t in templates]
    _copy_side_files(target, fixture, category)

    rng = random.Random(seed)
    path = target / "category_data" / f"{category}_ops.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(rows):
            which = i % len(templates)
            row = list(templates[which])
            tokens = 1 + (i // len(templates)) % MAX_TOKENS
            if dims is not None:
                row[dims] = _FIRST_INT.sub(str(tokens), row[dims], count=1)
            if params is not None:
                row[params] = _NUM_TOKENS.sub(rf"\g<1>{tokens}", row[params])
            if uid is not None:
                row[uid] = str(100_000 + i)
            if stack is not None:
                row[stack] = rng.choice(variants[which])
            factor = rng.uniform(0.5, 1.5)
            for col in time_cols:
                row[col] = _scaled(row[col], factor)
            for col in rate_cols:
                row[col] = _scaled(row[col], 1.0 / factor)
            for col in detail_cols:
                row[col] = _scaled_details(row[col], factor)
            writer.writerow(row)
    return path


# --- measuring ----------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _lifetime_peak_kb() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def measure(step: Callable[[], Any]) -> tuple[float, float, bool]:
    """Wall seconds and rise of the resident set (MB) over one call of ``step``.

    :return: wall, rise, and whether the high-water mark could be reset
        (False: ``getrusage`` lifetime peaks, exact only when the step's
        peak is the highest of the process so far).
    """
    gc.collect()
    resettable = _reset_high_water_mark()
    before = (_status_kb("VmRSS") or 0) if resettable else _lifetime_peak_kb()
    start = time.perf_counter()
    result = step()
    wall = time.perf_counter() - start
    peak = (_status_kb("VmHWM") or 0) if resettable else _lifetime_peak_kb()
    del result
    return wall, max(0, peak - before) / 1024.0, resettable


def read_columns(path: Path) -> list[str]:
    """Header cells of the CSV that the analysis reads (the floor's projection)."""
    from jarvis_moe.engine.contract import KNOWN_COLUMNS, canonical_column

    with path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    seen: set[str] = set()
    out = []
    for cell in header:
        name = canonical_column(cell)
        if name in KNOWN_COLUMNS and name not in seen:
            seen.add(name)
            out.append(cell)
    return out


def _steps(out: Path, category: str, options: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    import polars as pl

    # Imported before any measurement, so no step counts them.
    from jarvis_moe import findings, output  # noqa: F401
    from jarvis_moe.engine import assemble, load  # noqa: F401
    from jarvis_moe.findings import check  # noqa: F401
    from jarvis_moe.replay import spec  # noqa: F401
    from jarvis_moe.run import analyse

    path = out / "category_data" / f"{category}_ops.csv"
    projection = read_columns(path)
    return {
        "read": lambda: pl.read_csv(path),
        "floor": lambda: pl.scan_csv(path).select(projection).collect(),
        "category": lambda: analyse(out, category=category, scope="standalone", options=options),
    }


def _measure_in_child(step: str, out: Path, fixture: Path, category: str,
                      options: dict[str, Any]) -> dict[str, Any]:
    """Wall and peak rise of one step, measured in a fresh process of this interpreter.

    The allocator of polars keeps freed pages resident, so a second step in
    one process reuses the first step's pages and its rise looks near zero.
    A fresh process per measurement gives each step the same clean start.
    """
    cmd = [sys.executable, __file__, "--measure-step", step, "--output-dir", str(out),
           "--category", category, "--options-json", json.dumps(options), "--fixture", str(fixture)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {step} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(args: argparse.Namespace) -> int:
    options = json.loads(args.options_json)
    # The same warm-up in every measuring process: every step once on a
    # one-row copy, so one-off costs (code paths run for the first time,
    # caches, the manifest) count for no step.
    with tempfile.TemporaryDirectory(prefix="jarvis-bench-warm-") as tmp:
        warm = Path(tmp)
        build_output_dir(warm, 1, args.fixture)
        for step in _steps(warm, args.category, options).values():
            step()
    steps = _steps(args.output_dir, args.category, options)
    wall, peak, resettable = measure(steps[args.measure_step])
    print(json.dumps({"wall_s": wall, "peak_mb": peak, "hwm_reset": resettable}))
    return 0


@dataclass
class Report:
    rows: int
    csv_mb: float
    walls: dict[str, list[float]]
    peaks: dict[str, list[float]]
    metrics_bytes: int
    findings_bytes: int
    operations_listed: int
    status: str
    hwm_reset: bool

    def wall(self, step: str) -> float:
        return statistics.median(self.walls[step])

    def peak(self, step: str) -> float:
        return statistics.median(self.peaks[step])

    def wall_ratio(self, step: str) -> float:
        """Median over rounds of the step's wall over the read's in the same round."""
        return statistics.median(s / r for s, r in zip(self.walls[step], self.walls["read"]))

    def memory_ratio(self, step: str) -> float:
        return statistics.median(
            s / r if r else float("inf") for s, r in zip(self.peaks[step], self.peaks["read"]))

    def misses(self) -> list[str]:
        out = []
        if self.status != "OK":
            out.append(f"the category run ended {self.status}, not OK")
        for least, wall_target, memory_target in TARGETS:
            if self.rows >= least:
                if self.wall_ratio("category") > wall_target:
                    out.append(f"wall ratio {self.wall_ratio('category'):.2f}x is above {wall_target}x")
                if self.memory_ratio("category") > memory_target:
                    out.append(f"memory ratio {self.memory_ratio('category'):.2f}x is above {memory_target}x")
                break
        if self.metrics_bytes > MAX_METRICS_BYTES:
            out.append(f"metrics JSON is {self.metrics_bytes} bytes, above {MAX_METRICS_BYTES}")
        if self.findings_bytes > MAX_FINDINGS_BYTES:
            out.append(f"findings are {self.findings_bytes} bytes, above {MAX_FINDINGS_BYTES}")
        return out


def run_benchmark(rows: int, fixture: Path, repeat: int, workdir: Path,
                  options: dict[str, Any] | None = None) -> Report:
    """Build the input in ``workdir`` and measure every step ``repeat`` times, in fresh processes.

    :param options: category options laid over the plugin's defaults.
    """
    options = dict(options or {})
    out = workdir / "output"
    out.mkdir()
    category = fixture_category(fixture)
    path = build_output_dir(out, rows, fixture)
    # The input at rest, as a trace's output directory is when it is
    # analysed: otherwise the first run's fsync of its outputs waits for the
    # kernel to write back the file just built (0.6 s at 1 000 000 rows).
    os.sync()
    pl_read = _steps(out, category, options)["read"]
    pl_read()  # the file in the page cache for every step alike

    walls: dict[str, list[float]] = {name: [] for name in STEPS}
    peaks: dict[str, list[float]] = {name: [] for name in STEPS}
    resettable = True
    for _ in range(repeat):
        for name in STEPS:
            answer = _measure_in_child(name, out, fixture, category, options)
            walls[name].append(answer["wall_s"])
            peaks[name].append(answer["peak_mb"])
            resettable &= answer["hwm_reset"]

    result = _steps(out, category, options)["category"]()
    metrics_path = out / "category_data" / f"{category}_metrics.json"
    findings_path = out / "category_findings" / f"{category}_findings.md"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return Report(
        rows=rows, csv_mb=path.stat().st_size / 1e6, walls=walls, peaks=peaks,
        metrics_bytes=metrics_path.stat().st_size, findings_bytes=findings_path.stat().st_size,
        operations_listed=len(metrics.get("operations") or []),
        status=result.status.value, hwm_reset=resettable,
    )


def format_table(reports: list[Report]) -> str:
    header = ("rows", "CSV MB", "read s", "floor s", "category s", "floor/read wall", "category/read wall",
              "read peak MB", "floor peak MB", "category peak MB", "floor/read memory",
              "category/read memory", "metrics JSON KB", "findings KB", "ops listed")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in reports:
        cells = (
            f"{r.rows}", f"{r.csv_mb:.1f}", f"{r.wall('read'):.3f}", f"{r.wall('floor'):.3f}",
            f"{r.wall('category'):.3f}", f"{r.wall_ratio('floor'):.2f}x", f"{r.wall_ratio('category'):.2f}x",
            f"{r.peak('read'):.1f}", f"{r.peak('floor'):.1f}", f"{r.peak('category'):.1f}",
            f"{r.memory_ratio('floor'):.2f}x", f"{r.memory_ratio('category'):.2f}x",
            f"{r.metrics_bytes / 1024:.1f}", f"{r.findings_bytes / 1024:.1f}", f"{r.operations_listed}",
        )
        lines.append(" | ".join(cells))
    return "\n".join(f"| {line} |" for line in lines)


def profile(rows: int, fixture: Path, options: dict[str, Any], top: int = 25) -> str:
    """The category run at ``rows`` under cProfile: the package's top entries by cumulative time.

    Measured like a step of the benchmark: after a run on a one-row copy
    (imports, first calls), with the caches of per-op figures cold. Nearly
    all own time is inside polars (``collect``, ``read_csv``); the
    cumulative time of the package's functions says which step pays for it.
    """
    import cProfile
    import io
    import pstats

    category = fixture_category(fixture)
    with tempfile.TemporaryDirectory(prefix="jarvis-bench-prof-") as tmp:
        warm, out = Path(tmp) / "warm", Path(tmp) / "out"
        warm.mkdir()
        out.mkdir()
        build_output_dir(warm, 1, fixture)
        _steps(warm, category, options)["category"]()
        build_output_dir(out, rows, fixture)
        os.sync()  # the input at rest (see run_benchmark)
        profiler = cProfile.Profile()
        profiler.runcall(_steps(out, category, options)["category"])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats("jarvis_moe", top)
    return text.getvalue()


def _options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"roofline_plot": args.plot}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000],
                        help="signature counts to build and measure (default: 10000 100000)")
    parser.add_argument("--large", action="store_true", help=f"measure {LARGE_ROWS} rows too (a 2 GB file)")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE,
                        help="output directory whose MoE rows are the templates (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of fresh processes (default: 3)")
    parser.add_argument("--plot", action="store_true", help="write the roofline chart too")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="category option over the plugin default, e.g. max_operations_listed=100")
    parser.add_argument("--profile", type=int, metavar="ROWS",
                        help="print the category run's top profile entries at ROWS rows, then exit")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--measure-step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--category", help=argparse.SUPPRESS)
    parser.add_argument("--options-json", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_step:
        return _child_main(args)
    rows = sorted(set(args.rows + ([LARGE_ROWS] if args.large else [])))
    if args.repeat < 1 or any(n < 1 for n in rows):
        parser.error("--rows and --repeat must be positive")
    options = _options(parser, args)
    if args.profile:
        print(profile(args.profile, args.fixture, options))
        return 0

    reports = []
    for n in rows:
        with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
            reports.append(run_benchmark(n, args.fixture, args.repeat, Path(tmp), options))
    print(format_table(reports))
    print(f"options over the plugin defaults: {json.dumps(options)}")
    print(f"median of {args.repeat} rounds, one fresh process per step and round; ratios are "
          "taken within a round, then their median")
    if not all(r.hwm_reset for r in reports):
        print("note: /proc/self/clear_refs is not available here; peaks come from "
              "resource.getrusage lifetime peaks and count a step only above the warm-up's peak")
    misses = [f"{r.rows} rows: {m}" for r in reports for m in r.misses()]
    for miss in misses:
        print(f"target missed: {miss}")
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
