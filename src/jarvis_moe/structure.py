"""Strings derived from the trace: dtypes, args, library, kernels, module chains.

These follow analysis §2 to the character, because the same strings come out
of the rest of the pipeline and readers compare them. Raw trace text (kernel
names, frames) is kept raw where the metrics JSON keeps raw strings; display
strings (``args``, ``launcher_path``, ``kernel_name_trunc``) go through
:func:`jarvis_moe.text.display_text` piece by piece, so the joiners (``<br>``,
`` > ``) stay literal while nothing from the trace can open a tag or comment.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from jarvis_moe.text import display_text

# --- dtypes and args ----------------------------------------------------------

# Whole-name matches, case-insensitive; any other name is kept as written
# (so ``BFloat16`` without ``c10::`` and ``Int`` stay unchanged).
_SHORT_DTYPES = {
    "c10::bfloat16": "bf16",
    "c10::half": "fp16",
    "float": "fp32",
    "double": "fp64",
    "c10::float8_e4m3fnuz": "fp8",
    "c10::float8_e4m3fn": "fp8",
    "unsigned char": "fp8",
    "fp8": "fp8",
    "c10::float4_e2m1fn_x2": "fp4",
    "mxfp4": "fp4",
    "fp4": "fp4",
}


def short_dtype(name: str | None) -> str:
    """Short dtype label of analysis §2 (``c10::BFloat16`` → ``bf16``, ``Float`` → ``fp32``)."""
    if name is None:
        return ""
    return _SHORT_DTYPES.get(name.strip().lower(), name)


def _shape_text(shape: Sequence[int]) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ",".join(str(d) for d in shape) + ")"


def format_args(
    dims: Sequence[Sequence[int] | None] | None, types: Sequence[str | None] | None
) -> str:
    """``(d1,d2,...) dtype`` per input joined by ``<br>`` (display-safe pieces).

    Inputs without a shape whose dtype is empty or ``Scalar`` are dropped.
    Returns ``""`` when nothing is left.
    """
    shapes = list(dims or ())
    names = list(types or ())
    pieces: list[str] = []
    for index in range(max(len(shapes), len(names))):
        shape = shapes[index] if index < len(shapes) else None
        dtype = ((names[index] if index < len(names) else None) or "").strip()
        if not shape and dtype in ("", "Scalar"):
            continue
        text = f"{_shape_text(shape or ())} {short_dtype(dtype)}"
        pieces.append(display_text(text))
    return "<br>".join(pieces)


# --- library ------------------------------------------------------------------


class LibraryRule(NamedTuple):
    """One plain substring test. When ``case_sensitive`` is False the
    substring is lower-case and is tested against the lower-cased text."""

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


def _matches(rule: LibraryRule, text: str) -> bool:
    haystack = text if rule.case_sensitive else text.lower()
    return rule.substring in haystack


def detect_library(op_name: str | None, kernel_names: Iterable[str] = ()) -> str | None:
    """Library that implements an op: op-name rules first, then kernel-name rules.

    Each kernel rule is tried against every kernel before the next rule (the
    same as testing the kernel names joined by a newline). None when no rule
    matches.
    """
    if op_name:
        for rule in OP_NAME_LIBRARY_RULES:
            if _matches(rule, op_name):
                return rule.library
    names = [k for k in kernel_names if isinstance(k, str)]
    for rule in KERNEL_LIBRARY_RULES:
        if any(_matches(rule, name) for name in names):
            return rule.library
    return None


# --- kernels ------------------------------------------------------------------

KERNEL_TRUNC_CHARS = 75


def _stacks(call_stack: Sequence[Any] | None) -> list[list[str]]:
    """The call stack as a list of stacks (a flat stack is one stack)."""
    if not call_stack:
        return []
    if all(isinstance(frame, str) for frame in call_stack):
        return [list(call_stack)]
    return [
        [frame for frame in stack if isinstance(frame, str)]
        for stack in call_stack
        if isinstance(stack, (list, tuple))
    ]


def kernel_names(
    call_stack: Sequence[Any] | None,
    kernel_details: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Kernel names: the last frame of each stack of ``call_stack_full``.

    Falls back to the ``name`` of each ``kernel_details_summary`` entry when
    the call stack is missing or empty.
    """
    names = [stack[-1] for stack in _stacks(call_stack) if stack]
    if names:
        return names
    return [
        entry["name"]
        for entry in kernel_details or ()
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
    ]


