"""A run leaves next to no cyclic garbage, however many rows it reads.

The commands run without the cyclic collector (``jarvis_host.exits.run_process``):
that is safe only while reference counting frees nearly everything a run
makes. This measures what only the collector could free after a run, with
the collector off: it must not grow with the row count.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_scale  # noqa: E402

from jarvis_moe.run import Status, analyse  # noqa: E402

CATEGORY = bench_scale.fixture_category(bench_scale.DEFAULT_FIXTURE)


def _garbage_of_a_run(root: Path, rows: int) -> int:
    """Objects in reference cycles that one run over ``rows`` signatures leaves behind."""
    output_dir = bench_scale.build_output_dir(root / str(rows), rows).parents[1]
    gc.collect()
    gc.disable()
    try:
        result = analyse(output_dir, category=CATEGORY)
        assert result.status is Status.OK, result.message
        return gc.collect()
    finally:
        gc.enable()


def test_the_cyclic_garbage_of_a_run_does_not_grow_with_its_rows(tmp_path):
    _garbage_of_a_run(tmp_path, 50)  # first imports and caches are not the run's garbage

    small, large = _garbage_of_a_run(tmp_path, 300), _garbage_of_a_run(tmp_path, 3000)

    # Measured: about 1 200 objects (the listed ops' records and the page), the
    # same at 100 and 5 000 rows; ten times the rows may not add a hundred.
    assert large <= small + 100, (small, large)
    assert large < 10_000
