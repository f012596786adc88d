"""Shared fixtures: copies of the bundled analysis output directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHETIC = "synthetic-mixtral-decode-bf16"
SYNTHETIC_VS = "synthetic-mixtral-decode-bf16-vs-faster"
GPT_OSS_DECODE = "gpt-oss-20b-mi300x-decode-bs32"
GPT_OSS_PREFILL = "gpt-oss-20b-mi300x-prefill-bs8192"
DENSE = "qwen3-8b-dense-mi300x-decode"


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a bundled output directory to a temporary place and return it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


def expected_metrics(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected" / "moe_fused_metrics.json").read_text(encoding="utf-8"))


def read_metrics(output_dir: Path, category: str) -> dict:
    return json.loads((output_dir / "category_data" / f"{category}_metrics.json").read_text(encoding="utf-8"))