def _truncate(name: str) -> str:
    if len(name) > KERNEL_TRUNC_CHARS:
        # Cut the raw text before escaping, so an entity is never split.
        name = name[:KERNEL_TRUNC_CHARS] + "..."
    return display_text(name)


def kernel_name_display(names: Sequence[str]) -> tuple[str, str]:
    """(kernel_name, kernel_name_trunc) for one or several kernels.

    One kernel gives its name; several give ``Kernel 1: a<br>Kernel 2: b``.
    ``kernel_name`` keeps raw names; ``kernel_name_trunc`` cuts each name to
    75 characters plus ``...`` and makes it display-safe. ``("", "")`` when
    there is no kernel.
    """
    if not names:
        return "", ""
    if len(names) == 1:
        return names[0], _truncate(names[0])
    raw = "<br>".join(f"Kernel {i}: {name}" for i, name in enumerate(names, start=1))
    short = "<br>".join(f"Kernel {i}: {_truncate(name)}" for i, name in enumerate(names, start=1))
    return raw, short


# --- module chains and launchers --------------------------------------------

_MODULE_PREFIX = "nn.Module:"
# A framework op as the profiler names it: ``namespace::op`` (``vllm::moe_forward``,
# ``aten::mm``, ``_C::op.overload``); file frames look like ``path.py(12): fn``.
_FRAMEWORK_OP = re.compile(r"[A-Za-z_][\w.]*(?:::[A-Za-z_][\w.]*)+")
_SYNTHETIC_PREFIX = "pseudo_op::"


def module_chain(call_stack: Sequence[Any] | None) -> list[str]:
    """``nn.Module: X`` frame names, outermost first, all stacks concatenated, duplicates kept."""
    return [
        frame[len(_MODULE_PREFIX):].strip()
        for stack in _stacks(call_stack)
        for frame in stack
        if frame.startswith(_MODULE_PREFIX) and frame[len(_MODULE_PREFIX):].strip()
    ]


def collapse_chain(chain: Sequence[str]) -> list[str]:
    """The chain without consecutive repeats or repetitions of the whole chain.

    A chain that restarts at its first module (several stacks concatenated)
    collapses to its longest run when every run is a prefix of it; otherwise
    the distinct runs are kept in order.
    """
    deduped: list[str] = []
    for name in chain:
        if not deduped or deduped[-1] != name:
            deduped.append(name)
    if not deduped:
        return []
    runs: list[list[str]] = []
    for name in deduped:
        if name == deduped[0] or not runs:
            runs.append([name])
        else:
            runs[-1].append(name)
    longest = max(runs, key=len)
    if all(run == longest[: len(run)] for run in runs):
        return list(longest)
    distinct: list[list[str]] = []
    for run in runs:
        if run not in distinct:
            distinct.append(run)
    return [name for run in distinct for name in run]


def launcher_path(
    entry_point: str | None, module_chain: Sequence[str], library: str | None
) -> str:
    """Display-safe launcher: entry_point, else the first three modules, else library.

    ``module_chain`` is the raw (uncollapsed) chain, as the rest of the
    pipeline uses it. Falls back to ``<library> (vendor)`` and then
    ``Not found``.
    """
    if isinstance(entry_point, str) and entry_point.strip() not in ("", "Not found"):
        return display_text(entry_point)
    modules = [display_text(name) for name in module_chain[:3]]
    if modules:
        return " > ".join(modules)
    if library:
        return f"{display_text(library)} (vendor)"
    return "Not found"


