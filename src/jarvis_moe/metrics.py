"""``category_data/<cat>_metrics.json`` as pydantic models.

The engine builds a :class:`Metrics` (one of three forms, told apart by
``status``), the findings writer renders it, the replay writer reads it and
the output writer serialises it. Field names are the documented keys of
``docs/metrics.md``; numbers are rounded once, by the engine, to the places
that document gives, and every reader prints them as they are.

:func:`json_schema` is the JSON Schema shipped in the package and in ``docs/``.
"""

import enum
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter

from jarvis_moe.metrics_levers import Lever, LeverSum, Model, MoeBlock, TableRest

from jarvis_moe.metrics_implementation import ImplementationCheck
from jarvis_moe.options import Options

class WarningCode(str, enum.Enum):
    """What an op warning is about, so readers choose warnings by code, never by their text."""

    PEAK_SUBSTITUTED = "peak_substituted"  # rated against another dtype's peak
    NO_PEAK = "no_peak"  # the platform has no peak for its dtype
    NO_FAMILY = "no_family"  # matches no known MoE op family
    NO_SHAPE = "no_shape"  # its family's shape could not be read
    BLOCK_CONFLICT = "block_conflict"  # launch arguments and kernel name give other row blocks
    OVER_100_ROUTING = "over_100_routing"  # above 100 % of roofline, explained by its routing evidence
    ANOMALY = "anomaly"  # above the anomaly line, unexplained
    OVER_100 = "over_100"  # above the warning line
    TRACE2_CLAMPED = "trace2_clamped"  # comparative efficiency floored at trace 1's


Bound = Literal["compute", "memory"]
Kind = Literal["fused", "up", "down"]


# --- one operation ------------------------------------------------------------


class Efficiency(Model):
    """The shared roofline figures of one op (analysis §2)."""

    tflops_achieved: float | None
    tb_s_achieved: float | None
    efficiency_percent: float | None
    bound_type: Bound | None
    flops_per_byte: float | None
    compute_spec: str | None
    resolved_peak_maf: float | None
    resolved_peak_hbm_bw: float | None
    warning: str | None
    is_anomaly: bool
    substituted_compute_spec: str | None
    efficiency_source: Literal["pct_roofline", "computed", "comparative"] | None
    roofline_efficiency_percent: float | None
    ridge_flops_per_byte: float | None = None
    peak_basis: Literal["compute_spec", "kernel_name", "activation_dtype"] | None = None


class ActiveExperts(Model):
    low: int
    expected: float
    high: int


class Interval(Model):
    low: float
    high: float


class WeightFormat(Model):
    """How the expert weights are stored, with the bytes the pipeline's model leaves out."""

    name: str
    element: str
    bits: float
    scale_dtype: str | None
    scale_block: list[int] | None
    zero_points: bool
    overhead_bytes_per_weight: float
    source: str


class RoutingEvidence(Model):
    """Call durations read as weight passes; ``flagged`` is the spread rule, ``direction`` the verdict."""

    calls: int
    max_over_median: float | None
    min_over_median: float | None
    cov: float | None
    flagged: bool
    refused: Literal["compute_bound", "no_timing", "low_bandwidth", "few_calls", "identical_calls",
                     "anomaly"] | None
    direction: Literal["fewer_experts", "slow_tail"] | None
    verdict_source: Literal["own", "sibling"] | None
    sibling_op_index: int | None
    block_rows: int | None
    implied_passes: Interval | None
    uniform_passes: Interval | None
    implied_active_experts: Interval | None
    uniform_active_experts: Interval | None
    bandwidth_tbs: float | None
    bandwidth_source: Literal["peak", "slow_calls"] | None
    noise_pct: float | None
    fast_calls_pct: float | None
    corrected_efficiency_percent: float | None
    over_100_explained: bool | None
    time_over_median_ms: float | None = None


