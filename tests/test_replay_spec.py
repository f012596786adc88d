"""The replay artifact a run writes: its spec matches the metrics, its script runs without PyTorch.

The script itself (routing, tensor plans, the reference backend) is tested in
``test_replay_script.py``; here it is the artifact as the run leaves it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_moe.run import analyse
from samples import FIXTURES, GPT_OSS_DECODE, REAL_H200, SYNTHETIC

SPEC = "category_data/{}_replay.json"
SCRIPT = "category_findings/{}_replay.py"


def run(tmp_path: Path, fixture: str, **options) -> tuple[Path, str]:
    out = tmp_path / fixture
    if not out.exists():
        shutil.copytree(FIXTURES / fixture, out)
    category = "moe_unfused" if (out / "category_data" / "moe_unfused_ops.csv").exists() else "moe_fused"
    result = analyse(out, category=category, options={"roofline_plot": False, **options})
    assert result.status.value == "OK", result.message
    return out, category


def script(out: Path, category: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(out / SCRIPT.format(category)), *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("fixture", [GPT_OSS_DECODE, SYNTHETIC])
def test_the_bundled_fixtures_get_a_replay_artifact_matching_their_metrics(tmp_path, fixture):
    out, category = run(tmp_path, fixture)
    spec = json.loads((out / SPEC.format(category)).read_text(encoding="utf-8"))
    metrics = json.loads((out / "category_data" / f"{category}_metrics.json").read_text(encoding="utf-8"))
    assert spec["format"] == "jarvis-moe-replay/1" and spec["category"] == category
    assert spec["cases"], "every op of these fixtures is below 50% of roofline"
    for case in spec["cases"]:
        op = metrics["operations"][case["op_index"]]
        moe = op["moe"]
        assert case["op"] == op["name"] and case["role"] == moe["kind"] and case["phase"] == moe["phase"]
        assert case["shape"] == {"M": moe["num_tokens"], "K": moe["hidden_dim"], "N": moe["inter_dim"],
                                 "E": moe["num_experts"], "topk": moe["topk"], "gated": moe["gated"] is not False}
        assert case["flops_per_call"] == moe["flops_per_call"] and case["bytes_per_call"] == moe["bytes_per_call"]
        assert case["trace"]["calls"] == op["count"]
        assert case["trace"]["mean_us"] == pytest.approx(op["time_ms"] / op["count"] * 1000, abs=0.001)
        assert case["trace"]["efficiency_pct"] == op["efficiency"]["roofline_efficiency_percent"] < 50
        assert case["peak"]["tbs"] == op["efficiency"]["resolved_peak_hbm_bw"]
        assert case["peak"]["tflops"] == op["efficiency"]["resolved_peak_maf"]
        assert case["block_rows"] == moe["padding_block_rows"]


def test_gpt_oss_cases_carry_the_mxfp4_format_and_kernel_names(tmp_path):
    out, category = run(tmp_path, GPT_OSS_DECODE)
    cases = json.loads((out / SPEC.format(category)).read_text(encoding="utf-8"))["cases"]
    assert [c["weights"]["dtype"] for c in cases] == ["mxfp4", "mxfp4"]
    assert cases[0]["weights"]["scale"] == {"dtype": "e8m0", "block": [1, 32]}
    assert cases[1]["kernels"] == ["_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1_swiglu"]
    assert cases[1]["activation"] == {"dtype": "bf16", "function": "swiglu", "fused_in_up_kernel": True}


def test_dry_run_list_and_json_need_no_pytorch_and_show_the_shapes(tmp_path):
    out, category = run(tmp_path, GPT_OSS_DECODE)
    listed = script(out, category, "--list")
    assert listed.returncode == 0, listed.stderr
    assert "M=32 K=3072 N=3072 E=32 topk=4" in listed.stdout and "2 case(s)" in listed.stdout
    dry = script(out, category, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "w2            [32, 3072, 1536]" in dry.stdout  # MXFP4 down weights, two per byte
    assert "flops     2,415,919,104 recomputed | spec 2,415,919,104" in dry.stdout
    plan = json.loads(script(out, category, "--dry-run", "--json", "--case", "2").stdout)
    assert [c["case"] for c in plan["cases"]] == [2]


def test_a_rerun_with_nothing_slow_removes_the_artifact(tmp_path):
    out, category = run(tmp_path, GPT_OSS_DECODE)
    assert (out / SCRIPT.format(category)).is_file()
    run(tmp_path, GPT_OSS_DECODE, replay_below_pct=0.0)
    assert not (out / SCRIPT.format(category)).exists() and not (out / SPEC.format(category)).exists()
    text = (out / "category_findings" / f"{category}_findings.md").read_text(encoding="utf-8")
    assert "replay script" not in text


def test_path_b_points_to_the_cases_and_the_backend_that_reproduces_the_kernel(tmp_path):
    out, category = run(tmp_path, REAL_H200)
    text = (out / "category_findings" / f"{category}_findings.md").read_text(encoding="utf-8")
    assert "`category_findings/moe_unfused_replay.py`" in text
    assert "on SGLang's own MoE kernels when installed, else the script's PyTorch reference" in text
    out2, category2 = run(tmp_path, GPT_OSS_DECODE)
    text2 = (out2 / "category_findings" / f"{category2}_findings.md").read_text(encoding="utf-8")
    assert "case 1 for `pseudo_op::moe_triton_unfused_down` and case 2 for" in text2
    assert "no library entry point reproduces this kernel" in text2


def test_the_heuristic_op_of_the_h200_trace_gets_a_case(tmp_path):
    out, category = run(tmp_path, REAL_H200)
    cases = json.loads((out / SPEC.format(category)).read_text(encoding="utf-8"))["cases"]
    assert len(cases) == 1 and cases[0]["role"] == "down" and cases[0]["phase"] == "decode"
    assert "cannot be rated" in cases[0]["reason"]