def launcher_frames(call_stack: Sequence[Any] | None) -> list[str]:
    """Framework op frames (``vllm::moe_forward``, ``aten::mm``), deduplicated in order.

    The last frame of each stack is the kernel and ``pseudo_op::`` frames are
    the pipeline's own markers, so neither counts as a launcher.
    """
    seen: list[str] = []
    for stack in _stacks(call_stack):
        for frame in stack[:-1]:
            frame = frame.strip()
            if frame.startswith(_SYNTHETIC_PREFIX) or not _FRAMEWORK_OP.fullmatch(frame):
                continue
            if frame not in seen:
                seen.append(frame)
    return seen


# --- layer structure ----------------------------------------------------------

MAX_CHAINS = 20
MAX_LAUNCHERS = 20


def _uid_key(uid: object) -> str | None:
    # Loaders may hand integer ids over as floats (324.0) when the column had gaps.
    if isinstance(uid, float) and uid.is_integer():
        uid = int(uid)
    if isinstance(uid, bool) or uid is None:
        return None
    return str(uid).strip() or None


def _tree_chain(tree_data: Mapping[str, Any] | None, uid: object) -> list[str]:
    key = _uid_key(uid)
    if not isinstance(tree_data, Mapping) or key is None:
        return []
    entry = tree_data.get(key)
    chain = entry.get("parent_chain") if isinstance(entry, Mapping) else None
    if not isinstance(chain, (list, tuple)):
        return []
    return [name for name in chain if isinstance(name, str) and name.strip()]


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if value == value and abs(value) != float("inf") else 0.0


def layer_structure(
    ops: Sequence[Mapping[str, Any]], tree_data: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Where the MoE signatures sit in the model.

    ``ops``: one mapping per signature with ``name``, ``ex_uid``, ``time_ms``
    and ``call_stack`` (parsed, or None). ``tree_data``: the parsed tree file
    keyed by ex_uid string, or None. A signature's chain comes from its tree
    ``parent_chain`` when that is non-empty, else from its call stack.

    Returns ``{"source", "module_chains", "launchers", "signature_count",
    "layer_types"}``: ``source`` is ``"tree_data"`` when any chain came from
    the tree, else ``"call_stack"`` when any came from a stack, else
    ``"none"``; ``module_chains`` lists collapsed chains with their number
    of signatures and total time (ms, 3 places), longest time first, at most
    20; ``launchers`` the framework frames (at most 20); ``layer_types`` the
    innermost module of each listed chain, deduplicated.
    """
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    launchers: list[str] = []
    used_tree = used_stack = False
    for op in ops:
        stack = op.get("call_stack")
        chain = _tree_chain(tree_data, op.get("ex_uid"))
        if chain:
            used_tree = True
        else:
            chain = module_chain(stack)
            used_stack = used_stack or bool(chain)
        for frame in launcher_frames(stack):
            if frame not in launchers:
                launchers.append(frame)
        collapsed = tuple(collapse_chain(chain))
        if not collapsed:
            continue
        group = groups.setdefault(collapsed, {"signatures": 0, "time_ms": 0.0})
        group["signatures"] += 1
        group["time_ms"] += _time(op.get("time_ms"))
    ordered = sorted(groups.items(), key=lambda item: (-item[1]["time_ms"], item[0]))
    chains = [
        {"chain": list(chain), "signatures": g["signatures"], "time_ms": round(g["time_ms"], 3)}
        for chain, g in ordered[:MAX_CHAINS]
    ]
    layer_types: list[str] = []
    for entry in chains:
        if entry["chain"][-1] not in layer_types:
            layer_types.append(entry["chain"][-1])
    source = "tree_data" if used_tree else "call_stack" if used_stack else "none"
    return {
        "source": source,
        "module_chains": chains,
        "launchers": launchers[:MAX_LAUNCHERS],
        "signature_count": len(ops),
        "layer_types": layer_types,
    }
