"""Trace strings of analysis §2, reproduced exactly, and hostile names kept inert."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from jarvis_moe.literals import parse_call_stack, parse_dims, parse_kernel_details, parse_types
from jarvis_moe.structure import (
    KERNEL_LIBRARY_RULES,
    OP_NAME_LIBRARY_RULES,
    collapse_chain,
    detect_library,
    format_args,
    kernel_name_display,
    kernel_names,
    launcher_frames,
    launcher_path,
    layer_structure,
    module_chain,
    short_dtype,
)

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHETIC = ("synthetic-mixtral-decode-bf16", "synthetic-mixtral-decode-bf16-vs-faster")


def _rows(folder: str, category: str) -> list[dict[str, str]]:
    path = FIXTURES / folder / "category_data" / f"{category}_ops.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _derived(row: dict[str, str]) -> dict[str, object]:
    """Every string this module derives for one CSV row, as the metrics engine would."""
    stack = parse_call_stack(row["call_stack_full"])
    names = kernel_names(stack, parse_kernel_details(row["kernel_details_summary"]))
    library = detect_library(row["name"], names)
    chain = module_chain(stack)
    kernel_name, kernel_name_trunc = kernel_name_display(names)
    return {
        "args": format_args(parse_dims(row["Input Dims"]), parse_types(row["Input type"])),
        "library": library,
        "launcher_path": launcher_path(row["entry_point"], chain, library),
        "kernel_name": kernel_name,
        "kernel_name_trunc": kernel_name_trunc,
        "module_chain": chain,
    }


# --- parity with the rest of the pipeline --------------------------------------------


@pytest.mark.parametrize("folder", SYNTHETIC)
def test_fixture_strings_match_the_expected_metrics(folder):
    row = _rows(folder, "moe_fused")[0]
    expected = _json(FIXTURES / folder / "expected" / "moe_fused_metrics.json")["operations"][0]
    derived = _derived(row)
    for key, value in derived.items():
        assert value == expected[key], key


def test_fixture_args_spell_out_every_input():
    row = _rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
    assert _derived(row)["args"] == (
        "(16,4096) bf16<br>(8,28672,4096) bf16<br>(8,4096,14336) bf16<br>(16,2) fp32<br>(16,2) Int"
    )


@pytest.mark.parametrize("folder", ["gpt-oss-20b-mi300x-decode-bs32", "gpt-oss-20b-mi300x-prefill-bs8192"])
def test_gpt_oss_rows(folder):
    for row in _rows(folder, "moe_unfused"):
        derived = _derived(row)
        assert derived["launcher_path"] == "triton/runtime/jit.py(574): run"
        assert derived["library"] == "Triton"
        assert str(derived["kernel_name"]).startswith("_matmul_ogs_NNT_bf16xbf16xmxfp4_")
        assert derived["kernel_name_trunc"] == derived["kernel_name"]
        assert derived["module_chain"] == ["GptOssForCausalLM", "GraphModule"] * 2
        tokens = parse_dims(row["Input Dims"])[0][0]  # type: ignore[index]
        assert derived["args"] == f"({tokens},3072) bf16<br>({tokens},32) bf16"


# --- dtypes and args --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("c10::BFloat16", "bf16"), ("C10::BFLOAT16", "bf16"), ("c10::Half", "fp16"),
        ("float", "fp32"), ("Float", "fp32"), ("double", "fp64"),
        ("c10::Float8_e4m3fnuz", "fp8"), ("c10::Float8_e4m3fn", "fp8"), ("unsigned char", "fp8"),
        ("FP8", "fp8"), ("c10::Float4_e2m1fn_x2", "fp4"), ("mxfp4", "fp4"), ("FP4", "fp4"),
        ("Int", "Int"), ("BFloat16", "BFloat16"), ("c10::Float8_e5m2", "c10::Float8_e5m2"),
        ("", ""), (None, ""),
    ],
)
def test_short_dtype(name, short):
    assert short_dtype(name) == short


def test_args_keep_the_comma_of_one_dimensional_shapes():
    assert format_args(((128,), (4, 8)), ("c10::Half", "float")) == "(128,) fp16<br>(4,8) fp32"


def test_args_drop_shapeless_inputs_without_a_type():
    dims = ((16, 4096), (), None, (), ())
    types = ("c10::BFloat16", "", "Scalar", "Int", None)
    assert format_args(dims, types) == "(16,4096) bf16<br>() Int"


def test_args_tolerate_length_mismatch_and_missing_cells():
    assert format_args(((2, 3), (4,)), ("float",)) == "(2,3) fp32<br>(4,)"
    assert format_args(None, None) == ""
    # A shapeless input with a real dtype (a scalar argument) stays.
    assert format_args((), ("float",)) == "() fp32"


def test_args_make_hostile_dtype_names_inert():
    text = format_args(((1, 2), (3,)), ("<!-- x -->", "a|b\nc"))
    assert text == "(1,2) &lt;!-- x --&gt;<br>(3,) a|b c"
    assert "\n" not in text and "<!--" not in text


# --- library --------------------------------------------------------------------------------


def test_rule_tables_are_plain_ordered_substring_tests():
    for rules in (OP_NAME_LIBRARY_RULES, KERNEL_LIBRARY_RULES):
        assert isinstance(rules, tuple)
        for substring, library, case_sensitive in rules:
            assert isinstance(substring, str) and substring
            assert isinstance(library, str) and library
            assert isinstance(case_sensitive, bool)
            if not case_sensitive:
                assert substring == substring.lower()
    assert [r.substring for r in OP_NAME_LIBRARY_RULES[:5]] == [
        "aiter::", "rocm_aiter", "fbgemm", "miopen", "triton"
    ]


@pytest.mark.parametrize(
    ("op_name", "kernels", "library"),
    [
        ("pseudo_op::moe_triton_unfused_up", ["_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"], "Triton"),
        ("pseudo_op::moe_aiter_fused_1stage", ["aiter::fmoe_bf16_g1u1_subGU_256_silu"], "AITER"),
        ("vllm::rocm_aiter_fused_moe", ["Cijk_Alik_Bljk"], "AITER"),
        ("aiter::fmoe", [], "AITER"),
        ("fbgemm::grouped_gemm", [], "FBGEMM"),
        ("MIOpen::conv", [], "MIOpen"),
        ("vllm::moe_forward", ["void ck_tile::kentry<FusedMoeGemm>"], "CK"),
        ("x", ["FmhaFwdKernel"], "CK"),
        ("x", ["FmhaBwdKernel"], "CK"),
        ("x", ["Cijk_Ailk_Bljk_BBS_BH"], "Tensile"),
        ("x", ["wvSplitK_hf_"], "rocBLAS"),
        ("x", ["splitKreduce_kernel"], "rocBLAS"),
        ("x", ["void rocprim::detail::sort"], "rocPRIM"),
        ("x", ["triton_poi_fused_0"], "Triton"),
        ("x", ["void at::native::vectorized_elementwise_kernel"], "PyTorch Native"),
        ("x", ["void ck::kernel_moe_gemm<>"], "CK"),
        ("x", ["void flashinfer::cutlass_fused_moe<>"], "FlashInfer"),
        ("x", ["void tensorrt_llm::kernels::cutlass_kernels::moe_gemm"], "TensorRT-LLM"),
        ("x", ["trtllm_fp4_block_scale_moe"], "TensorRT-LLM"),
        ("x", ["void deep_gemm::fp8_gemm_kernel<>"], "DeepGEMM"),
        ("x", ["void marlin_moe_wna16::Marlin<>"], "Marlin"),
        ("x", ["void cutlass::Kernel2<cutlass_80_tensorop_gemm>"], "CUTLASS"),
        ("x", ["sm90_xmma_gemm_bf16bf16"], "cuBLAS"),
        ("x", ["nvjet_tst_128x64"], "cuBLAS"),
        ("x", ["fused_moe_kernel"], "Triton"),
        ("x", ["void vllm::moe::topkGatingSoftmax<>"], "vLLM"),
        ("sglang::deep_gemm_moe", [], "DeepGEMM"),
        ("x", ["some_kernel", "triton_red_fused_1"], "Triton"),
        ("x", ["CIJK_upper_case", "wvsplitk"], None),
        ("x", [], None),
        (None, None, None),
    ],
)
def test_detect_library(op_name, kernels, library):
    assert detect_library(op_name, kernels or ()) == library


def test_op_name_rules_ignore_case():
    assert detect_library("pseudo_op::MOE_TRITON_X", []) == "Triton"


def test_kernel_rules_take_priority_over_kernel_order():
    # "aiter" comes before "Cijk_" in the table, whatever order the kernels ran in.
    assert detect_library("x", ["Cijk_gemm", "aiter::moe_sorting"]) == "AITER"


def test_library_matches_the_rules_applied_to_joined_kernel_names():
    # The metrics engine tests each rule against all kernel names at once.
    kernels = ["void at::native::copy", "void cutlass::Kernel2", "Cijk_x"]
    joined = " ".join(kernels)
    first = next(
        lib for sub, lib, cs in KERNEL_LIBRARY_RULES if sub in (joined if cs else joined.lower())
    )
    assert detect_library("x", kernels) == first == "Tensile"


# --- kernel names ----------------------------------------------------------------------------


def test_kernel_names_are_last_frames():
    assert kernel_names(["a", "b", "kernel"]) == ["kernel"]
    assert kernel_names([["a", "k1"], [], ["b", "k2"]]) == ["k1", "k2"]


def test_kernel_names_fall_back_to_kernel_details():
    details = [{"name": "k1"}, {"name": None}, "junk", {"count": 3}, {"name": "k2"}]
    assert kernel_names(None, details) == ["k1", "k2"]  # type: ignore[list-item]
    assert kernel_names([], [{"name": "k"}]) == ["k"]
    assert kernel_names(None, None) == []


def test_one_kernel_is_shown_by_name():
    assert kernel_name_display(["aiter::fmoe"]) == ("aiter::fmoe", "aiter::fmoe")
    assert kernel_name_display([]) == ("", "")


def test_several_kernels_are_numbered():
    assert kernel_name_display(["a", "b"]) == ("Kernel 1: a<br>Kernel 2: b", "Kernel 1: a<br>Kernel 2: b")


def test_long_kernel_names_are_cut_at_75_characters():
    exact, longer = "k" * 75, "void " + "x" * 100
    assert kernel_name_display([exact]) == (exact, exact)
    raw, short = kernel_name_display([exact, longer])
    assert raw == f"Kernel 1: {exact}<br>Kernel 2: {longer}"
    assert short == f"Kernel 1: {exact}<br>Kernel 2: {longer[:75]}..."


def test_hostile_kernel_names_stay_raw_but_display_inert():
    name = "k<!--|x-->\n<script>" + "&" * 80
    raw, short = kernel_name_display([name])
    assert raw == name
    assert "<" not in short and "\n" not in short and "-->" not in short
    # Cut before escaping: 75 raw characters, then entities, then the ellipsis.
    assert short.startswith("k&lt;!--|x--&gt; &lt;script&gt;&amp;")
    assert short.endswith("&amp;...")
    assert short.count("&amp;") == 75 - len("k<!--|x-->\n<script>")


# --- module chains, launchers -----------------------------------------------------------------


def test_module_chain_keeps_duplicates_and_flattens_sub_lists():
    stack = [["nn.Module: A", "f.py(1): g", "nn.Module: B", "k1"], ["nn.Module: A", "k2"]]
    assert module_chain(stack) == ["A", "B", "A"]
    assert module_chain(["nn.Module: ", "nn.Module:X"]) == ["X"]
    assert module_chain(None) == []


@pytest.mark.parametrize(
    ("chain", "collapsed"),
    [
        (["MoEModel", "DecoderLayer", "FusedMoE"] * 2, ["MoEModel", "DecoderLayer", "FusedMoE"]),
        (["A", "A", "B", "B", "C"], ["A", "B", "C"]),
        (["A", "B", "A", "B", "C"], ["A", "B", "C"]),
        (["A", "B", "C", "A", "B"], ["A", "B", "C"]),
        (["A", "B", "A", "C"], ["A", "B", "A", "C"]),
        (["A", "B", "A", "C", "A", "B"], ["A", "B", "A", "C"]),
        ([], []),
    ],
)
def test_collapse_chain(chain, collapsed):
    assert collapse_chain(chain) == collapsed


def test_launcher_path_prefers_the_entry_point():
    assert launcher_path("triton/runtime/jit.py(574): run", ["A"], "Triton") == "triton/runtime/jit.py(574): run"


def test_launcher_path_falls_back_to_modules_then_library():
    chain = ["Model", "Layer", "Block", "MoE"]
    assert launcher_path("Not found", chain, "AITER") == "Model > Layer > Block"
    assert launcher_path(None, chain[:2], None) == "Model > Layer"
    assert launcher_path("  ", [], "AITER") == "AITER (vendor)"
    assert launcher_path("Not found", [], None) == "Not found"


def test_launcher_path_is_display_safe():
    assert launcher_path("a.py(1): f<!--\nx", [], None) == "a.py(1): f&lt;!-- x"
    assert launcher_path(None, ["<b>", "A|B"], None) == "&lt;b&gt; > A|B"


def test_launcher_frames_of_the_fixtures():
    row = _rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
    stack = parse_call_stack(row["call_stack_full"])
    assert launcher_frames(stack) == ["vllm::moe_forward", "vllm::rocm_aiter_fused_moe"]
    row = _rows("gpt-oss-20b-mi300x-decode-bs32", "moe_unfused")[0]
    assert launcher_frames(parse_call_stack(row["call_stack_full"])) == ["vllm::moe_forward"]


def test_launcher_frames_skip_files_modules_markers_and_kernels():
    stack = [
        ["nn.Module: M", "sglang/srt/layers/moe.py(10): forward", "sglang::moe_fused_gate",
         "aten::mm", "pseudo_op::moe_x", "void at::native::kernel<float>", "aten::mm", "k::kernel"],
        ["aten::mm", "_C::topk_softmax.default", "sgl_kernel::moe::align"],
    ]
    assert launcher_frames(stack) == ["sglang::moe_fused_gate", "aten::mm", "_C::topk_softmax.default"]


# --- layer structure ------------------------------------------------------------------------------


def _mixtral_op() -> dict[str, object]:
    row = _rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
    return {"name": row["name"], "ex_uid": int(row["ex_UID"]), "time_ms": 34.932,
            "call_stack": parse_call_stack(row["call_stack_full"])}


def test_layer_structure_from_tree_data():
    tree = _json(FIXTURES / "synthetic-mixtral-decode-bf16" / "category_data" / "moe_fused_tree_data.json")
    assert layer_structure([_mixtral_op()], tree) == {
        "source": "tree_data",
        "module_chains": [{"chain": ["MoEModel", "DecoderLayer", "FusedMoE"], "signatures": 1,
                           "time_ms": 34.932}],
        "launchers": ["vllm::moe_forward", "vllm::rocm_aiter_fused_moe"],
        "signature_count": 1,
        "layer_types": ["FusedMoE"],
    }


def test_layer_structure_from_call_stacks_when_tree_data_is_missing_or_empty():
    op = _mixtral_op()
    for tree in (None, {"324": {"parent_chain": []}}, {"324": "junk"}, ["not", "a", "dict"]):
        result = layer_structure([op], tree)  # type: ignore[arg-type]
        assert result["source"] == "call_stack"
        assert result["module_chains"][0]["chain"] == ["MoEModel", "DecoderLayer", "FusedMoE"]


def test_layer_structure_matches_float_ids_to_tree_keys():
    op = {**_mixtral_op(), "ex_uid": 324.0, "call_stack": None}
    result = layer_structure([op], {"324": {"parent_chain": ["M", "L"]}})
    assert result["source"] == "tree_data" and result["layer_types"] == ["L"]


def test_layer_structure_of_the_gpt_oss_pair():
    folder = "gpt-oss-20b-mi300x-decode-bs32"
    tree = _json(FIXTURES / folder / "category_data" / "moe_unfused_tree_data.json")
    ops = [
        {"name": r["name"], "ex_uid": r["ex_UID"], "time_ms": float(r["Kernel Time (µs)_sum"]) / 1000,
         "call_stack": parse_call_stack(r["call_stack_full"])}
        for r in _rows(folder, "moe_unfused")
    ]
    result = layer_structure(ops, tree)
    assert result["source"] == "tree_data"
    assert result["module_chains"] == [
        {"chain": ["GptOssForCausalLM", "GraphModule"], "signatures": 2, "time_ms": 7.035}
    ]
    assert result["launchers"] == ["vllm::moe_forward"]
    assert result["signature_count"] == 2 and result["layer_types"] == ["GraphModule"]


def test_layer_structure_is_sorted_by_time_and_bounded():
    ops = [
        {"name": f"op{i}", "ex_uid": i, "time_ms": float(i),
         "call_stack": ["nn.Module: Model", f"nn.Module: Layer{i % 25}",
                        f"nn.Module: {'MoE' if i % 25 % 2 else 'Mlp'}", "k"]}
        for i in range(50)
    ]
    result = layer_structure(ops, None)
    assert result["signature_count"] == 50
    assert len(result["module_chains"]) == 20
    times = [c["time_ms"] for c in result["module_chains"]]
    assert times == sorted(times, reverse=True)
    assert result["module_chains"][0] == {"chain": ["Model", "Layer24", "Mlp"], "signatures": 2,
                                          "time_ms": 49.0 + 24.0}
    assert result["layer_types"] == ["Mlp", "MoE"]


def test_layer_structure_without_any_context():
    result = layer_structure([{"name": "x", "ex_uid": None, "time_ms": None, "call_stack": None}], None)
    assert result == {"source": "none", "module_chains": [], "launchers": [],
                      "signature_count": 1, "layer_types": []}
    assert layer_structure([], None)["signature_count"] == 0
