"""The input contract of an MoE category: column vocabulary and pydantic models.

Three inputs (see the shared input contract): the ops CSV, its metadata JSON
and the optional tree-data JSON. The CSV is validated column-wise in
:mod:`jarvis_moe.engine.read_csv` (row-wise models would cost seconds on a
100 000-row file); this module owns the column vocabulary and the models of
the two JSON files.
"""

import math
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from jarvis_moe.safetext import plain_text

# --- the ops CSV --------------------------------------------------------------

TIME_SUM = "Kernel Time (µs)_sum"
REQUIRED_COLUMNS = ("name", TIME_SUM)

# Number columns the analysis reads. A bad cell in one of them is treated as
# missing for that row (with a warning); the time sum is required instead.
FLOAT_COLUMNS = (
    TIME_SUM,
    "Kernel Time (µs)_mean",
    "Kernel Time (µs)_std",
    "Kernel Time (µs)_median",
    "Kernel Time (µs)_min",
    "Kernel Time (µs)_max",
    "GFLOPS",
    "Data Moved (MB)",
    "FLOPS/Byte",
    "TFLOPS/s_mean",
    "TB/s_mean",
    "Pct Roofline_mean",
    "Roofline Time (µs)_first",
    "speedup (trace2/trace1)",
    "delta_us (trace2 - trace1)",
    "lca_total_kernel_time_trace2_us",
    "lca_count_trace2",
    "operation_count",
)
# Largest ops CSV read: 4 GiB is over one and a half times the largest
# benchmark file (1 000 000 signatures of 2.6 KB rows, 2.6 GB); the file is
# read in blocks, so a run of it takes well under half its size in memory.
MAX_CSV_BYTES = 4 << 30
# Largest magnitude accepted in a number column: 1e15 µs is 31 years, and
# sums and ratios of such values stay finite.
MAX_NUMBER = 1e15
# Columns that can never be negative when present.
NON_NEGATIVE_COLUMNS = tuple(c for c in FLOAT_COLUMNS if c not in ("delta_us (trace2 - trace1)",))
TEXT_COLUMNS = (
    "name",
    "Compute Spec",
    "Roofline Bound",
    "Input Dims",
    "Input type",
    "perf_params",
    "kernel_details_summary",
    "entry_point",
    "call_stack_full",
    "ex_UID",
)
KNOWN_COLUMNS = FLOAT_COLUMNS + TEXT_COLUMNS
# Text a trace repeats over thousands of signatures (a few call stacks, dtype
# lists and specs, one perf_params per token count): read as categoricals,
# each distinct cell stored once, its code an exact id of the cell.
REPEATED_TEXT_COLUMNS = ("Compute Spec", "Roofline Bound", "Input type", "entry_point", "call_stack_full",
                         "perf_params")


def canonical_column(raw: str) -> str:
    """The contract's spelling of a header cell.

    Accepts the micro sign (U+00B5), the Greek mu (U+03BC) and ``us``, strips
    a byte-order mark and surrounding blanks, and maps the older ``count``
    column to ``operation_count``.
    """
    name = raw.lstrip("\ufeff").strip()
    name = name.replace("(μs)", "(µs)").replace("(us)", "(µs)")
    name = name.replace("μs", "µs")
    if name == "count":
        return "operation_count"
    return name


class CategoryPaths(NamedTuple):
    """Where a category's files live inside an output directory."""

    output_dir: Path
    category: str

    @property
    def ops_csv(self) -> Path:
        return self.output_dir / "category_data" / f"{self.category}_ops.csv"

    @property
    def metadata(self) -> Path:
        return self.output_dir / "metadata" / f"{self.category}_metadata.json"

    @property
    def category_manifest(self) -> Path:
        """The pipeline's list of every category, with op counts and times (not an input of ours)."""
        return self.output_dir / "category_data" / "category_manifest.json"

    @property
    def tree_data(self) -> Path:
        return self.output_dir / "category_data" / f"{self.category}_tree_data.json"

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.output_dir).as_posix()
        except ValueError:
            return str(path)



