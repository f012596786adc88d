"""The MoE block beyond this category: router, sorting, activation and sum kernels.

An MoE layer runs more than its expert GEMMs: the router (gate GEMM,
softmax, top-k), the alignment or sorting of tokens by expert, a separate
activation kernel, the weighted sum of the experts' outputs, a padding
copy. The pipeline files those kernels under other categories
(``gemm_ops.csv``, ``elementwise_ops.csv``, ``other_ops.csv``, ...). They
belong to the block when their call stack passes through the module that
holds the MoE ops (``MixtralMoE``, ``DeepseekV2MoE``; the outermost module
of the chain whose name says MoE) or, without such a frame (a GPU-graph
replay keeps no modules), when their own name says MoE routing work.

A sibling file that cannot be read is skipped: it is another category's
input, and the figure is an addition, not this category's contract.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from jarvis_moe.engine.contract import TIME_SUM, CategoryPaths
from jarvis_moe.engine.csv_header import read_header
from jarvis_moe.errors import ContractError
from jarvis_moe.metrics_levers import BlockPart, HiddenPadding, MoeBlock

# Categories whose rows are not kernels of the block: idle time, and the MoE
# categories themselves (each page reports its own ops).
SKIPPED = ("cpu_idle", "moe_fused", "moe_unfused")
# Op names that are MoE routing work wherever they sit.
MOE_NAME = r"(?i)moe|topk|top_k|sorttokens|sort_tokens|align_block|expert"
KINDS = (
    ("routing", r"(?i)topk|top_k|softmax|gate|router|gating|::mm|::addmm|::linear|gemm"),
    ("sorting", r"(?i)sort|align|cumsum|searchsorted|histogram|scatter_|index|arange|fill_|bincount"),
    ("activation", r"(?i)silu|gelu|swiglu|act_and_mul|relu"),
    ("padding", r"(?i)pad"),
    ("quantisation", r"(?i)quant|scale|::abs"),
    ("sum", r"(?i)sum|finalize|combine|reduce|::add|::mul|::div"),
)
_PAD_DIMS = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


# Modules that hold a whole model or layer, whatever their name says.
_WHOLE = ("forcausallm", "forconditionalgeneration", "model", "decoderlayer")


def block_module(chains: list[list[str]]) -> str | None:
    """The module that holds the MoE ops: the innermost one named for MoE above the experts' own.

    ``[..., DeepseekV2DecoderLayer, DeepseekV2MoE, FusedMoE]`` gives
    ``DeepseekV2MoE``; model and layer modules (``Qwen3MoeForCausalLM``,
    ``Glm4MoeDecoderLayer``) never stand for the block.
    """
    for chain in chains:
        named = [m for m in chain if "moe" in m.lower() and not m.lower().endswith(_WHOLE)]
        above = [m for m in named if m != chain[-1]]
        if above or named:
            return (above or named)[-1]
    return None


def _sibling_rows(paths: CategoryPaths) -> pl.DataFrame | None:
    frames = []
    folder = paths.output_dir / "category_data"
    for path in sorted(folder.glob("*_ops.csv")):
        if path.name.removesuffix("_ops.csv") in SKIPPED or not path.is_file() or path.is_symlink():
            continue
        frame = _read(path, paths.rel(path))
        if frame is not None:
            frames.append(frame)
    return pl.concat(frames, how="vertical") if frames else None


def _read(path: Path, rel: str) -> pl.DataFrame | None:
    """The four columns the block needs, read without the contract checks of this category's own CSV.

    Only the name, time, call stack and dims columns are parsed (a projected
    read): another category's file can be large, and a run pays for it on
    every trace. Rows whose time is not a number drop out with the zero-time
    ones.
    """
    ignored: list[str] = []
    try:
        header = read_header(path, rel, ignored)
        if header is None or "name" not in header.cells or TIME_SUM not in header.cells:
            return None
        wanted = [c for c in ("name", TIME_SUM, "call_stack_full", "Input Dims") if c in header.cells]
        frame = pl.read_csv(path, columns=wanted, infer_schema=False)
    except (ContractError, OSError, pl.exceptions.PolarsError):
        return None
    time_us = pl.col(TIME_SUM).str.strip_chars().cast(pl.Float64, strict=False)
    cols = [pl.col("name").str.strip_chars(), time_us.alias("time_us")]
    for name in ("call_stack_full", "Input Dims"):
        cols.append((pl.col(name) if name in frame.columns else pl.lit(None, pl.String)).alias(name))
    return frame.select(cols)


class SiblingRows:
    """The other categories' rows, read on a thread of their own from the moment this is made.

    They depend on nothing this category computes, and the reader spends
    most of its time outside the interpreter lock, so the read runs while
    this category's figures are worked out. :meth:`rows` waits for them
    (an exception of the read is raised there). Used as a context manager,
    it waits for the thread on the way out, whatever happened, so no read
    outlives the run. Without ``paths`` there is nothing to read.
    """

    def __init__(self, paths: CategoryPaths | None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jarvis-moe-block")
        self._read = self._pool.submit(_sibling_rows, paths) if paths is not None else None

    def rows(self) -> pl.DataFrame | None:
        """The rows (None when no other category has any), once read."""
        return self._read.result() if self._read is not None else None

    def __enter__(self) -> SiblingRows:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)


def moe_block(rows: pl.DataFrame | None, chains: list[list[str]], hidden_dim: int | None, inter_dim: int | None,
              e2e_ms: float | None) -> MoeBlock | None:
    """The block's kernels among ``rows`` (the other categories' rows), by kind, with their time.

    None when the trace has none.
    """
    if rows is None:
        return None
    module = block_module(chains)
    stack = pl.col("call_stack_full").fill_null("")
    in_block = pl.col("name").str.contains(MOE_NAME)
    if module:
        in_block = in_block | stack.str.contains(f"nn.Module: {module}'", literal=True) | stack.str.contains(
            f'nn.Module: {module}"', literal=True)
    found = rows.filter(in_block & (pl.col("time_us") > 0))
    if found.height == 0:
        return None
    kind = pl.lit("other")
    for label, pattern in reversed(KINDS):
        kind = pl.when(pl.col("name").str.contains(pattern)).then(pl.lit(label)).otherwise(kind)
    by_kind = (found.with_columns(kind=kind).group_by("kind", maintain_order=True)
               .agg(pl.col("time_us").sum(), pl.len().alias("signatures")).sort("time_us", descending=True))
    total_ms = float(found.get_column("time_us").sum()) / 1000.0
    parts = [BlockPart(kind=r["kind"], time_ms=round(r["time_us"] / 1000.0, 3), signatures=r["signatures"])
             for r in by_kind.iter_rows(named=True)]
    return MoeBlock(module=module, time_ms=round(total_ms, 3),
                    percent_of_total=round(total_ms / e2e_ms * 100.0, 2) if e2e_ms else None, parts=parts,
                    hidden_padding=hidden_padding(found, hidden_dim, inter_dim))


def hidden_padding(found: pl.DataFrame, hidden_dim: int | None, inter_dim: int | None) -> HiddenPadding | None:
    """A padding kernel of the block that widens (M, H) to (M, K): the model's hidden size H under K.

    The expert weights are K wide; when the intermediate size equals the
    hidden size (gpt-oss: both 2880, both padded to 3072) it is padded alike,
    and the extra weight bytes and FLOPs are (K·N) / (H·H) − 1, else K / H − 1.
    """
    if not hidden_dim:
        return None
    for name, dims in found.select("name", "Input Dims").iter_rows():
        if not re.search(r"(?i)pad", name or "") or not dims:
            continue
        shapes = [(int(a), int(b)) for a, b in _PAD_DIMS.findall(dims)]
        widths = {b for _, b in shapes}
        if hidden_dim in widths:
            narrow = min(widths)
            if narrow < hidden_dim:
                both = inter_dim == hidden_dim
                extra = (hidden_dim / narrow) ** (2 if both else 1)
                return HiddenPadding(model_hidden=narrow, padded_to=hidden_dim, intermediate_padded=both,
                                     extra_pct=round((extra - 1) * 100.0, 1))
    return None