class MoeFigures(Model):
    """The MoE model of one op (analysis §4): shape, work, routing, padding."""

    num_tokens: int
    hidden_dim: int
    inter_dim: int
    num_experts: int
    topk: int
    gated: bool | None
    input_dtype: str | None
    weight_dtype: str | None
    shape_source: Literal["perf_params", "input_dims"]
    kind: Kind
    kind_source: Literal["op_name", "shapes"]
    gated_source: Literal["perf_params", "input_dims", "sibling", "shapes", "assumed"] | None
    gemm_n: int | None
    gemm_k: int | None
    activation_fused: bool | None
    weight_format: WeightFormat | None
    flops_per_call: float
    bytes_per_call: float | None
    weight_bytes_per_call: float | None
    scale_bytes_per_call: float | None
    efficiency_with_scales_percent: float | None
    tokens_per_expert: float
    tokens_per_active_expert: float
    active_experts: ActiveExperts
    efficiency_interval: Interval | None
    crossover_tokens: int | None
    crossover_note: Literal["compute_bound", "unreachable", "unknown"] | None
    crossover_tokens_with_scales: int | None
    crossover_tokens_at_peak: int | None
    crossover_memory_tbs: float | None
    crossover_memory_source: Literal["streaming_rate", "achieved", "peak"] | None
    crossover_compute_tflops: float | None
    crossover_compute_source: Literal["compute_bound_calls", "peak"] | None
    padding_waste_pct: float | None
    padding_block_rows: int | None
    padding_block_source: Literal["kernel_name", "launch_args", "documented_default", "assumed"] | None
    padding_block_kernel_name_rows: int | None  # the kernel name's block where it disagrees with the launch
    padding_time_pct: float | None
    phase: Literal["decode", "prefill"]
    skew: RoutingEvidence
    implementation_check: ImplementationCheck
    activation_quant: str | None = None
    scale_share_pct: float | None = None
    us_per_active_expert: float | None = None
    expert_stream_us_at_peak: float | None = None


class Operation(Model):
    """One signature (one CSV row), largest time first."""

    name: str
    display_name: str
    count: int
    time_ms: float
    percent_of_category: float
    percent_of_total: float | None
    efficiency: Efficiency
    input_dims: str | None = Field(alias="Input Dims")
    input_type: str | None = Field(alias="Input type")
    args: str
    t2_time_ms: float | None = None
    count_trace2: int | None = None
    difference_ms: float | None = None
    speedup_pct: float | None = None
    cov: float | None
    high_variance: bool
    library: str
    family: str | None
    implementation: str | None
    launcher_path: str
    kernel_name: str
    kernel_name_trunc: str
    kernels: list[str] = []  # the kernels the op launches, one raw name each, in launch order
    module_chain: list[str]
    call_chain: list[Any] | None = None
    warnings: list[str]
    warning_codes: list[WarningCode]  # the code of each of ``warnings``, in the same order
    moe: MoeFigures | None
    ex_uid: str | int | None


# --- impact -------------------------------------------------------------------


class ImpactEstimate(Model):
    operation: str
    category: str
    type: Literal["kernel_tuning", "unmodeled_significant"]
    estimate_method: Literal["quantified", "heuristic"]
    impact_score: float
    impact_score_low: float
    impact_score_high: float
    efficiency_pct: float | None
    bound_type: Bound | None
    library: str
    time_ms: float
    percent_of_total: float | None = None
    op_index: int | None = None


class Finding(Model):
    bound_type: Literal["compute", "memory", "unmodeled"] | None
    library: str
    eff_bucket: str
    estimate_method: Literal["quantified", "heuristic"]
    impact_score: float
    impact_score_low: float
    impact_score_high: float
    percent_of_total: float | None = None
    member_count: int
    members: list[ImpactEstimate]
    rank: int
    time_ms: float
    efficiency_pct: float | None
    trace1_time_ms: float | None = None
    trace2_time_ms: float | None = None
    speedup_pct: float | None = None


# --- the category ---------------------------------------------------------------


