"""Tests of the standalone replay script, built from src/jarvis_moe/replay/script/.

The script is written next to a report as one file, so it is built here, imported by
path and run as a subprocess with sys.executable. Tests that need PyTorch are
skipped where it is not installed (CI has neither PyTorch nor a GPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import py_compile
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.replay.build import build_script

# The one-file script as a run writes it, built once into a folder removed at exit.
_BUILT = tempfile.TemporaryDirectory(prefix="jarvis-replay-test-")
SCRIPT = Path(_BUILT.name) / "moe_replay.py"
SCRIPT.write_bytes(build_script())
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("moe_replay_under_test", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


replay = _load_script()


# --- spec builders --------------------------------------------------------------------


def gemm_flops(role: str, M: int, K: int, N: int, k: int, gated: bool) -> int:
    """The brief's formulas, written out independently of the script."""
    up = 2 * M * K * N * k * (2 if gated else 1)
    down = 2 * M * K * N * k
    return {"up": up, "down": down, "fused": up + down + M * K * (2 * k - 1)}[role]


def make_case(number: int, role: str, wdtype: str, *, M: int = 32, K: int = 256, N: int = 128, E: int = 8,
              topk: int = 2, gated: bool = True, act_dtype: str = "bf16", act_fused: bool = False,
              function: str = "swiglu", block: list[int] | None = None, zero_points: bool | None = None,
              backend: str = "torch") -> dict[str, Any]:
    weights: dict[str, Any] = {"dtype": wdtype, "bits": 4 if wdtype in ("mxfp4", "int4") else 8}
    if block is not None:
        weights["scale"] = {"dtype": "fp32", "block": block}
    if zero_points is not None:
        weights["zero_points"] = zero_points
    return {
        "case": number, "op": f"pseudo_op::moe_triton_unfused_{role}", "kernels": ["k0"], "family": "triton",
        "implementation": "x", "library": "Triton", "backend": backend, "role": role, "phase": "decode",
        "shape": {"M": M, "K": K, "N": N, "E": E, "topk": topk, "gated": gated},
        "activation": {"dtype": act_dtype, "function": function, "fused_in_up_kernel": act_fused},
        "weights": weights, "block_rows": 16,
        "flops_per_call": gemm_flops(role, M, K, N, topk, gated), "bytes_per_call": 1_000_000,
        "trace": {"calls": 24, "mean_us": 100.0, "min_us": 90.0, "max_us": 110.0, "efficiency_pct": 12.5,
                  "bound": "memory"},
        "peak": {"compute_spec": "matrix_bf16", "tflops": 708, "tbs": 5.3},
        "reason": "12.5% of roofline, below the 50% threshold",
        "future_key": {"ignored": True},
    }


STANDARD_CASES = [
    make_case(1, "fused", "bf16"),
    make_case(2, "up", "fp8_block", act_fused=True, block=[128, 128]),
    make_case(3, "down", "mxfp4", block=[1, 32]),
    make_case(4, "up", "int4", block=[1, 128], zero_points=True),
]


def write_spec(directory: Path, cases: list[dict[str, Any]], name: str = "spec.json", **top: Any) -> Path:
    doc = {"format": "jarvis-moe-replay/1", "category": "moe_unfused", "generated_by": "jarvis-moe test",
           "threshold_pct": 50.0,
           "platform": {"name": "MI300X", "peak_hbm_tbs": 5.3, "peak_tflops": {"matrix_bf16": 708, "matrix_fp8": 1273}},
           "cases": cases}
    doc.update(top)
    path = directory / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run_script(*args: str, script: Path = SCRIPT, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, str(script), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_spec(tmp_path, STANDARD_CASES)


def tensors_by_name(plan_case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in plan_case["tensors"]}


# --- the script as a command ------------------------------------------------------------


def test_script_compiles(tmp_path: Path) -> None:
    py_compile.compile(str(SCRIPT), cfile=str(tmp_path / "moe_replay.pyc"), doraise=True)


def test_script_imports_only_the_standard_library_at_top_level() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    assert "jarvis_moe" not in source.replace("jarvis-moe", "")
    top_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_imports if "torch" in line or "vllm" in line]


def test_help_runs_and_names_every_option() -> None:
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--spec", "--list", "--dry-run", "--json", "--case", "--routing", "--zipf", "--seed",
                   "--backend", "--device", "--warmup", "--iters", "--peak-tflops", "--peak-tbs", "--check"):
        assert option in done.stdout


