"""Safe parsing of the Python-literal cells of the per-category CSV.

The host pipeline writes tuples, lists and dicts with ``repr``, so cells look
like ``((16, 4096), (8, 28672, 4096))``, ``('c10::BFloat16', 'Float')`` or
``[{'name': 'k', 'mean_duration_us': np.float64(1091.64)}]``. They come from
files a user (or an attacker) controls, so every function here:

- never evaluates code: only ``ast.literal_eval`` after a regex rewrite of the
  numpy scalar wrappers;
- refuses text longer than ``max_chars`` and brackets nested deeper than
  ``max_depth`` before the parser sees them;
- answers ``None`` ("unknown") instead of raising.
"""

from __future__ import annotations

import ast
import math
import re
from itertools import accumulate
from typing import Any

DEFAULT_MAX_CHARS = 2_000_000
DEFAULT_MAX_DEPTH = 64

# numpy >= 2 writes scalars as ``np.float64(3.5)``; the argument is a plain
# number (or nan/inf), never a nested expression, so a bracket-free capture is
# enough and keeps the regex linear.
_NUMPY_SCALAR = re.compile(
    r"\b(?:np|numpy)\.(?:float16|float32|float64|int8|int16|int32|int64"
    r"|uint8|uint16|uint32|uint64|bool_)\(\s*([^()\s,]*)\s*\)"
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

# Quoted strings as ``repr`` writes them (no raw newlines, backslash escapes).
# Removed before counting brackets so that a frame such as
# ``'jit.py(393): <lambda>'`` does not count as nesting.
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_NOT_BRACKET = re.compile(r"[^()\[\]{}]+")
_BRACKET_STEP = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}

_PARSE_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError)


def _unwrap_numpy_scalar(match: re.Match[str]) -> str:
    value = match.group(1)
    lowered = value.lower().lstrip("+")
    if _NUMBER.fullmatch(value) or value in ("True", "False"):
        return value
    # literal_eval has no name for nan; "unknown" is the honest reading of it.
    if lowered == "nan":
        return "None"
    # 1e999 is a literal the parser reads as float('inf').
    if lowered in ("inf", "infinity"):
        return "1e999"
    if lowered in ("-inf", "-infinity"):
        return "-1e999"
    # Anything else stays as written, so the cell fails to parse.
    return match.group(0)


def _bracket_depth(text: str) -> int | None:
    """Deepest bracket nesting outside string literals; None when unbalanced."""
    brackets = _NOT_BRACKET.sub("", _QUOTED.sub("", text))
    if not brackets:
        return 0
    # accumulate/map run in C, so a megabyte of brackets costs milliseconds.
    depths = list(accumulate(map(_BRACKET_STEP.__getitem__, brackets)))
    if min(depths) < 0 or depths[-1] != 0:
        return None
    return max(depths)


def parse_literal(
    text: object,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> object | None:
    """Parse one CSV cell holding a Python literal.

    Returns the parsed value (tuple, list, dict, str, number, ...), or None
    when the cell is empty, ``nan``, not text, too long, nested too deeply or
    not a literal. ``np.float64(x)``-style wrappers become ``x``; a wrapped
    nan becomes None and a wrapped inf becomes ``float('inf')``.
    """
    if not isinstance(text, str):
        return None
    if len(text) > max_chars:
        return None
    stripped = text.strip()
    if not stripped or stripped.lower() == "nan":
        return None
    rewritten = _NUMPY_SCALAR.sub(_unwrap_numpy_scalar, stripped)
    depth = _bracket_depth(rewritten)
    if depth is None or depth > max_depth:
        return None
    try:
        return ast.literal_eval(rewritten)
    except _PARSE_ERRORS:
        return None


def _is_int(value: object) -> bool:
    # bool is an int subclass; True is not a dimension.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_dims(text: object) -> tuple[tuple[int, ...], ...] | None:
    """Parse ``Input Dims``: one shape per input, each a tuple of ints >= 0.

    ``()`` and ``None`` entries (inputs without a shape) become ``()``.
    Returns None when the cell is not a sequence of such shapes.
    """
    value = parse_literal(text)
    if not isinstance(value, (tuple, list)):
        return None
    shapes: list[tuple[int, ...]] = []
    for entry in value:
        if entry is None:
            shapes.append(())
            continue
        if not isinstance(entry, (tuple, list)):
            return None
        if not all(_is_int(d) and d >= 0 for d in entry):
            return None
        shapes.append(tuple(entry))
    return tuple(shapes)


def parse_types(text: object) -> tuple[str, ...] | None:
    """Parse ``Input type``: one dtype name per input, ``''`` when unknown.

    Returns None when the cell is not a sequence of strings (None entries are
    read as ``''``).
    """
    value = parse_literal(text)
    if not isinstance(value, (tuple, list)):
        return None
    names: list[str] = []
    for entry in value:
        if entry is None:
            names.append("")
        elif isinstance(entry, str):
            names.append(entry)
        else:
            return None
    return tuple(names)


def parse_dict(text: object) -> dict[Any, Any] | None:
    """Parse a dict cell such as ``perf_params``; None when it is not a dict."""
    value = parse_literal(text)
    return value if isinstance(value, dict) else None


def parse_kernel_details(text: object) -> list[dict[Any, Any]] | None:
    """Parse ``kernel_details_summary`` / ``trunc_kernel_details``.

    Returns the list of per-kernel dicts, or None when the cell is not a
    sequence whose every element is a dict.
    """
    value = parse_literal(text)
    if not isinstance(value, (tuple, list)):
        return None
    if not all(isinstance(entry, dict) for entry in value):
        return None
    return list(value)


def parse_call_stack(text: object) -> list[str] | list[list[str]] | None:
    """Parse ``call_stack_full``, outermost frame first.

    Returns a flat list of frames, or a list of sub-lists (one stack per
    kernel) when every element is a sequence of strings. Mixed or non-string
    content gives None; ``[]`` stays an empty list.
    """
    value = parse_literal(text)
    if not isinstance(value, (tuple, list)):
        return None
    if all(isinstance(frame, str) for frame in value):
        return list(value)
    stacks: list[list[str]] = []
    for stack in value:
        if not isinstance(stack, (tuple, list)):
            return None
        if not all(isinstance(frame, str) for frame in stack):
            return None
        stacks.append(list(stack))
    return stacks


def finite_or_none(value: object) -> float | None:
    """A finite float from a parsed number, or None (bools and nan/inf too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None
