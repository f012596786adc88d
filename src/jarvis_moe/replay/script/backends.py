"""Which backend runs a case: the library the trace used when it is importable and takes the case."""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, List, Optional, Tuple

from .casespec import LIBRARIES, Case


def library_supports(lib: str, case: Case) -> Optional[str]:
    """None when `lib`'s entry point here can run the case, else why not."""
    if case.wfmt == "fp32":
        return f"{lib} takes no fp32 weights"
    if lib == "aiter" and case.wfmt not in ("bf16", "fp16"):
        return f"the aiter path here runs bf16/fp16 weights only, not {case.wfmt}"
    if case.wfmt == "mxfp4":
        return f"{lib} fused_experts takes no mxfp4 weights in the layout built here"
    if case.act_fn not in ("silu", "swiglu", "gelu"):
        return f"activation {case.act_fn!r} has no {lib} equivalent here"
    return None


def select_backend(requested: str, case: Case) -> Tuple[str, Optional[str]]:
    """(backend to use, note when it differs from what was asked)."""
    want = case.backend if requested == "auto" else requested
    if want in BASELINES or custom_backend(want):
        return want, None
    if want not in LIBRARIES:
        return "torch", f"backend {want!r} is not one this script drives; using torch"
    if importlib.util.find_spec(want) is None:
        return "torch", f"{want} is not importable here; using torch"
    why = library_supports(want, case)
    return ("torch", f"{why}; using torch") if why else (want, None)


def whole_layer_note(backend: str, case: Case) -> Optional[str]:
    if backend != "torch" and case.role != "fused":
        return f"{backend} times the whole layer, not only the {case.role} stage"
    return None


BASELINES = ("grouped", "triton", "torch")


def triton_family(case: Case) -> bool:
    """Whether the traced kernel is a Triton fused-MoE kernel (vLLM's, SGLang's, Triton's own)."""
    return case.library.lower() == "triton" or "triton" in case.family or case.family.startswith(("vllm", "sglang"))


def custom_backend(text: str) -> Optional[Tuple[str, str]]:
    """(module, function) of a --backend module:function, else None."""
    module, sep, function = text.partition(":")
    return (module, function) if sep and module and function.isidentifier() else None


def compare_plan(case: Case, custom: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every backend --compare times for a case: importable libraries, the baselines, a custom one.

    Each entry: backend key, whether it runs here, and why not or what it
    times. No PyTorch needed: importability is looked up, not imported.
    """
    rows: List[Dict[str, Any]] = []
    for lib in LIBRARIES:
        if importlib.util.find_spec(lib) is None:
            continue
        why = library_supports(lib, case)
        rows.append({"backend": lib, "runs": why is None, "note": why or whole_layer_note(lib, case) or ""})
    if "matmul_ogs" in case.family and importlib.util.find_spec("triton_kernels") is not None:
        rows.append({"backend": "triton_kernels", "runs": False,
                     "note": "triton_kernels is installed, but this script does not drive matmul_ogs yet"})
    rows.append({"backend": "grouped", "runs": True, "note": "one grouped matmul per stage for all experts"})
    if triton_family(case) and case.wfmt in ("bf16", "fp16", "fp32"):
        rows.append({"backend": "triton", "runs": True,
                     "note": f"bundled Triton fused-MoE kernel, the trace's row block {case.block_rows}"})
    else:
        if triton_family(case):
            rows.append({"backend": "triton", "runs": False,
                         "note": f"the bundled kernel runs bf16/fp16/fp32 weights, not {case.wfmt}"})
        rows.append({"backend": "torch", "runs": True, "note": "per-expert reference"})
    if custom:
        rows.append({"backend": custom, "runs": True, "note": "your function, same tensors"})
    return rows
