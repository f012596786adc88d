"""The input contract of an MoE category, as pydantic models.

Three inputs (see docs/input-contract.md): the ops CSV, its metadata JSON and
the optional tree-data JSON. The CSV is validated column-wise in ``load``
(row-wise models would cost seconds on a 100 000-row file); this module owns
the column vocabulary, the metadata and tree models, and the model of the
literal cells of the ops that end up in the report.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from jarvis_moe import literals

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
    "has_perf_model",
)
KNOWN_COLUMNS = FLOAT_COLUMNS + TEXT_COLUMNS


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


class GpuUtilization(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_time_ms: Annotated[Number, Field(ge=0)] | None = None


class Metadata(BaseModel):
    """``metadata/<cat>_metadata.json``: platform peaks and whole-trace time."""

    model_config = ConfigDict(extra="allow")

    platform: str | None = None
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


# --- literal cells of one op --------------------------------------------------


class PerfParams(BaseModel):
    """The MoE shape as the pipeline's perf model saw it (``perf_params``)."""

    model_config = ConfigDict(extra="allow")

    num_tokens: int | None = None
    hidden_dim: int | None = None
    inter_dim: int | None = None
    num_experts: int | None = None
    topk: int | None = None
    gated: bool | None = None
    input_dtype: str | None = None
    weight_dtype: str | None = None


def _parsed(parser):
    def parse(value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        return parser(value)

    return BeforeValidator(parse)


class OpCells(BaseModel):
    """The literal cells of one CSV row, parsed without ``eval``.

    Each field is ``None`` when its cell is missing or cannot be parsed: a
    broken literal makes that detail unknown, it does not fail the run.
    """

    input_dims: Annotated[tuple[tuple[int, ...] | None, ...] | None, _parsed(literals.parse_dims)] = None
    input_types: Annotated[tuple[str, ...] | None, _parsed(literals.parse_types)] = None
    perf_params: Annotated[PerfParams | None, _parsed(literals.parse_dict)] = None
    kernel_details: Annotated[list[dict[str, Any]] | None, _parsed(literals.parse_kernel_details)] = None
    call_stack: Annotated[list[Any] | None, _parsed(literals.parse_call_stack)] = None

    @classmethod
    def from_row(cls, row: dict[str, Any], cache: dict[tuple[str, str], Any] | None = None) -> "OpCells":
        """The parsed cells of ``row``.

        :param cache: parsed values keyed by (field, cell text), shared across
            the rows of one run so a cell text repeated in many rows (a call
            stack, a kernel list) is parsed once.
        """
        raw = {field: row.get(column) for field, column in _CELL_COLUMNS.items()}
        if cache is not None:
            for field, text in raw.items():
                if isinstance(text, str):
                    key = (field, text)
                    if key not in cache:
                        cache[key] = _CELL_PARSERS[field](text)
                    raw[field] = cache[key]
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            # Keep every field that did validate; drop the ones that did not.
            bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            return cls.model_validate({k: (None if k in bad else v) for k, v in raw.items()})


_CELL_COLUMNS = {
    "input_dims": "Input Dims",
    "input_types": "Input type",
    "perf_params": "perf_params",
    "kernel_details": "kernel_details_summary",
    "call_stack": "call_stack_full",
}
_CELL_PARSERS = {
    "input_dims": literals.parse_dims,
    "input_types": literals.parse_types,
    "perf_params": literals.parse_dict,
    "kernel_details": literals.parse_kernel_details,
    "call_stack": literals.parse_call_stack,
}


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
