"""The replay's --compare plan, the faithful case fields, and the script's own hardening, all without PyTorch.

The numbers here are the spec's own shapes: a plan needs no GPU. Timing
the plan needs PyTorch and a GPU (benchmarks/device_replay_check.sh).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.replay.script import backends, casespec, cli, routing
from jarvis_moe.run import analyse
from samples import FIXTURES, REAL_H200
from test_replay_script import SCRIPT, make_case, run_script, write_spec

GOLDEN = Path(__file__).parent / "golden"


def plan(spec: Path, *args: str) -> dict:
    done = run_script("--dry-run", "--compare", "--json", "--spec", str(spec), *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("spec", sorted(GOLDEN.glob("*/category_data/*_replay.json")), ids=lambda p: p.parts[-3])
def test_every_golden_case_plans_at_least_two_runnable_backends_without_torch(spec):
    for case in plan(spec)["cases"]:
        runnable = [row["backend"] for row in case["compare"] if row["runs"]]
        assert len(runnable) >= 2 and "grouped" in runnable, (case["op"], case["compare"])


def test_triton_family_bf16_cases_plan_the_bundled_kernel_and_others_the_reference(tmp_path):
    spec = write_spec(tmp_path, [make_case(1, "down", "bf16"), make_case(2, "down", "mxfp4", block=[1, 32]),
                                 dict(make_case(3, "up", "bf16"), family="aiter_ck_2stage_up", library="CK")])
    rows = {c["case"]: {r["backend"]: r["runs"] for r in c["compare"]} for c in plan(spec)["cases"]}
    assert rows[1] == {"grouped": True, "triton": True}
    assert rows[2] == {"grouped": True, "triton": False, "torch": True}  # the bundled kernel takes no mxfp4
    assert rows[3] == {"grouped": True, "torch": True}


def test_a_custom_backend_is_planned_beside_the_others_and_a_bad_one_is_refused(tmp_path):
    spec = write_spec(tmp_path, [make_case(1, "down", "bf16")])
    backends_planned = [r["backend"] for r in plan(spec, "--backend", "mykernels:moe_down")["cases"][0]["compare"]]
    assert backends_planned == ["grouped", "triton", "mykernels:moe_down"]
    bad = run_script("--dry-run", "--spec", str(spec), "--backend", "no-colon")
    assert bad.returncode == 2 and "module:function" in bad.stderr and "Traceback" not in bad.stderr


def test_the_h200_down_case_writes_one_row_per_token_and_expert_and_routes_among_the_implied_experts(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / REAL_H200, out)
    analyse(out, category="moe_unfused", options={"roofline_plot": False})
    spec = out / "category_data" / "moe_unfused_replay.json"
    case = plan(spec, "--routing", "trace")["cases"][0]
    out_tensor = next(t for t in case["tensors"] if t["name"] == "out")
    assert out_tensor["shape"] == [32, 2, 4096]  # SGLang's down launch writes (M, top-k, K)
    # The golden spec: call durations imply 3 to 6 of 8 experts; the replay routes among round(4.5) = 4.
    assert case["routing"]["active_experts"] == 4 and "routed among 4 of 8 experts" in case["notes"][0]
    uniform = plan(spec)["cases"][0]
    assert uniform["routing"]["active_experts"] == 8  # 32 tokens top-2 over 8 experts touch all of them


def test_routing_trace_without_an_implied_count_routes_uniformly_and_says_so(tmp_path):
    spec = write_spec(tmp_path, [make_case(1, "down", "bf16")])
    case = plan(spec, "--routing", "trace")["cases"][0]
    assert "no implied expert count" in case["notes"][0] and case["routing"]["kind"] == "trace"


@given(st.integers(1, 64), st.integers(1, 8), st.integers(1, 40), st.floats(0.0, 3.0), st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_skewed_and_trace_routing_pick_distinct_experts(M, topk, E, s, seed):
    E = max(E, topk)
    ids, gates = routing.make_routing("skewed", M, E, topk, seed, s)
    assert all(len(set(row)) == topk and all(0 <= e < E for e in row) for row in ids)
    hot = max(topk, E // 2)
    ids, _ = routing.make_routing("trace", M, E, topk, seed, s, hot)
    assert len({e for row in ids for e in row}) <= hot and all(len(set(row)) == topk for row in ids)
    assert all(abs(sum(g) - 1.0) < 1e-9 for g in gates)


def test_implausible_shapes_are_refused_with_the_cap_and_big_routings_are_not_drawn(tmp_path):
    for key, value in (("M", 10**9), ("E", 2**52), ("K", 2**21)):
        case = make_case(1, "down", "bf16")
        case["shape"][key] = value
        done = run_script("--dry-run", "--spec", str(write_spec(tmp_path, [case])))
        assert done.returncode == 2 and f"shape.{key} = {value} is implausible" in done.stderr, done.stderr
    big = make_case(1, "down", "bf16", M=1 << 24, topk=8, E=8)
    done = run_script("--dry-run", "--spec", str(write_spec(tmp_path, [big])))
    assert done.returncode == 0 and "routing not drawn" in done.stdout  # 2^27 pairs, above the 2^22 drawn


def test_list_strips_control_and_bidi_characters_from_everything_it_prints(tmp_path):
    case = make_case(1, "down", "bf16")
    case["op"] = "op\x1b[2J\u202ename\nFORGED 2"
    spec = write_spec(tmp_path, [case], platform={"name": "H200\x1b]0;title\x07\r\nFORGED"},
                      category="moe\u2066_unfused")
    done = run_script("--list", "--spec", str(spec))
    assert done.returncode == 0
    assert not [ch for ch in done.stdout if (ord(ch) < 32 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F
                or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"]
    assert len(done.stdout.splitlines()) == 2  # the header and one case: no forged lines
    assert "op[2Jname FORGED 2" in done.stdout and "H200]0;title FORGED" in done.stdout


def test_fp32_weights_and_unknown_elements_give_a_spec_the_script_accepts(tmp_path):
    spec = write_spec(tmp_path, [make_case(1, "down", "fp32")])
    case = plan(spec)["cases"][0]
    w2 = next(t for t in case["tensors"] if t["name"] == "w2")
    assert w2["dtype"] == "fp32" and w2["bytes"] == 8 * 256 * 128 * 4  # E x K x N x 4 bytes


def test_a_closed_pipe_ends_quietly():
    spec_dir = Path(SCRIPT).parent
    spec = write_spec(spec_dir, [make_case(n, "down", "bf16") for n in range(1, 400)], name="pipe.json")
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--list", "--json", "--spec", str(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=30) in (0, 141) and "Traceback" not in err, err


def test_ctrl_c_ends_with_130_and_no_traceback(monkeypatch):
    def interrupted(argv=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "main", interrupted)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.entry() == 130
    assert err.getvalue() == "interrupted\n"


def test_custom_backend_names_are_parsed_strictly():
    assert backends.custom_backend("pkg.mod:run_moe") == ("pkg.mod", "run_moe")
    assert backends.custom_backend("pkg.mod:") is None and backends.custom_backend("torch") is None
    assert backends.custom_backend("m:not-a-name") is None
    assert casespec.clean("a\tb\x00c\u202e") == "a bc"


def test_compare_times_the_baselines_and_a_custom_kernel_on_cpu(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "mykernels.py").write_text(
        "def moe_down(case, tensors):\n"
        "    assert case['role'] == 'down' and tensors['out'].shape == (case['M'], case['K'])\n"
        "    return lambda: tensors['out'].zero_()\n", encoding="utf-8")
    spec = write_spec(tmp_path, [make_case(1, "down", "fp32", act_dtype="fp32", M=8, K=64, N=32, E=4)])
    done = subprocess.run([sys.executable, str(SCRIPT), "--spec", str(spec), "--compare", "--json", "--check",
                           "--device", "cpu", "--iters", "2", "--warmup", "0", "--backend", "mykernels:moe_down"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env={"TRITON_INTERPRET": "1",
                          "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    rows = {r["backend"]: r for r in json.loads(done.stdout)["cases"][0]["backends"]}
    assert list(rows) == ["grouped", "triton", "mykernels:moe_down"]
    assert rows["grouped"]["check"]["max_rel_err"] < 1e-5  # fp32 against the dense per-token loop
    assert rows["mykernels:moe_down"]["timing"]["iters"] == 2
    if rows["triton"]["timing"] is not None:  # runs where Triton's interpreter is installed
        assert rows["triton"]["check"]["max_rel_err"] < 1e-5


def test_fp8_block_cases_quantise_their_input_per_128_columns_and_report_its_time(tmp_path):
    torch = pytest.importorskip("torch")
    from jarvis_moe.replay.script.weights import quantise_groups
    x = torch.randn(5, 300)
    q, scale = quantise_groups(torch, x, 128)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (5, 3, 1)  # ceil(300 / 128) groups per row
    back = (q.float() * scale).view(5, -1)[:, :300]
    assert ((back - x).abs() <= x.abs() * 2 ** -4 + 1e-6).all()  # e4m3: 3 mantissa bits, half-ulp 1/16
    case = make_case(1, "down", "fp8_block", block=[128, 128], M=8, K=256, N=256, E=4)
    case["activation"]["quantised"] = {"dtype": "fp8", "group": 128}
    spec = write_spec(tmp_path, [case])
    done = run_script("--spec", str(spec), "--compare", "--json", "--check", "--device", "cpu", "--iters", "2",
                      "--warmup", "0")
    assert done.returncode == 0, done.stderr
    rows = {r["backend"]: r for r in json.loads(done.stdout)["cases"][0]["backends"]}
    assert rows["torch"]["quant_us"] > 0 and rows["grouped"]["quant_us"] > 0
    assert rows["torch"]["check"]["max_rel_err"] < 2e-2 and rows["grouped"]["check"]["max_rel_err"] < 2e-2
