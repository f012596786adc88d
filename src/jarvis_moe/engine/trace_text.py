"""Strings derived from the trace: args, kernel names, module chains, layer structure.

These follow analysis §2 to the character, because the same strings come out
of the rest of the pipeline and readers compare them. Display strings
(``args``, ``launcher_path``, ``kernel_name_trunc``) go through
:func:`display_text` piece by piece: one line, no control characters, the
trace's characters otherwise as they are. They are data, not markup: the
page escapes what would be markup where it prints them.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from jarvis_moe.engine.cells import frames, stacks
from jarvis_moe.engine.dtypes import args_label
from jarvis_moe.safetext import plain_text



def display_text(raw: object) -> str:
    """One line of a trace string: :func:`plain_text`, trimmed; never HTML-escaped (the page escapes)."""
    return plain_text(raw).strip()

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
        text = f"{_shape_text(shape or ())} {args_label(dtype)}"
        pieces.append(display_text(text))
    return "<br>".join(pieces)


# --- kernels ------------------------------------------------------------------

KERNEL_TRUNC_CHARS = 75


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


def module_chain(call_stack: list[Any] | None) -> list[str]:
    """``nn.Module: X`` frame names in the order written (sub-lists flattened), duplicates kept."""
    return [
        frame[len(_MODULE_PREFIX):].strip()
        for frame in frames(call_stack)
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


def launcher_frames(call_stack: list[Any] | None) -> list[str]:
    """Framework op frames (``vllm::moe_forward``, ``aten::mm``) above every kernel of the op, in order.

    The last frame of each stack is the kernel and ``pseudo_op::`` frames are
    the pipeline's own markers, so neither counts as a launcher. An op with
    several kernels has one stack per kernel: a framework op on only some of
    them (SGLang's activation-quantisation op before its fused_moe kernel) is
    launched by the op, not the op's launcher.
    """
    per_stack = []
    for stack in stacks(call_stack):
        frames = [f.strip() for f in stack[:-1]]
        per_stack.append([f for f in dict.fromkeys(frames)
                          if not f.startswith(_SYNTHETIC_PREFIX) and _FRAMEWORK_OP.fullmatch(f)])
    if not per_stack:
        return []
    common = set(per_stack[0]).intersection(*per_stack[1:])
    return [f for f in per_stack[0] if f in common]


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
