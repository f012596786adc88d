"""The engine's metrics and the findings writer agree on real runs."""

from __future__ import annotations

from csvbuild import write_output_dir
from jarvis_moe.run import analyse

T = "Kernel Time (µs)_"


def test_members_with_the_same_name_and_time_show_their_own_args(tmp_path):
    # Two signatures of one op with equal time but different shapes and
    # efficiencies land in different findings; each Data row must show the
    # args of its own signature, not of the first op with that name.
    common = {"name": "vllm::rocm_aiter_fused_moe", T + "sum": 20000, T + "mean": 200,
              "operation_count": 100, "Roofline Bound": "MEMORY_BOUND", "Compute Spec": "matrix_bf16",
              "Input type": "('c10::BFloat16',)"}
    rows = [
        dict(common, **{"Pct Roofline_mean": 20, "Input Dims": "((16, 4096),)"}),
        dict(common, **{"Pct Roofline_mean": 50, "Input Dims": "((512, 4096),)"}),
    ]
    out = write_output_dir(tmp_path / "twins", rows)
    assert analyse(out, category="moe_fused", scope="standalone").status.value == "OK"
    text = (out / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    blocks = text.split("<!-- reasoning-candidate")[1:]
    assert len(blocks) == 2
    # rank 1: the 20 % signature (larger gap), rank 2: the 50 % one
    assert "(16,4096) bf16" in blocks[0] and "(512,4096)" not in blocks[0]
    assert "(512,4096) bf16" in blocks[1] and "(16,4096)" not in blocks[1]


def test_the_fp4_substitution_is_said_once_and_not_on_stderr(fixture_copy, capsys):
    from conftest import GPT_OSS_DECODE
    from jarvis_host.cli import main

    out = fixture_copy(GPT_OSS_DECODE)
    assert main(["run", str(out), "--category", "moe_unfused"]) == 0
    text = (out / "category_findings" / "moe_unfused_findings.md").read_text(encoding="utf-8")
    assert text.count("has no fp4 matrix peak") == 1
    assert "fp4" not in capsys.readouterr().err