# --- metadata -----------------------------------------------------------------


# Magnitudes no trace or platform comes near. Outside them a ratio of two
# inputs can overflow to infinity, which no report can show.
PLAUSIBLE_MIN = 1e-6
PLAUSIBLE_MAX = 1e12


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value and not PLAUSIBLE_MIN <= abs(value) <= PLAUSIBLE_MAX:
        raise ValueError(f"must be 0 or between {PLAUSIBLE_MIN:g} and {PLAUSIBLE_MAX:g}")
    return value


Number = Annotated[float, Field(strict=True), AfterValidator(_finite)]


MAX_PLATFORM_CHARS = 200


def _platform(value: str | None) -> str | None:
    """The platform name as shown: one line, no control or bidi characters, at most 200 characters."""
    text = plain_text(value).strip()
    if len(text) > MAX_PLATFORM_CHARS:
        text = text[: MAX_PLATFORM_CHARS - 1].rstrip() + "…"
    return text or None


class GpuUtilization(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_time_ms: Annotated[Number, Field(ge=0)] | None = None


class Metadata(BaseModel):
    """``metadata/<cat>_metadata.json``: platform peaks and whole-trace time."""

    model_config = ConfigDict(extra="allow")

    platform: Annotated[str | None, AfterValidator(_platform)] = None
    peak_hbm_bw_tbs: Annotated[Number, Field(gt=0)]
    max_achievable_tflops: dict[str, Annotated[Number, Field(ge=0)] | None] | None = None
    peak_bf16_maf_tflops: Annotated[Number, Field(gt=0)] | None = None
    gpu_utilization: GpuUtilization | None = None
    trace2_gpu_utilization: GpuUtilization | None = None

    @model_validator(mode="after")
    def _has_a_compute_peak(self) -> "Metadata":
        peaks = self.max_achievable_tflops or {}
        if not any(v for v in peaks.values()) and not self.peak_bf16_maf_tflops:
            raise ValueError(
                "no compute peak: expected a non-zero entry in max_achievable_tflops "
                "or a positive peak_bf16_maf_tflops"
            )
        return self

    @property
    def e2e_time_ms(self) -> float | None:
        """End-to-end GPU time, the denominator of every '% of E2E' figure."""
        util = self.gpu_utilization
        if util is None or not util.total_time_ms:
            return None
        return util.total_time_ms

    def compute_peaks(self) -> dict[str, float]:
        """Per compute spec peak in TFLOP/s; zero entries mean 'not available'."""
        return {k: v for k, v in (self.max_achievable_tflops or {}).items() if v}


# --- tree data ----------------------------------------------------------------


def _str_list(value: Any) -> Any:
    if value is None:
        return []
    return value


class TreeEntry(BaseModel):
    """One entry of ``<cat>_tree_data.json``, keyed by the example event id."""

    model_config = ConfigDict(extra="allow")

    op_name: str | None = None
    ex_uid: int | str | None = None
    input_dims: str | None = None
    parent_chain: Annotated[list[str], BeforeValidator(_str_list)] = []
    subtree: Annotated[list[str], BeforeValidator(_str_list)] = []
    fusion_opportunity: bool | None = None


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """(JSON path, problem) of the first error, in a reader's words."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err.get("loc", ())) or "top level"
    msg = err.get("msg", "invalid value")
    if err.get("type") == "missing":
        return path, "required key is missing"
    if err.get("type") == "value_error":
        # Our own validators: the message says it all, without pydantic's
        # "Value error, " prefix or a dump of the whole object.
        problem = msg.removeprefix("Value error, ")
        return path, problem if path == "top level" else f"{problem} (got {_shown(err.get('input'))})"
    return path, f"{msg} (got {_shown(err.get('input'))})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
