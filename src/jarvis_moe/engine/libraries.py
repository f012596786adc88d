"""Which library implements an op, from its name and its kernels' names.

Used only for ops of no known MoE family (a family's row names its library):
the op-name rules of analysis §2 first, then the kernel-name rules, then the
vendors beyond the AMD list. Rules are plain substring tests, evaluated
column-wise once per distinct (name, kernels) pair.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl


class LibraryRule(NamedTuple):
    """A substring test; when not ``case_sensitive`` the substring is lower-case."""

    substring: str
    library: str
    case_sensitive: bool


# Order matters: the first matching rule wins. The first group is the rest
# of the pipeline's list; vendor rules follow it so they never override it.
OP_NAME_LIBRARY_RULES: tuple[LibraryRule, ...] = (
    LibraryRule("aiter::", "AITER", False),
    LibraryRule("rocm_aiter", "AITER", False),
    LibraryRule("fbgemm", "FBGEMM", False),
    LibraryRule("miopen", "MIOpen", False),
    LibraryRule("triton", "Triton", False),
    LibraryRule("flashinfer", "FlashInfer", False),
    LibraryRule("deep_gemm", "DeepGEMM", False),
    LibraryRule("marlin", "Marlin", False),
    LibraryRule("tensorrt_llm", "TensorRT-LLM", False),
    LibraryRule("trtllm", "TensorRT-LLM", False),
    LibraryRule("cutlass", "CUTLASS", False),
)

KERNEL_LIBRARY_RULES: tuple[LibraryRule, ...] = (
    LibraryRule("aiter", "AITER", True),
    LibraryRule("ck_tile::", "CK", True),
    LibraryRule("FmhaFwd", "CK", True),
    LibraryRule("FmhaBwd", "CK", True),
    LibraryRule("Cijk_", "Tensile", True),
    LibraryRule("wvSplitK", "rocBLAS", True),
    LibraryRule("splitKreduce", "rocBLAS", True),
    LibraryRule("rocprim::", "rocPRIM", True),
    LibraryRule("triton_", "Triton", True),
    LibraryRule("void at::native::", "PyTorch Native", True),
    # Beyond the AMD list. Libraries that wrap CUTLASS come before it, since
    # their kernel names often contain "cutlass" too.
    LibraryRule("void ck::", "CK", True),
    LibraryRule("flashinfer", "FlashInfer", False),
    LibraryRule("tensorrt_llm", "TensorRT-LLM", False),
    LibraryRule("trtllm", "TensorRT-LLM", False),
    LibraryRule("deep_gemm", "DeepGEMM", False),
    LibraryRule("marlin", "Marlin", False),
    LibraryRule("cutlass", "CUTLASS", False),
    LibraryRule("cublas", "cuBLAS", False),
    LibraryRule("sm90_xmma", "cuBLAS", False),
    LibraryRule("nvjet_", "cuBLAS", True),
    # Triton JIT functions of the common MoE paths (vLLM/SGLang fused_moe,
    # triton_kernels' matmul_ogs) carry no "triton_" prefix.
    LibraryRule("fused_moe_kernel", "Triton", True),
    LibraryRule("_matmul_ogs_", "Triton", True),
    LibraryRule("void vllm::", "vLLM", True),
)


def _first_match(text: pl.Expr, rules: tuple[LibraryRule, ...]) -> pl.Expr:
    """The library of the first rule whose substring ``text`` contains, else null."""
    out = pl.lit(None, dtype=pl.String)
    for needle, library, case_sensitive in reversed(rules):
        hay = text if case_sensitive else text.str.to_lowercase()
        pattern = needle if case_sensitive else needle.lower()
        out = pl.when(hay.str.contains(pattern, literal=True)).then(pl.lit(library)).otherwise(out)
    return out


def name_library(name: pl.Expr) -> pl.Expr:
    """The library of the first op-name rule that matches, else null."""
    return _first_match(name, OP_NAME_LIBRARY_RULES)


def library_expr(name: pl.Expr, kernels: pl.Expr) -> pl.Expr:
    """``Unknown`` unless an op-name rule, then a kernel-name rule, matches.

    :param kernels: the kernel names of the op joined by newlines.
    """
    return pl.coalesce([name_library(name), _first_match(kernels, KERNEL_LIBRARY_RULES), pl.lit("Unknown")])
