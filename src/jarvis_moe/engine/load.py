"""Load the three inputs of one category into one validated, typed object.

A missing, zero-byte or header-only CSV means "no MoE of this kind in the
trace" (``None``); everything else that is wrong is a ``ContractError``
from :mod:`~jarvis_moe.engine.read_csv` or :mod:`~jarvis_moe.engine.read_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from jarvis_moe.engine.contract import CategoryPaths, Metadata, TreeEntry
from jarvis_moe.engine.csv_header import read_header
from jarvis_moe.engine.read_csv import read_rows
from jarvis_moe.engine.read_json import load_metadata, load_tree, recorded_ops
from jarvis_moe.errors import ContractError


@dataclass
class Inputs:
    """The validated input of one category run."""

    frame: pl.DataFrame
    metadata: Metadata
    tree: dict[str, TreeEntry] | None
    warnings: list[str] = field(default_factory=list)
    paths: CategoryPaths | None = None  # where the other categories' files are


def load_inputs(paths: CategoryPaths) -> Inputs | None:
    """Read the category's inputs; ``None`` means the category is missing.

    :raises ContractError: for input that breaks the contract.
    """
    csv_path = paths.ops_csv
    rel = paths.rel(csv_path)
    if not csv_path.exists() and not csv_path.is_symlink():
        return _no_rows(paths, "is missing")
    if not csv_path.exists():
        raise ContractError(rel, "is not a regular file: a symbolic link to nothing")
    warnings: list[str] = []
    header = read_header(csv_path, rel, warnings)
    if header is None:
        return _no_rows(paths, "has no data rows")
    # A CSV with rows needs its metadata, whatever is wrong with the rows.
    metadata = load_metadata(paths)
    frame = read_rows(csv_path, rel, header, warnings)
    if frame is None:
        return _no_rows(paths, "has no data rows")
    if metadata.e2e_time_ms is None:
        warnings.append(
            f"{paths.rel(paths.metadata)}: gpu_utilization.total_time_ms is missing or 0, so shares "
            "of end-to-end GPU time and impact scores cannot be computed; no findings are ranked"
        )
    tree = load_tree(paths, warnings)
    return Inputs(frame, metadata, tree, warnings, paths)


def _no_rows(paths: CategoryPaths, what: str) -> None:
    """No MoE of this kind, unless the pipeline recorded ops of it elsewhere.

    :raises ContractError: when the category manifest or the metadata records ops
        or time of this category: the CSV was then lost or cut, not empty.
    """
    recorded = recorded_ops(paths)
    if recorded:
        raise ContractError(paths.rel(paths.ops_csv), f"{what}, but {recorded}: the file was lost or cut short; "
                            "rerun the pipeline that writes it")
    return None
