"""Time and size one MoE category run against a bare ``polars.read_csv``.

    python benchmarks/bench_scale.py --rows 10000 100000 [--fixture DIR] [--repeat 3] [--check]

Builds a category CSV of ``--rows`` distinct signatures from the rows of a
fixture output directory (default: the synthetic Mixtral fixture), writes it
with the fixture's metadata into a temporary output directory, and measures
two steps with the same interpreter:

- ``read``: ``polars.read_csv(path)`` of that CSV, nothing else;
- ``category``: the full category run (``jarvis_moe.run.analyse``): load,
  validate, figures, findings, both outputs written.

Wall time is the median of ``--repeat`` alternating runs of both steps in
this process, after one unmeasured run of each (imports, page cache).

Peak memory is the rise of the resident set over one step, measured in a
fresh process per step (``--repeat`` of them, median): the allocator of
polars keeps freed pages resident, so in one process whichever step runs
second would reuse the first one's pages and look free. Each measuring
process imports everything and runs both steps once on a one-row copy, then
resets the high-water mark (``/proc/self/clear_refs``), notes the resident
set, runs its step and reads ``VmHWM``. Without ``clear_refs`` it falls back
to ``resource.getrusage`` lifetime peaks and says so.

The roofline chart is off unless ``--plot``. ``--option KEY=VALUE``
sets other category options.

Targets (``--check`` exits 1 when one is missed): the category takes at most
2.0x the wall time and 1.5x the peak memory of the read, and its metrics JSON
and findings stay within fixed sizes whatever the row count.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
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

WALL_TARGET = 2.0
MEMORY_TARGET = 1.5
# Outputs must not grow with the row count; these bounds hold for any input.
MAX_METRICS_BYTES = 4 << 20
MAX_FINDINGS_BYTES = 512 << 10

_FIRST_INT = re.compile(r"\d+")
_NUM_TOKENS = re.compile(r"('num_tokens':\s*)\d+")
_TIME_COLUMN = re.compile(r"^Kernel Time \((?:µs|μs|us)\)_(?:sum|mean|std|median|min|max)$")
_RATE_COLUMNS = ("TFLOPS/s_mean", "TB/s_mean")


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


def build_output_dir(target: Path, rows: int, fixture: Path = DEFAULT_FIXTURE, seed: int = 0) -> Path:
    """Write an output directory whose category CSV has ``rows`` signatures.

    Every row is a fixture row with its own token count (the first number of
    ``Input Dims`` and ``num_tokens`` of ``perf_params``), its own example
    event id and its kernel times scaled by a random factor, so rows are
    distinct signatures of the same width as the fixture's. The metadata and
    the tree data (when present) are copied as they are.

    :param target: the directory to create (its parents must exist).
    :param rows: number of data rows.
    :param fixture: an output directory holding one MoE category.
    :param seed: seed of the time factors.
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
    dims = index.get("Input Dims")
    params = index.get("perf_params")
    uid = index.get("ex_UID")

    for sub in ("category_data", "metadata", "category_findings"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    meta = f"metadata/{category}_metadata.json"
    (target / meta).write_bytes((fixture / meta).read_bytes())
    tree = f"category_data/{category}_tree_data.json"
    if (fixture / tree).is_file():
        (target / tree).write_bytes((fixture / tree).read_bytes())

    rng = random.Random(seed)
    path = target / "category_data" / f"{category}_ops.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(rows):
            row = list(templates[i % len(templates)])
            tokens = 1 + i // len(templates)
            if dims is not None:
                row[dims] = _FIRST_INT.sub(str(tokens), row[dims], count=1)
            if params is not None:
                row[params] = _NUM_TOKENS.sub(rf"\g<1>{tokens}", row[params])
            if uid is not None:
                row[uid] = str(100_000 + i)
            factor = rng.uniform(0.5, 1.5)
            for col in time_cols:
                row[col] = _scaled(row[col], factor)
            for col in rate_cols:
                row[col] = _scaled(row[col], 1.0 / factor)
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


def peak_rise_mb(step: Callable[[], Any]) -> tuple[float, bool]:
    """Rise of the resident set over one call of ``step``, in MB.

    :return: the rise, and whether the high-water mark could be reset
        (False: ``getrusage`` lifetime peaks, exact only when the step's
        peak is the highest of the process so far).
    """
    gc.collect()
    resettable = _reset_high_water_mark()
    if resettable:
        before = _status_kb("VmRSS") or 0
    else:
        before = _lifetime_peak_kb()
    result = step()
    peak = (_status_kb("VmHWM") or 0) if resettable else _lifetime_peak_kb()
    del result
    return max(0, peak - before) / 1024.0, resettable


def _steps(out: Path, category: str, options: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    import polars as pl

    # Imported before any measurement, so neither step counts them.
    from jarvis_moe import findings, output  # noqa: F401
    from jarvis_moe.engine import assemble, load  # noqa: F401
    from jarvis_moe.findings import check  # noqa: F401
    from jarvis_moe.replay import spec  # noqa: F401
    from jarvis_moe.run import analyse

    path = out / "category_data" / f"{category}_ops.csv"
    return {
        "read": lambda: pl.read_csv(path),
        "category": lambda: analyse(out, category=category, scope="standalone", options=options),
    }


def _measure_in_child(step: str, out: Path, fixture: Path, category: str,
                      options: dict[str, Any]) -> tuple[float, bool]:
    """Peak rise of one step, measured in a fresh process of this interpreter.

    The allocator of polars keeps freed pages resident, so a second step in
    one process reuses the first step's pages and its rise looks near zero.
    A fresh process per measurement gives each step the same clean start.
    """
    cmd = [sys.executable, __file__, "--measure-step", step, "--output-dir", str(out),
           "--category", category, "--options-json", json.dumps(options), "--fixture", str(fixture)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {step} failed:\n{done.stderr}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["peak_mb"], answer["hwm_reset"]


@dataclass
class Report:
    rows: int
    csv_mb: float
    read_walls: list[float]
    category_walls: list[float]
    read_peaks: list[float]
    category_peaks: list[float]
    metrics_bytes: int
    findings_bytes: int
    operations_listed: int
    status: str
    hwm_reset: bool

    @property
    def read_s(self) -> float:
        return statistics.median(self.read_walls)

    @property
    def category_s(self) -> float:
        return statistics.median(self.category_walls)

    @property
    def read_peak_mb(self) -> float:
        return statistics.median(self.read_peaks)

    @property
    def category_peak_mb(self) -> float:
        return statistics.median(self.category_peaks)

    @property
    def wall_ratio(self) -> float:
        return self.category_s / self.read_s

    @property
    def memory_ratio(self) -> float:
        return self.category_peak_mb / self.read_peak_mb if self.read_peak_mb else float("inf")

    def misses(self) -> list[str]:
        out = []
        if self.status != "OK":
            out.append(f"the category run ended {self.status}, not OK")
        if self.wall_ratio > WALL_TARGET:
            out.append(f"wall ratio {self.wall_ratio:.2f}x is above {WALL_TARGET}x")
        if self.memory_ratio > MEMORY_TARGET:
            out.append(f"memory ratio {self.memory_ratio:.2f}x is above {MEMORY_TARGET}x")
        if self.metrics_bytes > MAX_METRICS_BYTES:
            out.append(f"metrics JSON is {self.metrics_bytes} bytes, above {MAX_METRICS_BYTES}")
        if self.findings_bytes > MAX_FINDINGS_BYTES:
            out.append(f"findings are {self.findings_bytes} bytes, above {MAX_FINDINGS_BYTES}")
        return out


def run_benchmark(rows: int, fixture: Path, repeat: int, workdir: Path,
                  options: dict[str, Any] | None = None) -> Report:
    """Build the input in ``workdir`` and measure both steps.

    Wall times: ``repeat`` alternating runs of each step in this process,
    after one unmeasured run of each (imports, page cache). Peaks: ``repeat``
    fresh processes per step.

    :param options: category options laid over the plugin's defaults.
    """
    options = dict(options or {})
    out = workdir / "output"
    out.mkdir()
    category = fixture_category(fixture)
    path = build_output_dir(out, rows, fixture)
    steps = _steps(out, category, options)

    for step in steps.values():
        step()
    walls: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            gc.collect()
            start = time.perf_counter()
            step()
            walls[name].append(time.perf_counter() - start)

    peaks: dict[str, list[float]] = {name: [] for name in steps}
    resettable = True
    for _ in range(repeat):
        for name in steps:
            peak, ok = _measure_in_child(name, out, fixture, category, options)
            peaks[name].append(peak)
            resettable &= ok

    result = steps["category"]()
    metrics_path = out / "category_data" / f"{category}_metrics.json"
    findings_path = out / "category_findings" / f"{category}_findings.md"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return Report(
        rows=rows,
        csv_mb=path.stat().st_size / 1e6,
        read_walls=walls["read"],
        category_walls=walls["category"],
        read_peaks=peaks["read"],
        category_peaks=peaks["category"],
        metrics_bytes=metrics_path.stat().st_size,
        findings_bytes=findings_path.stat().st_size,
        operations_listed=len(metrics.get("operations") or []),
        status=result.status.value,
        hwm_reset=resettable,
    )


def format_table(reports: list[Report]) -> str:
    header = ("rows", "CSV MB", "read s", "category s", "wall ratio", "read peak MB",
              "category peak MB", "memory ratio", "metrics JSON KB", "findings KB", "ops listed")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in reports:
        cells = (
            f"{r.rows}", f"{r.csv_mb:.1f}", f"{r.read_s:.3f}", f"{r.category_s:.3f}",
            f"{r.wall_ratio:.2f}x", f"{r.read_peak_mb:.1f}", f"{r.category_peak_mb:.1f}",
            f"{r.memory_ratio:.2f}x", f"{r.metrics_bytes / 1024:.1f}", f"{r.findings_bytes / 1024:.1f}",
            f"{r.operations_listed}",
        )
        lines.append(" | ".join(cells))
    return "\n".join(f"| {line} |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000],
                        help="signature counts to build and measure (default: 100000)")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE,
                        help="output directory whose MoE rows are the templates (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each step (default: 3)")
    parser.add_argument("--plot", action="store_true",
                        help="write the roofline chart too")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="category option over the plugin default, e.g. max_operations_listed=100")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless wall <= {WALL_TARGET}x and memory <= {MEMORY_TARGET}x of the read")
    parser.add_argument("--measure-step", choices=("read", "category"), help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--category", help=argparse.SUPPRESS)
    parser.add_argument("--options-json", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_step:
        options = json.loads(args.options_json)
        # The same warm-up in every measuring process: both steps once on a
        # one-row copy, so one-off costs (code paths run for the first time,
        # caches, the manifest) count for neither step.
        with tempfile.TemporaryDirectory(prefix="jarvis-bench-warm-") as tmp:
            warm = Path(tmp)
            build_output_dir(warm, 1, args.fixture)
            for step in _steps(warm, args.category, options).values():
                step()
        steps = _steps(args.output_dir, args.category, options)
        peak, resettable = peak_rise_mb(steps[args.measure_step])
        print(json.dumps({"peak_mb": peak, "hwm_reset": resettable}))
        return 0
    if args.repeat < 1 or any(n < 1 for n in args.rows):
        parser.error("--rows and --repeat must be positive")

    options: dict[str, Any] = {"roofline_plot": args.plot}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value

    reports = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
            reports.append(run_benchmark(rows, args.fixture, args.repeat, Path(tmp), options))
    print(format_table(reports))
    print(f"options over the plugin defaults: {json.dumps(options)}")
    print(f"wall: median of {args.repeat} warm runs in this process; peak: median rise of the "
          f"resident set over the step, {args.repeat} fresh processes each")
    if not all(r.hwm_reset for r in reports):
        print("note: /proc/self/clear_refs is not available here; peaks come from "
              "resource.getrusage lifetime peaks and count a step only above the warm-up's peak")
    misses = [f"{r.rows} rows: {m}" for r in reports for m in r.misses()]
    for miss in misses:
        print(f"target missed: {miss}")
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
