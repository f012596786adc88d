"""Shared fixtures: copies of the bundled analysis output directories."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHETIC = "synthetic-mixtral-decode-bf16"
SYNTHETIC_VS = "synthetic-mixtral-decode-bf16-vs-faster"
GPT_OSS_DECODE = "gpt-oss-20b-mi300x-decode-bs32"
GPT_OSS_PREFILL = "gpt-oss-20b-mi300x-prefill-bs8192"
DENSE = "qwen3-8b-dense-mi300x-decode"


@pytest.fixture(scope="session", autouse=True)
def temp_dir_left_clean(tmp_path_factory: pytest.TempPathFactory):
    """Give the session a temp dir of its own and fail when a test leaves anything in it.

    Tests write under ``tmp_path``; whatever else they (or the programs they
    start) create in the temp dir must be gone when they end.
    """
    own = tmp_path_factory.mktemp("tempdir")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(own), str(own)
    yield
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    left = sorted(path.name for path in own.iterdir())
    assert not left, f"the tests left these in the temp dir: {left}"


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
