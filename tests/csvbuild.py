"""Build small analysis output directories for tests, row by row."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

NEW_METADATA = {
    "platform": "MI300X",
    "peak_hbm_bw_tbs": 5.3,
    "max_achievable_tflops": {"matrix_bf16": 708, "matrix_fp8": 1273, "vector_bf16": 163},
    "gpu_utilization": {"total_time_ms": 100.0},
}
OLD_METADATA = {
    "platform": "MI300X",
    "peak_hbm_bw_tbs": 5.3,
    "peak_bf16_maf_tflops": 708,
    "gpu_utilization": {"total_time_ms": 100.0},
}


def write_output_dir(
    root: Path,
    rows: Iterable[Mapping[str, Any]],
    *,
    category: str = "moe_fused",
    metadata: Mapping[str, Any] | None = None,
    columns: list[str] | None = None,
) -> Path:
    """Write ``category_data/<cat>_ops.csv`` and its metadata under ``root``."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns += [c for c in row if c not in columns]
    (root / "category_data").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with (root / "category_data" / f"{category}_ops.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    meta = dict(NEW_METADATA if metadata is None else metadata)
    (root / "metadata" / f"{category}_metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return root
