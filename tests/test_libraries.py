"""Which library an op of no known family belongs to: the rules of analysis §2.

``library_expr`` is a polars expression over the op name and its kernel
names joined by newlines; it is run here on small frames and compared with
the library the rest of the pipeline wrote for the fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from jarvis_moe.engine.libraries import KERNEL_LIBRARY_RULES, OP_NAME_LIBRARY_RULES, library_expr

FIXTURES = Path(__file__).parent / "fixtures"


def libraries(pairs: list[tuple[str | None, list[str] | None]]) -> list[str]:
    frame = pl.DataFrame(
        {"name": [name for name, _ in pairs], "kernels": [kernels for _, kernels in pairs]},
        schema={"name": pl.String, "kernels": pl.List(pl.String)},
    )
    out = frame.select(library_expr(pl.col("name"), pl.col("kernels").list.join("\n")).alias("library"))
    return out.get_column("library").to_list()


def library(name: str | None, kernels: list[str] | None) -> str:
    return libraries([(name, kernels)])[0]


def test_rule_tables_are_plain_ordered_substring_tests():
    for rules in (OP_NAME_LIBRARY_RULES, KERNEL_LIBRARY_RULES):
        assert isinstance(rules, tuple)
        for substring, lib, case_sensitive in rules:
            assert isinstance(substring, str) and substring
            assert isinstance(lib, str) and lib
            assert isinstance(case_sensitive, bool)
            if not case_sensitive:
                assert substring == substring.lower()
    # analysis §2 lists these first, in this order
    assert [r.substring for r in OP_NAME_LIBRARY_RULES[:5]] == ["aiter::", "rocm_aiter", "fbgemm", "miopen", "triton"]
    assert [r.substring for r in KERNEL_LIBRARY_RULES[:10]] == [
        "aiter", "ck_tile::", "FmhaFwd", "FmhaBwd", "Cijk_", "wvSplitK", "splitKreduce", "rocprim::", "triton_",
        "void at::native::"]


@pytest.mark.parametrize(
    ("op_name", "kernels", "expected"),
    [
        ("pseudo_op::moe_triton_unfused_up", ["_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"], "Triton"),
        ("pseudo_op::moe_aiter_fused_1stage", ["aiter::fmoe_bf16_g1u1_subGU_256_silu"], "AITER"),
        ("vllm::rocm_aiter_fused_moe", ["Cijk_Alik_Bljk"], "AITER"),  # the op name decides first
        ("aiter::fmoe", [], "AITER"),
        ("fbgemm::grouped_gemm", [], "FBGEMM"),
        ("MIOpen::conv", [], "MIOpen"),
        ("sglang::deep_gemm_moe", [], "DeepGEMM"),
        ("pseudo_op::MOE_TRITON_X", [], "Triton"),  # op-name rules ignore case
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
        ("x", ["fused_moe_kernel_gptq_awq"], "Triton"),
        ("x", ["_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"], "Triton"),
        ("x", ["void vllm::moe::topkGatingSoftmax<>"], "vLLM"),
        ("x", ["some_kernel", "triton_red_fused_1"], "Triton"),
        # Kernel rules are case-sensitive where the table says so.
        ("x", ["CIJK_upper_case", "wvsplitk", "AITER_UPPER"], "Unknown"),
        ("x", ["moe_gemm1_0"], "Unknown"),
        ("x", [], "Unknown"),
        ("x", None, "Unknown"),
        (None, None, "Unknown"),
    ],
)
def test_library_of_concrete_names(op_name, kernels, expected):
    assert library(op_name, kernels) == expected


def test_kernel_rules_take_priority_over_kernel_order():
    # "aiter" comes before "Cijk_" in the table, whatever order the kernels ran in.
    assert library("x", ["Cijk_gemm", "aiter::moe_sorting"]) == "AITER"
    # Tensile's rule comes before CUTLASS's and PyTorch Native's.
    assert library("x", ["void at::native::copy", "void cutlass::Kernel2", "Cijk_x"]) == "Tensile"


def test_wrappers_of_cutlass_are_named_before_cutlass():
    assert library("x", ["void cutlass::Kernel<flashinfer::moe>"]) == "FlashInfer"
    assert library("x", ["cutlass::gemm<tensorrt_llm::x>"]) == "TensorRT-LLM"


def test_regex_characters_in_names_are_plain_text():
    assert library("op(.*)[", ["k[(.+"]) == "Unknown"
    assert library("a.b", ["void at::native::k<(.)>"]) == "PyTorch Native"


def test_one_expression_covers_every_row():
    assert libraries([("aiter::x", []), ("x", ["Cijk_"]), ("x", []), (None, ["triton_x"])]) == [
        "AITER", "Tensile", "Unknown", "Triton"]


def _expected_ops() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(FIXTURES.glob("*/expected/*_metrics.json")):
        for op in json.loads(path.read_text(encoding="utf-8"))["operations"]:
            out.append((path.parents[1].name, op))
    return out


def _kernel_names(op: dict) -> list[str]:
    text = op["kernel_name"]
    if not text.startswith("Kernel 1: "):
        return [text] if text else []
    return [part.split(": ", 1)[1] for part in text.split("<br>")]


def test_the_pipelines_libraries_of_the_fixtures():
    # Where the pipeline names a library, the rules name the same one.
    named = [(folder, op) for folder, op in _expected_ops() if op["library"] is not None]
    assert len(named) >= 20
    got = libraries([(op["name"], _kernel_names(op)) for _, op in named])
    assert [(folder, op["name"], lib) for (folder, op), lib in zip(named, got)] == [
        (folder, op["name"], op["library"]) for folder, op in named]


def test_the_pipeline_names_no_library_where_only_the_wider_rules_do():
    # GPTQ/AWQ's Triton kernel has no "triton_" prefix: the pipeline's list stops short,
    # the vendor rules recognise it; FlyDSL's kernels carry no library name at all.
    unnamed = {(folder, op["name"]): op for folder, op in _expected_ops() if op["library"] is None}
    assert unnamed
    for (folder, name), op in unnamed.items():
        got = library(name, _kernel_names(op))
        assert got == ("Triton" if "gptq" in name else "Unknown"), (folder, name)
