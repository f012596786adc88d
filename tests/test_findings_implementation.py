"""Path B's ``Implementation:`` lines: one per distinct implementation, switches as code spans.

Every MoE fixture page names what runs, gives each newer implementation's
switch as an inline code span with its source link, and the tuning path
filled in for the fixture's GPU and shape; the pages still pass the shared
checker (tests/test_findings_page.py runs it on every fixture).
"""

from __future__ import annotations

import re

import pytest

from jarvis_moe.findings import render
from samples import MOE_FIXTURES, fixture_metrics

FOLDERS = sorted(folder for folder, _ in MOE_FIXTURES)


def _path_b(page: str) -> list[str]:
    body = page.split("**Path B — kernel**", 1)[1].split("\n\n", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- Implementation: ")]


@pytest.mark.parametrize("folder", FOLDERS)
def test_one_line_per_distinct_implementation_with_every_switch_and_tuning_text_as_a_code_span(folder):
    m = fixture_metrics(folder)
    checks = [op.moe.implementation_check for op in m.operations if op.moe is not None]
    lines = _path_b(render(m))
    assert len(lines) == len({(c.running, c.catalogue_row, c.verdict) for c in checks})
    text = "\n".join(lines)
    for check in checks:
        assert check.running.split(" (")[0].replace("_", "\\_") in text
        for alt in check.alternatives:
            assert f"`{alt.enable}` ([source]({alt.source}))" in text
        for path in check.tuning:
            assert f"`{path.how}`" in text


def test_the_h200_page_gives_the_sglang_switch_and_the_config_file_for_this_gpu_and_shape():
    (line,) = _path_b(render(fixture_metrics("real-h200-mixtral-sglang-mixed-routing")))
    assert "`--moe-runner-backend triton_kernel`" in line
    # Mixtral-8x7B: E = 8 experts, N = 14336 (intermediate size, TP 1), traced on an H200.
    assert "`E=8,N=14336,device_name=NVIDIA_H200.json`" in line
    assert re.search(r"#1 \(up, prefill-like\), #2 \(down, prefill-like\), #3 .* and #4 .* run SGLang Triton", line)


def test_the_fp8_block_scaled_page_separates_the_decode_op_from_the_prefill_op():
    decode, prefill = _path_b(render(fixture_metrics("fam-fp8-blockscale-dsv3-tp8-mi300x")))
    assert "`AITER_BYPASS_TUNE_CONFIG=1`" in decode and "`token=32,model_dim=7168" in decode
    assert "Newest known here." in prefill and "`token=8192,model_dim=7168" in prefill