class Significance(Model):
    percent_of_compute: float | None
    band_low_pct: float
    band_high_pct: float
    position: Literal["below", "within", "above", "unknown"]
    statement: str


class ModuleChain(Model):
    chain: list[str]
    signatures: int
    time_ms: float


class LayerStructure(Model):
    source: Literal["tree_data", "call_stack", "none"]
    module_chains: list[ModuleChain]
    launchers: list[str]
    signature_count: int
    layer_types: list[str]


class PhaseSplit(Model):
    decode_ms: float
    prefill_ms: float
    unknown_ms: float
    decode_pct: float | None = None  # each phase's share of the category's time, %
    prefill_pct: float | None = None
    unknown_pct: float | None = None


class Pipeline(Model):
    """The up and down ops of one layer pipeline (same M, E, k and hidden size)."""

    up_op_index: int
    down_op_index: int
    implementation: str | None
    num_tokens: int
    calls: int
    activation_fused: bool | None
    intermediate_bytes_per_call: int
    traffic_factor: int
    time_ms_at_peak: float
    hidden_under_compute: bool  # a stage is compute-bound: the GEMM side of the traffic costs no time
    activation_time_ms: float | None  # the separate activation kernels' measured time, its share
    saving_ms: float  # at most the time of the work that disappears
    percent_of_total: float | None


class FusionPayoff(Model):
    intermediate_bytes_per_call: int
    total_bytes: int
    calls: int
    total_time_ms_at_peak: float
    saving_ms: float
    percent_of_total: float | None
    pipelines: list[Pipeline]


class CategorySpecific(Model):
    peak_maf_tflops: float | None
    peak_hbm_bw_tbs: float | None
    significance: Significance
    layer_structure: LayerStructure
    phase_split: PhaseSplit
    fusion_payoff: FusionPayoff | None = None
    levers: list[Lever]
    lever_sums: list[LeverSum] = []
    moe_block: MoeBlock | None = None
    table_rest: TableRest | None = None
    trace2_total_ms: float | None = None
    limits: list[str]


class MetricsOk(Model):
    category: str
    status: Literal["OK"]
    comparison_scope: Literal["standalone", "comparative"]
    generated_by: str
    total_time_ms: float
    percent_of_compute: float
    operation_count: int
    e2e_time_ms: float | None
    platform: str | None
    operations_total: int
    operations_omitted: int
    operations: list[Operation]
    category_specific: CategorySpecific
    impact_estimates: list[ImpactEstimate]
    impact_estimates_total: int
    category_findings: list[Finding]
    warnings: list[str]
    input_warnings: list[str]
    options: Options


class MetricsNoData(Model):
    category: str
    status: Literal["NO_DATA"]
    comparison_scope: Literal["standalone", "comparative"]
    generated_by: str
    message: str
    sibling_category: str | None = None
    total_time_ms: float = 0.0
    percent_of_compute: float = 0.0
    operation_count: int = 0
    operations: list[Operation] = []
    impact_estimates: list[ImpactEstimate] = []
    category_findings: list[Finding] = []


class MetricsError(Model):
    category: str
    status: Literal["ERROR"]
    comparison_scope: Literal["standalone", "comparative"]
    generated_by: str
    message: str
    file: str | None
    location: str | None
    operations: list[Operation] = []
    impact_estimates: list[ImpactEstimate] = []
    category_findings: list[Finding] = []


Metrics = Annotated[Union[MetricsOk, MetricsNoData, MetricsError], Field(discriminator="status")]
METRICS_ADAPTER: TypeAdapter[Any] = TypeAdapter(Metrics)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the metrics file (draft 2020-12), as shipped."""
    schema = METRICS_ADAPTER.json_schema(by_alias=True, mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://jarvis-moe/metrics.schema.json",
        "title": "jarvis-moe category metrics",
        **schema,
    }


if __name__ == "__main__":  # python -m jarvis_moe.metrics > src/jarvis_moe/schema/metrics.schema.json
    import json
    import sys

    sys.stdout.write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
