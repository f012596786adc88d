"""Trace strings of analysis §2 reproduced exactly, hostile names kept inert.

``args``, ``kernel_name``, ``launcher_path`` and ``module_chain`` come out of
the rest of the pipeline too; the fixtures' expected metrics hold its own
strings, and the engine must give the same ones from the same cells. The
dtype labels of ``args`` live in :mod:`jarvis_moe.engine.dtypes`.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from samples import FIXTURES, column_facts, fixture_rows

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.cells import parse_call_stack, parse_dims
from jarvis_moe.engine.trace_text import (
    KERNEL_TRUNC_CHARS,
    MAX_CHAINS,
    collapse_chain,
    display_text,
    format_args,
    kernel_name_display,
    launcher_frames,
    launcher_path,
    layer_structure,
    module_chain,
)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _facts(row: dict[str, str]) -> dict:
    frame = pl.DataFrame({c: [row.get(c)] for c in ("Input type", "call_stack_full", "kernel_details_summary")},
                         schema={c: pl.String for c in ("Input type", "call_stack_full", "kernel_details_summary")})
    return frame.select(column_facts(frame)).row(0, named=True)


def _derived(row: dict[str, str], library: str | None) -> dict[str, object]:
    """Every string the engine derives for one CSV row."""
    facts = _facts(row)
    chain = module_chain(parse_call_stack(row["call_stack_full"]))
    kernel_name, kernel_name_trunc = kernel_name_display(facts["kernels"])
    return {
        "args": format_args(parse_dims(row["Input Dims"]), facts["input_types"]),
        "launcher_path": launcher_path(row["entry_point"], chain, library),
        "kernel_name": kernel_name,
        "kernel_name_trunc": kernel_name_trunc,
        "module_chain": chain,
    }


def _expected_cases() -> list:
    cases = []
    for path in sorted(FIXTURES.glob("*/expected/*_metrics.json")):
        folder, category = path.parents[1].name, path.name.removesuffix("_metrics.json")
        cases.append(pytest.param(folder, category, id=folder))
    return cases


# --- parity with the rest of the pipeline --------------------------------------------


@pytest.mark.parametrize(("folder", "category"), _expected_cases())
def test_fixture_strings_match_the_expected_metrics(folder, category):
    rows = {(r["name"], r["Input Dims"]): r for r in fixture_rows(folder, category)}
    expected = _json(FIXTURES / folder / "expected" / f"{category}_metrics.json")["operations"]
    assert expected
    for op in expected:
        derived = _derived(rows[(op["name"], op["Input Dims"])], op["library"])
        # Data, never HTML-escaped: the cut names keep their '<' as the pipeline writes them.
        for key in ("args", "launcher_path", "kernel_name", "kernel_name_trunc", "module_chain"):
            assert derived[key] == op[key], (op["name"], key)


def test_fixture_args_spell_out_every_input():
    row = fixture_rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
    assert _derived(row, "AITER")["args"] == (
        "(16,4096) bf16<br>(8,28672,4096) bf16<br>(8,4096,14336) bf16<br>(16,2) fp32<br>(16,2) Int"
    )


@pytest.mark.parametrize("folder", ["gpt-oss-20b-mi300x-decode-bs32", "gpt-oss-20b-mi300x-prefill-bs8192"])
def test_gpt_oss_rows(folder):
    for row in fixture_rows(folder, "moe_unfused"):
        derived = _derived(row, "Triton")
        assert derived["launcher_path"] == "triton/runtime/jit.py(574): run"
        assert str(derived["kernel_name"]).startswith("_matmul_ogs_NNT_bf16xbf16xmxfp4_")
        assert derived["kernel_name_trunc"] == derived["kernel_name"]
        assert derived["module_chain"] == ["GptOssForCausalLM", "GraphModule"] * 2
        tokens = parse_dims(row["Input Dims"])[0][0]  # type: ignore[index]
        assert derived["args"] == f"({tokens},3072) bf16<br>({tokens},32) bf16"


# --- dtype labels (analysis §2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("c10::BFloat16", "bf16"), ("C10::BFLOAT16", "bf16"), ("c10::Half", "fp16"),
        ("float", "fp32"), ("Float", "fp32"), (" float ", "fp32"), ("double", "fp64"),
        ("c10::Float8_e4m3fnuz", "fp8"), ("c10::Float8_e4m3fn", "fp8"), ("unsigned char", "fp8"),
        ("FP8", "fp8"), ("c10::Float4_e2m1fn_x2", "fp4"), ("mxfp4", "fp4"), ("FP4", "fp4"),
        # Other names are kept as written.
        ("Int", "Int"), ("BFloat16", "BFloat16"), ("c10::Float8_e5m2", "c10::Float8_e5m2"),
        ("torch.bfloat16", "torch.bfloat16"), ("GenericList", "GenericList"), ("", ""), (None, ""),
    ],
)
def test_args_label(name, short):
    assert dtypes.args_label(name) == short


@pytest.mark.parametrize(
    ("name", "label"),
    [("c10::BFloat16", "bf16"), ("BFloat16", "bf16"), ("torch.float16", "fp16"), ("c10::Float8_e5m2", "fp8"),
     ("c10::Float8_e5m2fnuz", "fp8"), ("c10::Float4_e2m1fn_x2", "fp4"), ("unsigned char", "fp8"), ("Int", "int"),
     ("Mystery ", "Mystery"), ("", None), ("  ", None), (None, None), (3, None)],
)
def test_sentence_label(name, label):
    assert dtypes.label(name) == label


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("c10::BFloat16", 2), ("bf16", 2), ("c10::Half", 2), ("fp16", 2), ("torch.float16", 2),
        ("Float", 4), ("float", 4), ("fp32", 4), ("double", 8), ("fp64", 8),
        ("c10::Float8_e4m3fnuz", 1), ("c10::Float8_e4m3fn", 1), ("Float8_e5m2", 1), ("fp8", 1),
        ("FP4", 0.5), ("mxfp4", 0.5), ("c10::Float4_e2m1fn_x2", 0.5), ("int4", 0.5),
        ("int8", 1), ("uint8", 1), ("unsigned char", 1), ("Int", 4), ("Long", 8),
    ],
)
def test_dtype_size(name, size):
    assert dtypes.size(name) == size


@pytest.mark.parametrize("name", ["", "Scalar", "complex weirdness", None, 2])
def test_unknown_dtype_has_no_size(name):
    assert dtypes.size(name) is None and dtypes.lookup(name) is None


def test_lookup_knows_which_byte_types_may_hold_packed_four_bit_values():
    assert dtypes.lookup("unsigned char").packable  # type: ignore[union-attr]
    assert dtypes.lookup("uint8").packable  # type: ignore[union-attr]
    assert not dtypes.lookup("c10::Float8_e4m3fnuz").packable  # type: ignore[union-attr]
    assert dtypes.lookup("torch.bfloat16") == dtypes.lookup("c10::BFloat16")


# --- display text and args ------------------------------------------------------------


def test_display_text_is_one_line_never_html_escaped():
    assert display_text("a\x00b\r\nc\u2028d <&> \t ") == "ab c d <&>"
    assert display_text(None) == "" and display_text(3) == "3"


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
    # One line each, kept as the trace wrote them: the page escapes them where it prints them.
    assert text == "(1,2) <!-- x --><br>(3,) a|b c"
    assert "\n" not in text


# --- kernel names ----------------------------------------------------------------------------


def test_one_kernel_is_shown_by_name():
    assert kernel_name_display(["aiter::fmoe"]) == ("aiter::fmoe", "aiter::fmoe")
    assert kernel_name_display([]) == ("", "")


def test_several_kernels_are_numbered():
    assert kernel_name_display(["a", "b"]) == ("Kernel 1: a<br>Kernel 2: b", "Kernel 1: a<br>Kernel 2: b")


def test_long_kernel_names_are_cut_at_75_characters():
    assert KERNEL_TRUNC_CHARS == 75
    exact, longer = "k" * 75, "void " + "x" * 100
    assert kernel_name_display([exact]) == (exact, exact)
    raw, short = kernel_name_display([exact, longer])
    assert raw == f"Kernel 1: {exact}<br>Kernel 2: {longer}"
    assert short == f"Kernel 1: {exact}<br>Kernel 2: {longer[:75]}..."


def test_hostile_kernel_names_stay_raw_and_one_line():
    name = "k<!--|x-->\n<script>" + "&" * 80
    raw, short = kernel_name_display([name])
    assert raw == name
    # One line, cut to 75 characters plus "...", never HTML-escaped: the page escapes it.
    assert "\n" not in short and short == ("k<!--|x--> <script>" + "&" * 80)[:75] + "..."


# --- module chains, launchers -----------------------------------------------------------------


def test_module_chain_keeps_duplicates_and_flattens_stacks():
    stacks = [["nn.Module: A", "f.py(1): g", "nn.Module: B", "k1"], ["nn.Module: A", "k2"]]
    assert module_chain(stacks) == ["A", "B", "A"]
    assert module_chain(["nn.Module: ", "nn.Module:X", "k"]) == ["X"]  # a flat stack
    assert module_chain([["nn.Module: ", "nn.Module:X", "k"]]) == ["X"]
    assert module_chain(None) == [] and module_chain([]) == []


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


def test_launcher_path_is_one_line_data():
    assert launcher_path("a.py(1): f<!--\nx", [], None) == "a.py(1): f<!-- x"
    assert launcher_path(None, ["<b>", "A|B"], None) == "<b> > A|B"
    assert launcher_path(None, [], "<i>") == "<i> (vendor)"


def test_launcher_frames_of_the_fixtures():
    row = fixture_rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
    assert launcher_frames(parse_call_stack(row["call_stack_full"])) == ["vllm::moe_forward",
                                                                         "vllm::rocm_aiter_fused_moe"]
    row = fixture_rows("gpt-oss-20b-mi300x-decode-bs32", "moe_unfused")[0]
    assert launcher_frames(parse_call_stack(row["call_stack_full"])) == ["vllm::moe_forward"]


def test_launcher_frames_skip_files_modules_markers_and_kernels():
    stack = ["nn.Module: M", "sglang/srt/layers/moe.py(10): forward", "sglang::moe_fused_gate",
             "aten::mm", "pseudo_op::moe_x", "void at::native::kernel<float>", "aten::mm", "k::kernel"]
    assert launcher_frames(stack) == ["sglang::moe_fused_gate", "aten::mm"]
    assert launcher_frames(None) == []


def test_a_framework_op_above_only_some_kernels_is_launched_by_the_op():
    # One stack per kernel: only the frames above every kernel launch the op.
    stacks = [["aten::mm", "sglang::moe_fused_gate", "k1"], ["aten::mm", "_C::topk_softmax.default", "k2"]]
    assert launcher_frames(stacks) == ["aten::mm"]
    # SGLang's FP8 path: shared frames, then the activation-quantisation op's
    # kernel and the fused_moe kernel; the quantisation op is a child, not a launcher.
    row = fixture_rows("fam-sglang-triton-mixtral-fp8-mi300x", "moe_unfused")[0]
    launchers = launcher_frames(parse_call_stack(row["call_stack_full"]))
    assert launchers == ["sglang_profiler::fused_moe_triton_kernels_invoke_fused_moe_kernel"]


# --- layer structure ------------------------------------------------------------------------------


def _mixtral_op() -> dict[str, object]:
    row = fixture_rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
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


def test_layer_structure_reads_flat_and_nested_stacks_alike():
    op = _mixtral_op()
    assert isinstance(op["call_stack"][0], str)  # the fixture's stack is written flat
    nested = {**op, "call_stack": [op["call_stack"]]}
    assert layer_structure([nested], None) == layer_structure([op], None)
    assert layer_structure([op], None)["source"] == "call_stack"


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
        for r in fixture_rows(folder, "moe_unfused")
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
    assert len(result["module_chains"]) == MAX_CHAINS == 20
    times = [c["time_ms"] for c in result["module_chains"]]
    assert times == sorted(times, reverse=True)
    assert result["module_chains"][0] == {"chain": ["Model", "Layer24", "Mlp"], "signatures": 2,
                                          "time_ms": 49.0 + 24.0}
    assert result["layer_types"] == ["Mlp", "MoE"]


def test_layer_structure_ignores_unusable_times():
    ops = [{"name": "a", "ex_uid": 1, "time_ms": float("nan"), "call_stack": ["nn.Module: M", "k"]},
           {"name": "b", "ex_uid": 2, "time_ms": True, "call_stack": ["nn.Module: M", "k"]},
           {"name": "c", "ex_uid": 3, "time_ms": 2.5, "call_stack": ["nn.Module: M", "k"]}]
    assert layer_structure(ops, None)["module_chains"] == [{"chain": ["M"], "signatures": 3, "time_ms": 2.5}]


def test_layer_structure_without_any_context():
    result = layer_structure([{"name": "x", "ex_uid": None, "time_ms": None, "call_stack": None}], None)
    assert result == {"source": "none", "module_chains": [], "launchers": [],
                      "signature_count": 1, "layer_types": []}
    assert layer_structure([], None)["signature_count"] == 0
