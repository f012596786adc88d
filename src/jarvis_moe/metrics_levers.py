"""The metrics' base model, and the levers and MoE-block records of ``category_specific``.

Split from :mod:`jarvis_moe.metrics`, which re-uses them; the JSON keys are
documented in ``docs/metrics.md``.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


LeverKind = Literal["batching", "topk", "expert_parallel", "routing_balance", "row_block", "fusion",
                    "sibling_gap", "fp8_compute", "fp8_weights", "padding", "roofline_gap"]


class Lever(Model):
    """One way to win time that the trace supports, with the number behind it.

    ``saving_ms`` is an upper bound (the peaks are reachable at best), null
    when the trace cannot size it. ``path``: ``serving`` (batching,
    parallelism, routing balance, fusion), ``model`` (a change of the model
    itself, such as its top-k) or ``kernel``.
    """

    kind: LeverKind
    path: Literal["serving", "model", "kernel"]
    op_indexes: list[int]
    value_from: float | None
    value_to: float | None
    unit: str | None
    saving_ms: float | None
    percent_of_total: float | None
    detail: str | None = None
    bytes_ratio: float | None = None
    time_ratio: float | None = None


class LeverSum(Model):
    """Every lever of one kind together: its saving summed from unrounded values, rounded once.

    ``recommended`` when the saving reaches the option ``lever_min_pct`` of
    GPU time; the others are named as checked and worth less.
    """

    kind: LeverKind
    path: Literal["serving", "model", "kernel"]
    op_indexes: list[int]
    saving_ms: float
    percent_of_total: float | None
    recommended: bool


class BlockPart(Model):
    kind: Literal["routing", "sorting", "activation", "padding", "quantisation", "sum", "other"]
    time_ms: float
    signatures: int


class HiddenPadding(Model):
    """The model's hidden size under the expert kernels' padded width, from a padding kernel of the block."""

    model_hidden: int
    padded_to: int
    intermediate_padded: bool
    extra_pct: float


class MoeBlock(Model):
    """Kernels of the MoE block filed under other categories: router, sorting, activation, sum, padding."""

    module: str | None
    time_ms: float
    percent_of_total: float | None
    parts: list[BlockPart]
    hidden_padding: HiddenPadding | None


class TableRest(Model):
    """The signatures below the operations table (option ``max_table_ops``) together."""

    signatures: int
    time_ms: float
    percent_of_category: float | None
