"""Helpers the host tests import (fixtures live in ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path


def make_output_dir(path: Path, *subdirs: str) -> Path:
    """An (empty) analysis output directory as the pipeline leaves it: the
    runner refuses a folder with neither ``category_data/`` nor ``metadata/``."""
    for subdir in subdirs or ("category_data",):
        (path / subdir).mkdir(parents=True, exist_ok=True)
    return path


def tree(path: Path) -> list[str]:
    """Every path under ``path``, relative and sorted (to show nothing was created)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