def test_list_prints_one_line_per_case(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "moe_unfused: 4 case(s), trace on MI300X" in lines[0]
    assert len(lines) == 5
    assert "pseudo_op::moe_triton_unfused_down" in lines[3] and "down/decode" in lines[3]
    assert "M=32 K=256 N=128 E=8 topk=2 gated" in lines[3] and "mxfp4" in lines[3]
    assert "trace 100.00 us" in lines[3] and "eff 12.50%" in lines[3]


def test_list_json(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--list", "--json", "--case", "3", "--case", "1")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["mode"] == "list" and doc["category"] == "moe_unfused"
    assert [c["case"] for c in doc["cases"]] == [1, 3]
    assert doc["cases"][1] == {"case": 3, "op": "pseudo_op::moe_triton_unfused_down", "role": "down",
                               "phase": "decode", "M": 32, "K": 256, "N": 128, "E": 8, "topk": 2, "gated": True,
                               "weights": "mxfp4", "trace_mean_us": 100.0, "efficiency_pct": 12.5}


def test_dry_run_text_shows_tensors_and_numbers(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # case 3: mxfp4 down projection, w2 [E, K, N] packed along N, e8m0 scale per 32.
    assert "w2            [8, 256, 64]" in out and "131,072 B" in out
    assert "w2_scale      [8, 256, 4]" in out and "8,192 B" in out
    # case 4: int4 GPTQ/AWQ with fp16 group scales and packed zero points.
    assert "w1_zeros      [8, 128, 2]" in out and "2,048 B" in out
    # case 2: fp8 block scales, one fp32 per 128x128 block.
    assert "w1_scale      [8, 2, 2]" in out
    assert f"flops     {gemm_flops('fused', 32, 256, 128, 2, True):,} recomputed | spec" in out
    assert "routing   uniform (seed 0)" in out
    assert "backend   torch (spec: torch)" in out


def test_dry_run_json_plans(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    cases = {c["case"]: c for c in json.loads(done.stdout)["cases"]}
    fused = tensors_by_name(cases[1])
    assert fused["x"]["shape"] == [32, 256] and fused["x"]["bytes"] == 32 * 256 * 2
    assert fused["w1"]["shape"] == [8, 256, 256] and fused["w1"]["bytes"] == 8 * 256 * 256 * 2
    assert fused["w2"]["shape"] == [8, 256, 128] and fused["out"]["shape"] == [32, 256]
    up_fp8 = tensors_by_name(cases[2])
    assert up_fp8["w1"]["dtype"] == "fp8_e4m3" and up_fp8["w1"]["bytes"] == 8 * 256 * 256
    assert up_fp8["w1_scale"] == {"name": "w1_scale", "shape": [8, 2, 2], "dtype": "fp32", "bytes": 128,
                                  "kind": "weight", "note": "one per 128x128 block"}
    assert up_fp8["out"]["shape"] == [64, 128]  # activation fused in the up kernel: [M*topk, N]
    assert "w2" not in up_fp8
    down = tensors_by_name(cases[3])
    assert down["h"]["shape"] == [64, 128] and "w1" not in down
    assert down["w2"]["bytes"] == 8 * 128 * 256 // 2 and down["w2_scale"]["bytes"] == 8 * 128 * 256 // 32
    up_int4 = tensors_by_name(cases[4])
    assert up_int4["out"]["shape"] == [64, 256]  # no fused activation: [M*topk, 2N]
    assert up_int4["w1_scale"]["dtype"] == "fp16" and up_int4["w1_scale"]["shape"] == [8, 256, 2]
    for number, case in cases.items():
        role = case["role"]
        assert case["flops_per_call"]["recomputed"] == gemm_flops(role, 32, 256, 128, 2, True)
        assert case["flops_per_call"]["spec"] == case["flops_per_call"]["recomputed"]
        assert case["bytes_per_call"]["spec"] == 1_000_000
        assert case["routing"]["active_experts"] <= 8
    weights3 = 8 * 128 * 256 // 2 + 8 * 128 * 256 // 32
    expected = replay.expected_active_experts(8, 2, 32)
    assert cases[3]["bytes_per_call"]["recomputed_expected_active"] == pytest.approx(
        weights3 * expected / 8 + 64 * 128 * 2 + 32 * 256 * 2)


def test_dry_run_reports_backend_fallback(tmp_path: Path) -> None:
    path = write_spec(tmp_path, [make_case(1, "up", "bf16", backend="vllm"),
                                 make_case(2, "down", "mxfp4", backend="sglang")])
    done = run_script("--spec", str(path), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    cases = json.loads(done.stdout)["cases"]
    if importlib.util.find_spec("vllm") is None:
        assert cases[0]["backend"] == "torch"
        assert "vllm is not importable here; using torch" in cases[0]["notes"]
        assert "vllm is not importable" in done.stderr  # notes echoed to stderr under --json
    assert cases[1]["backend"] == "torch"


def test_missing_spec_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    done = run_script("--spec", str(tmp_path / "nope.json"), "--list")
    assert done.returncode == 2
    assert "error: spec not found" in done.stderr and "Traceback" not in done.stderr
    lone = tmp_path / "lone_replay.py"
    shutil.copy(SCRIPT, lone)
    done = run_script("--dry-run", script=lone)
    assert done.returncode == 2
    assert "no replay spec found" in done.stderr and "lone_replay.json" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("content, message", [
    ({"format": "something-else/1", "cases": []}, "not a jarvis-moe replay spec"),
    ({"cases": []}, "format None"),
    ({"format": "jarvis-moe-replay/1", "cases": {}}, "'cases' must be a list"),
    ({"format": "jarvis-moe-replay/1", "cases": [{"role": "sideways"}]}, "case #1: role must be one of"),
    ({"format": "jarvis-moe-replay/1", "cases": [{"role": "up", "shape": {"M": 4}}]}, "shape.K must be"),
    ({"format": "jarvis-moe-replay/1",
      "cases": [{"role": "up", "shape": {"M": 4, "K": 8, "N": 8, "E": 2, "topk": 3}}]}, "topk 3 > E 2"),
    ({"format": "jarvis-moe-replay/1",
      "cases": [{"role": "up", "shape": {"M": 4, "K": 8, "N": 8, "E": 2, "topk": 1},
                 "weights": {"dtype": "nvfp4"}}]}, "weights.dtype 'nvfp4'"),
    ([1, 2, 3], "format None"),
])
def test_wrong_format_exits_2(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    done = run_script("--spec", str(path), "--list")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_not_json_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    done = run_script("--spec", str(path), "--dry-run")
    assert done.returncode == 2 and "not a readable JSON file" in done.stderr


def test_unknown_case_exits_2(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--list", "--case", "9")
    assert done.returncode == 2 and "no case 9" in done.stderr


def test_spec_found_beside_script_and_in_category_data(tmp_path: Path) -> None:
    findings, data = tmp_path / "category_findings", tmp_path / "category_data"
    findings.mkdir()
    data.mkdir()
    script = findings / "moe_unfused_replay.py"
    shutil.copy(SCRIPT, script)
    write_spec(data, STANDARD_CASES[:1], name="moe_unfused_replay.json")
    done = run_script("--list", "--json", script=script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"].endswith("category_data/moe_unfused_replay.json")
    write_spec(findings, STANDARD_CASES[:2], name="moe_unfused_replay.json")
    doc = json.loads(run_script("--list", "--json", script=script).stdout)
    assert doc["spec"] == str(findings / "moe_unfused_replay.json") and len(doc["cases"]) == 2


def test_missing_optional_keys_do_not_crash(tmp_path: Path) -> None:
    bare = {"role": "down", "shape": {"M": 3, "K": 64, "N": 32, "E": 4, "topk": 2}}
    path = write_spec(tmp_path, [bare], platform={})
    for mode in ("--list", "--dry-run"):
        done = run_script("--spec", str(path), mode)
        assert done.returncode == 0, done.stderr
    case = replay.parse_case(bare, 1, {})
    assert (case.wfmt, case.act_dtype, case.gated, case.number, case.backend) == ("bf16", "bf16", False, 1, "torch")
    assert case.peak_tflops is None and case.spec_flops is None
    figures = replay.figures(case, 10.0, None)
    assert figures["roofline"]["pct"] is None and figures["tflops"] is None


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed here")
def test_running_without_torch_exits_2(spec_path: Path) -> None:
    done = run_script("--spec", str(spec_path), "--case", "1")
    assert done.returncode == 2
    assert "PyTorch is needed to run cases" in done.stderr and "Traceback" not in done.stderr


def test_bad_option_values_exit_2(spec_path: Path) -> None:
    assert run_script("--spec", str(spec_path), "--iters", "0").returncode == 2
    assert run_script("--spec", str(spec_path), "--routing", "random").returncode == 2


# --- pure-Python parts --------------------------------------------------------------------


def test_mxfp4_plan_bytes() -> None:
    E, N, K = 4, 64, 256
    w, scale = replay.weight_tensors("w2", "mxfp4", E, N, K, (1, 32))
    assert w.shape == (E, N, K // 2) and w.nbytes == E * N * K // 2
    assert scale.shape == (E, N, K // 32) and scale.nbytes == E * N * K // 32


def test_int4_plan_bytes() -> None:
    tensors = replay.weight_tensors("w1", "int4", 2, 6, 256, (1, 128), zero_points=True)
    assert [(t.name, t.shape, t.dtype, t.nbytes) for t in tensors] == [
        ("w1", (2, 6, 128), "uint8", 2 * 6 * 128),
        ("w1_scale", (2, 6, 2), "fp16", 2 * 6 * 2 * 2),
        ("w1_zeros", (2, 3, 2), "uint8", 2 * 3 * 2),
    ]
    assert len(replay.weight_tensors("w1", "int4", 2, 6, 256, (1, 128), zero_points=False)) == 2


def test_fp8_and_bf16_plan_bytes() -> None:
    q, scale = replay.weight_tensors("w1", "fp8", 3, 10, 20)
    assert (q.nbytes, scale.shape, scale.nbytes) == (600, (3,), 12)
    q, scale = replay.weight_tensors("w1", "fp8_block", 3, 300, 129, (128, 128))
    assert scale.shape == (3, 3, 2) and scale.nbytes == 3 * 3 * 2 * 4
    (w,) = replay.weight_tensors("w1", "bf16", 3, 10, 20)
    assert w.nbytes == 3 * 10 * 20 * 2 and w.dtype == "bf16"


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(["bf16", "fp16", "fp8", "fp8_block", "mxfp4", "int4"]),
       E=st.integers(1, 16), rows=st.integers(1, 300), cols=st.integers(1, 300), zp=st.booleans())
def test_weight_bytes_are_shape_times_element_size(fmt: str, E: int, rows: int, cols: int, zp: bool) -> None:
    block = replay.DEFAULT_BLOCK.get(fmt, (1, 1))
    tensors = replay.weight_tensors("w", fmt, E, rows, cols, block, zp)
    size = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8_e4m3": 1, "uint8": 1}
    for t in tensors:
        assert t.nbytes == math.prod(t.shape) * size[t.dtype]
    main = tensors[0]
    packed = fmt in ("mxfp4", "int4")
    assert main.shape == (E, rows, (cols + 1) // 2 if packed else cols)


def test_flops_hand_computed() -> None:
    # gpt-oss-20b decode on MI300X, M=32 K=N=3072 E=32 topk=4 (the fixture's GFLOPS column).
    assert replay.flops_per_call("down", 32, 3072, 3072, 4, True) == 2_415_919_104
    assert replay.flops_per_call("up", 32, 3072, 3072, 4, True) == 4_831_838_208
    assert replay.flops_per_call("up", 32, 3072, 3072, 4, False) == 2_415_919_104
    assert replay.flops_per_call("fused", 32, 3072, 3072, 4, True) == 4_831_838_208 + 2_415_919_104 + 32 * 3072 * 7


@settings(max_examples=100, deadline=None)
@given(role=st.sampled_from(["fused", "up", "down"]), M=st.integers(1, 10_000), K=st.integers(1, 8192),
       N=st.integers(1, 8192), k=st.integers(1, 16), gated=st.booleans())
def test_flops_match_the_formulas(role: str, M: int, K: int, N: int, k: int, gated: bool) -> None:
    assert replay.flops_per_call(role, M, K, N, k, gated) == gemm_flops(role, M, K, N, k, gated)


def test_bytes_per_call_hand_computed() -> None:
    case = replay.parse_case(STANDARD_CASES[2], 3, {})  # down, mxfp4, M=32 K=256 N=128 E=8 topk=2
    plan = replay.tensor_plan(case)
    weights = 8 * 128 * 256 // 2 + 8 * 128 * 256 // 32  # 131072 + 8192
    io = 64 * 128 * 2 + 32 * 256 * 2  # intermediate read + output write, bf16
    assert replay.bytes_per_call(plan, 8, 8) == weights + io == 172_032
    assert replay.bytes_per_call(plan, 8, 4) == weights / 2 + io == 102_400


def test_expected_active_experts() -> None:
    assert replay.expected_active_experts(32, 4, 32) == pytest.approx(32 * (1 - (1 - 4 / 32) ** 32))
    assert replay.expected_active_experts(32, 4, 1) == 4
    assert replay.expected_active_experts(8, 8, 5) == 8


def test_roofline_arithmetic() -> None:
    flops, nbytes = 2_415_919_104, 79_691_776
    ideal = replay.roofline_us(flops, nbytes, 708, 5.3)
    assert ideal == pytest.approx(max(flops / 708e12, nbytes / 5.3e12) * 1e6) == pytest.approx(15.0362, rel=1e-4)
    assert replay.pct_of(ideal, 156.75) == pytest.approx(100 * ideal / 156.75)
    assert replay.roofline_us(flops, nbytes, None, 5.3) is None  # FLOPs but no compute peak: no roofline
    assert replay.roofline_us(0, 1e6, None, 1.0) == pytest.approx(1.0)
    case = replay.parse_case(make_case(1, "down", "mxfp4"), 1, {})
    figures = replay.figures(case, 50.0, {"device": "x", "tflops": 1000.0, "tbs": 4.0, "source": "given"})
    assert figures["tflops"] == pytest.approx(case.spec_flops / 50e6)
    assert figures["tbs"] == pytest.approx(1_000_000 / 50e6)
    assert figures["trace"]["ratio"] == pytest.approx(0.5)
    assert figures["roofline"]["pct"] == pytest.approx(
        100 * max(case.spec_flops / 708e6, 1e6 / 5.3e6) / 50.0)
    assert figures["local_roofline"]["roofline_us"] == pytest.approx(max(case.spec_flops / 1e9, 1e6 / 4e6))


def test_datasheet_table() -> None:
    assert replay.datasheet_peaks("NVIDIA H100 80GB HBM3")[0] == "H100 SXM"
    assert replay.datasheet_peaks("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert replay.datasheet_peaks("NVIDIA H200")[2] == 4.8
    assert replay.datasheet_peaks("AMD Instinct MI300X")[1]["bf16"] == pytest.approx(1307.4)
    assert replay.datasheet_peaks("AMD Instinct MI325X")[2] == 6.0
    assert replay.datasheet_peaks("cpu") is None
    args = argparse.Namespace(peak_tflops=None, peak_tbs=None)
    case = replay.parse_case(make_case(1, "down", "bf16"), 1, {})
    assert replay.local_peaks(args, "NVIDIA H200", case)["source"] == "datasheet"
    assert replay.local_peaks(args, "cpu", case) is None
    given_peaks = replay.local_peaks(argparse.Namespace(peak_tflops=500.0, peak_tbs=2.0), "cpu", case)
    assert given_peaks == {"device": "cpu", "tflops": 500.0, "tbs": 2.0, "source": "given"}


routing_shapes = st.integers(1, 64).flatmap(
    lambda E: st.tuples(st.integers(1, 80), st.just(E), st.integers(1, E), st.integers(0, 2**31)))


@settings(max_examples=80, deadline=None)
@given(shape=routing_shapes)
def test_uniform_routing_picks_topk_distinct_experts(shape: tuple[int, int, int, int]) -> None:
    M, E, k, seed = shape
    ids, gates = replay.make_routing("uniform", M, E, k, seed)
    assert len(ids) == M and all(len(row) == k == len(set(row)) for row in ids)
    assert all(0 <= e < E for row in ids for e in row)
    assert all(len(g) == k and all(w > 0 for w in g) and math.isclose(sum(g), 1.0) for g in gates)
    assert replay.make_routing("uniform", M, E, k, seed) == (ids, gates)


@settings(max_examples=80, deadline=None)
@given(shape=routing_shapes)
def test_balanced_routing_counts_within_one(shape: tuple[int, int, int, int]) -> None:
    M, E, k, seed = shape
    ids, _ = replay.make_routing("balanced", M, E, k, seed)
    counts = replay.expert_counts(ids, E)
    assert max(counts) - min(counts) <= 1 and sum(counts) == M * k
    assert all(len(set(row)) == k for row in ids)


@settings(max_examples=60, deadline=None)
@given(shape=routing_shapes, s=st.floats(0.0, 3.0))
def test_skewed_routing_picks_distinct_experts(shape: tuple[int, int, int, int], s: float) -> None:
    M, E, k, seed = shape
    ids, _ = replay.make_routing("skewed", M, E, k, seed, zipf=s)
    assert all(len(row) == k == len(set(row)) and all(0 <= e < E for e in row) for row in ids)


def test_skewed_routing_has_a_hot_expert() -> None:
    M, E, k = 512, 32, 2
    skewed = max(replay.expert_counts(replay.make_routing("skewed", M, E, k, 7, zipf=1.2)[0], E))
    uniform = [max(replay.expert_counts(replay.make_routing("uniform", M, E, k, s)[0], E)) for s in range(20)]
    assert skewed > sum(uniform) / len(uniform)
    probabilities = replay.zipf_probabilities(E, 1.2, __import__("random").Random(0))
    assert math.isclose(sum(probabilities), 1.0)
    ranked = sorted(probabilities, reverse=True)
    assert ranked[0] / ranked[1] == pytest.approx(2 ** 1.2)


def test_routing_summary() -> None:
    summary = replay.routing_summary([[0, 1], [1, 2], [1, 3]], 5)
    assert summary == {"active_experts": 4, "experts": 5, "min_tokens": 0, "mean_tokens": 1.2, "max_tokens": 3}


def test_select_backend_without_torch() -> None:
    case = replay.parse_case(make_case(1, "up", "mxfp4", backend="torch"), 1, {})
    assert replay.select_backend("auto", case) == ("torch", None)
    case.backend = "tensorrt"
    backend, note = replay.select_backend("auto", case)
    assert backend == "torch" and "not one this script drives" in note
    if importlib.util.find_spec("aiter") is None:
        assert replay.select_backend("aiter", case)[1] == "aiter is not importable here; using torch"
    assert "mxfp4" in replay.library_supports("vllm", case)
    assert "bf16/fp16" in replay.library_supports("aiter", case)
    assert replay.whole_layer_note("vllm", case) == "vllm times the whole layer, not only the up stage"


# --- with PyTorch: the reference backend against a dense per-token loop ---------------------


TINY = {"M": 5, "K": 64, "N": 32, "E": 4, "topk": 2}
REFERENCE_CASES = [
    # (role, weights, activation dtype, gated, fused activation, function, extra weight keys, tolerance)
    ("fused", "bf16", "fp32", True, False, "swiglu", {}, 1e-5),
    ("fused", "bf16", "bf16", True, False, "silu", {}, 3e-2),
    ("fused", "mxfp4", "fp32", True, False, "swiglu", {"block": [1, 32]}, 1e-5),
    ("fused", "int4", "fp32", True, False, "silu", {"block": [1, 16], "zero_points": True}, 1e-5),
    ("fused", "fp8", "fp32", False, False, "gelu", {}, 1e-5),
    ("up", "fp8_block", "fp32", True, True, "swiglu", {"block": [16, 16]}, 1e-5),
    ("up", "int4", "fp32", True, False, "silu", {"block": [1, 32], "zero_points": False}, 1e-5),
    ("down", "mxfp4", "fp32", True, False, "swiglu", {"block": [1, 32]}, 1e-5),
    ("down", "bf16", "bf16", False, False, "gelu", {}, 3e-2),
    ("down", "mxfp4", "bf16", True, False, "swiglu", {"block": [1, 32]}, 3e-2),
    ("up", "int4", "fp16", True, False, "silu", {"block": [1, 48], "zero_points": True}, 1e-2),  # blocks cut K
]


def tiny_problem(torch: Any, role: str, wfmt: str, act: str, gated: bool, fused: bool, fn: str,
                 extra: dict[str, Any], routing: str = "uniform") -> Any:
    raw = make_case(1, role, wfmt, act_dtype=act, gated=gated, act_fused=fused, function=fn, **TINY, **extra)
    case = replay.parse_case(raw, 1, {})
    ids, gates = replay.make_routing(routing, case.M, case.E, case.topk, 3)
    return replay.build_problem(torch, case, ids, gates, torch.device("cpu"), seed=3)


@pytest.mark.parametrize("role, wfmt, act, gated, fused, fn, extra, tol", REFERENCE_CASES)
@pytest.mark.parametrize("routing", ["uniform", "skewed", "balanced"])
def test_reference_equals_dense_loop(role: str, wfmt: str, act: str, gated: bool, fused: bool, fn: str,
                                     extra: dict[str, Any], tol: float, routing: str) -> None:
    torch = pytest.importorskip("torch")
    p = tiny_problem(torch, role, wfmt, act, gated, fused, fn, extra, routing)
    check = replay.check_reference(torch, p)
    assert check["tokens_checked"] == 5
    assert check["max_rel_err"] < tol
    assert p.out.abs().max().item() > 0


def test_dequantisation_matches_a_python_decoding() -> None:
    torch = pytest.importorskip("torch")
    p = tiny_problem(torch, "up", "mxfp4", "fp32", True, False, "silu", {"block": [1, 32]})
    q, scale, got = p.w1.t["w1"][1].tolist(), p.w1.t["w1_scale"][1].tolist(), p.w1.expert(1)
    for r, c in [(0, 0), (0, 1), (5, 33), (63, 63), (40, 10)]:
        byte = q[r][c // 2]
        code = byte & 15 if c % 2 == 0 else byte >> 4
        assert got[r, c].item() == replay.E2M1[code] * 2.0 ** (scale[r][c // 32] - 127)
    p = tiny_problem(torch, "up", "int4", "fp32", True, False, "silu", {"block": [1, 16], "zero_points": True})
    q, s, z, got = (p.w1.t["w1"][2].tolist(), p.w1.t["w1_scale"][2].float().tolist(),
                    p.w1.t["w1_zeros"][2].tolist(), p.w1.expert(2))
    for r, c in [(0, 0), (1, 17), (2, 63), (63, 30), (33, 1)]:
        code = q[r][c // 2] & 15 if c % 2 == 0 else q[r][c // 2] >> 4
        zbyte = z[r // 2][c // 16]
        zero = zbyte & 15 if r % 2 == 0 else zbyte >> 4
        assert got[r, c].item() == pytest.approx((code - zero) * s[r][c // 16], rel=1e-6)
    for block in (16, 24):  # 24 does not tile the 64x64 matrix: the scales are expanded instead
        p = tiny_problem(torch, "up", "fp8_block", "fp32", True, False, "silu", {"block": [block, block]})
        q, s, got = p.w1.t["w1"][0].float(), p.w1.t["w1_scale"][0], p.w1.expert(0)
        assert tuple(s.shape) == (-(-64 // block),) * 2
        for r, c in [(0, 0), (17, 40), (63, 63), (23, 24)]:
            assert got[r, c].item() == pytest.approx(q[r, c].item() * s[r // block, c // block].item(), rel=1e-6)


def test_activation_is_silu_of_gate_times_up() -> None:
    torch = pytest.importorskip("torch")
    h = torch.tensor([[1.0, -2.0, 3.0, 4.0]])
    case = replay.parse_case(make_case(1, "up", "bf16", N=2, function="swiglu"), 1, {})
    silu = torch.nn.functional.silu
    assert torch.equal(replay.activate(torch, h, case), silu(h[:, :2]) * h[:, 2:])
    case = replay.parse_case(make_case(1, "up", "bf16", N=2, function="gelu"), 1, {})
    assert torch.equal(replay.activate(torch, h, case), torch.nn.functional.gelu(h[:, :2]) * h[:, 2:])
    case = replay.parse_case(make_case(1, "up", "bf16", N=4, gated=False, function="silu"), 1, {})
    assert torch.equal(replay.activate(torch, h, case), silu(h))


def test_stored_tensors_have_the_planned_bytes() -> None:
    torch = pytest.importorskip("torch")
    for wfmt, extra in [("mxfp4", {"block": [1, 32]}), ("int4", {"block": [1, 16], "zero_points": True}),
                        ("fp8_block", {"block": [16, 16]}), ("bf16", {})]:
        p = tiny_problem(torch, "fused", wfmt, "bf16", True, False, "silu", extra)
        plan = {t.name: t for t in replay.tensor_plan(p.case)}
        for name, tensor in {**p.w1.t, **p.w2.t}.items():
            assert tensor.numel() * tensor.element_size() == plan[name].nbytes, (wfmt, name)
            assert tuple(tensor.shape) == plan[name].shape


def test_fp8_stand_in_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.delattr(torch, "float8_e4m3fn")
    p = tiny_problem(torch, "fused", "fp8", "fp32", True, False, "silu", {})
    assert p.w1.q.dtype == torch.bfloat16
    assert any("stand-in" in n and "bytes differ" in n for n in p.notes)
    assert replay.check_reference(torch, p)["max_rel_err"] < 1e-5


def run_args(**overrides: Any) -> argparse.Namespace:
    args = dict(routing="uniform", seed=0, zipf=1.2, backend="auto", warmup=1, iters=2, check=True, graph=False,
                no_flush=True, peak_tflops=None, peak_tbs=None)
    args.update(overrides)
    return argparse.Namespace(**args)


def test_library_failure_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    case = replay.parse_case(make_case(1, "up", "bf16", **TINY), 1, {})
    monkeypatch.setattr(replay, "select_backend", lambda requested, c: ("vllm", None))

    def broken(torch: Any, p: Any) -> Any:
        raise TypeError("fused_experts() got an unexpected keyword argument")

    monkeypatch.setitem(replay.RUNNERS, "vllm", broken)
    result = replay.run_case(torch, case, run_args(), torch.device("cpu"), "cpu")
    assert result["backend"] == "torch"
    assert any("vllm backend failed (TypeError" in n for n in result["notes"])
    assert result["check"]["max_rel_err"] < 3e-2

    seen = {}

    def fake(torch: Any, p: Any) -> Any:
        seen["stage"], seen["w2"] = p.stage, p.w2
        return lambda: p.x.sum()

    monkeypatch.setitem(replay.RUNNERS, "vllm", fake)
    result = replay.run_case(torch, case, run_args(check=False), torch.device("cpu"), "cpu")
    assert result["backend"] == "vllm" and seen["stage"] == "fused" and seen["w2"] is not None
    assert "vllm times the whole layer, not only the up stage" in result["notes"]


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules or not getattr(sys.modules[sub], "_fake", False):
            module = types.ModuleType(sub)
            module._fake = True  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, sub, module)
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


def test_vllm_runner_passes_the_documented_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    calls: list[dict[str, Any]] = []

    def fused_experts(hidden_states, w1, w2, topk_weights, topk_ids, inplace=False, activation="silu",
                      apply_router_weight_on_input=False, global_num_experts=-1, expert_map=None,
                      quant_config=None, allow_deep_gemm=False):
        calls.append(dict(x=hidden_states, w1=w1, w2=w2, ids=topk_ids, act=activation, qc=quant_config))
        return hidden_states

    def int4_config(w1_scale, w2_scale, w1_zp, w2_zp, block_shape=None):
        return {"w1_scale": w1_scale, "w1_zp": w1_zp, "block_shape": block_shape}

    fake_module(monkeypatch, "vllm.model_executor.layers.fused_moe.fused_moe", fused_experts=fused_experts)
    fake_module(monkeypatch, "vllm.model_executor.layers.fused_moe.config", int4_w4a16_moe_quant_config=int4_config)
    sys.modules["vllm.model_executor.layers.fused_moe"].config = sys.modules[
        "vllm.model_executor.layers.fused_moe.config"]
    p = tiny_problem(torch, "fused", "int4", "bf16", True, False, "swiglu", {"block": [1, 16], "zero_points": True})
    replay.vllm_runner(torch, p)()
    call = calls[0]
    assert tuple(call["w1"].shape) == (4, 64, 32) and tuple(call["w2"].shape) == (4, 64, 16)
    assert call["act"] == "silu" and call["qc"]["block_shape"] == [0, 16]
    assert tuple(call["qc"]["w1_zp"].shape) == (4, 32, 4)


def test_sglang_runner_builds_topk_output_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from dataclasses import dataclass
    from typing import NamedTuple, Optional

    class StandardTopKOutput(NamedTuple):
        topk_weights: Any
        topk_ids: Any
        router_logits: Any

    @dataclass
    class MoeRunnerConfig:
        num_experts: Optional[int] = None
        top_k: Optional[int] = None
        activation: str = "silu"
        is_gated: bool = True
        inplace: bool = True

    calls: list[dict[str, Any]] = []

    def fused_experts(hidden_states, w1, w2, topk_output, moe_runner_config, b1=None, b2=None,
                      use_fp8_w8a8=False, use_int4_w4a16=False, w1_scale=None, w2_scale=None,
                      w1_zp=None, w2_zp=None, block_shape=None):
        calls.append(dict(topk=topk_output, cfg=moe_runner_config, fp8=use_fp8_w8a8, block=block_shape,
                          w1_scale=w1_scale))
        return hidden_states

    fake_module(monkeypatch, "sglang.srt.layers.moe.fused_moe_triton", fused_experts=fused_experts)
    fake_module(monkeypatch, "sglang.srt.layers.moe.moe_runner", MoeRunnerConfig=MoeRunnerConfig)
    fake_module(monkeypatch, "sglang.srt.layers.moe.topk", StandardTopKOutput=StandardTopKOutput)
    p = tiny_problem(torch, "down", "fp8_block", "bf16", False, False, "gelu", {"block": [16, 16]})
    p = replay.build_problem(torch, p.case, p.ids, p.gates, torch.device("cpu"), stage="fused")
    replay.sglang_runner(torch, p)()
    call = calls[0]
    assert call["cfg"] == MoeRunnerConfig(num_experts=4, top_k=2, activation="gelu", is_gated=False, inplace=False)
    assert call["fp8"] is True and call["block"] == [16, 16] and tuple(call["w1_scale"].shape) == (4, 2, 4)
    assert call["topk"].topk_ids.dtype == torch.int32 and tuple(call["topk"].router_logits.shape) == (5, 4)


def test_cpu_run_as_a_command(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = write_spec(tmp_path, [make_case(1, "fused", "bf16", **TINY),
                                 make_case(2, "down", "mxfp4", block=[1, 32], **TINY),
                                 make_case(3, "up", "int4", block=[1, 32], zero_points=True, act_fused=True, **TINY)])
    done = run_script("--spec", str(path), "--device", "cpu", "--iters", "3", "--warmup", "1", "--check", "--json",
                      "--peak-tflops", "10", "--peak-tbs", "0.1", "--routing", "skewed")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["mode"] == "run" and doc["device"] == "cpu"
    for result in doc["cases"]:
        timing = result["timing"]
        assert timing["iters"] == 3 and timing["mean_us"] > 0 and timing["method"] == "perf_counter"
        assert result["backend"] == "torch" and result["check"]["max_rel_err"] < 3e-2
        assert result["trace"]["ratio"] == pytest.approx(timing["mean_us"] / 100.0)
        assert result["local_roofline"]["source"] == "given"
        assert result["roofline"]["pct"] is not None and result["routing"]["kind"] == "skewed"
    text = run_script("--spec", str(path), "--device", "cpu", "--iters", "3", "--case", "2")
    assert text.returncode == 0, text.stderr
    for label in ("backend     torch", "measured    mean", "throughput", "trace       mean 100.00 us",
                  "roofline    MI300X (708 TFLOP/s, 5.3 TB/s)"):
        assert label in text.stdout


def test_cuda_device_missing_exits_2(spec_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = run_script("--spec", str(spec_path), "--case", "1")
    assert done.returncode == 2 and "torch.cuda.is_available() is False" in done.stderr
