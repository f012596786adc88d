"""Which backend runs a case: the library the trace used when it is importable and takes the case."""

from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

from .casespec import LIBRARIES, Case


def library_supports(lib: str, case: Case) -> Optional[str]:
    """None when `lib`'s entry point here can run the case, else why not."""
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
    if want == "torch":
        return "torch", None
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
