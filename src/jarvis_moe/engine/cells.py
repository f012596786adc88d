"""The one parser of each literal cell of the ops CSV.

The pipeline writes tuples, lists and dicts with ``repr``: ``((16, 4096),
(8, 28672, 4096))``, ``('c10::BFloat16', 'Float')``, ``{'num_tokens':
np.int64(16), ...}``. The cells come from files a user (or an attacker)
controls: nothing here evaluates code, and a cell that cannot be read is
"unknown", never an error.

Each cell has exactly one parser, and every consumer reads its result:

- read column-wise, as polars expressions: over every row, the token count
  ``M`` (``perf_params.num_tokens``, else the first number of ``Input
  Dims``); once per distinct cell, ``Input type`` (the dtype list) and the
  kernel names (the last frame of each stack of ``call_stack_full``, else
  the names in ``kernel_details_summary``), as the ops of a trace share a
  few of those; every key of both ``perf_params`` schemas for the listed
  ops;
- read only for the few ops the report lists, with ``ast.literal_eval``
  after a rewrite of numpy scalar wrappers, under length and depth caps:
  ``Input Dims`` (the shapes) and the frames of ``call_stack_full`` (module
  chain, launchers, call chain).
"""

from __future__ import annotations

import ast
import re
from itertools import accumulate
from typing import Any

import polars as pl

MAX_CHARS = 2_000_000
MAX_DEPTH = 64

# --- literal cells of listed ops ----------------------------------------------

# numpy >= 2 writes scalars as ``np.float64(3.5)``; the argument is a plain
# number (or nan/inf), so a bracket-free capture is enough and keeps it linear.
_NUMPY_SCALAR = re.compile(
    r"\b(?:np|numpy)\.(?:float16|float32|float64|int8|int16|int32|int64"
    r"|uint8|uint16|uint32|uint64|bool_)\(\s*([^()\s,]*)\s*\)"
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_NOT_BRACKET = re.compile(r"[^()\[\]{}]+")
_BRACKET_STEP = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
_PARSE_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError)


def _unwrap_numpy_scalar(match: re.Match[str]) -> str:
    value = match.group(1)
    lowered = value.lower().lstrip("+")
    if _NUMBER.fullmatch(value) or value in ("True", "False"):
        return value
    if lowered == "nan":  # literal_eval has no nan; unknown is the honest reading
        return "None"
    if lowered in ("inf", "infinity"):
        return "1e999"
    if lowered in ("-inf", "-infinity"):
        return "-1e999"
    return match.group(0)  # anything else stays, so the cell fails to parse


_STRING_OR_NUMPY = re.compile(f"({_QUOTED.pattern})|{_NUMPY_SCALAR.pattern}")


def _outside_strings(match: re.Match[str]) -> str:
    """Unwrap a numpy scalar, but leave text inside a string literal as it is."""
    if match.group(1) is not None:
        return match.group(0)
    inner = re.match(_NUMPY_SCALAR.pattern, match.group(0))
    return _unwrap_numpy_scalar(inner) if inner else match.group(0)


def _bracket_depth(text: str) -> int | None:
    """Deepest bracket nesting outside string literals; None when unbalanced."""
    brackets = _NOT_BRACKET.sub("", _QUOTED.sub("", text))
    if not brackets:
        return 0
    depths = list(accumulate(map(_BRACKET_STEP.__getitem__, brackets)))
    if min(depths) < 0 or depths[-1] != 0:
        return None
    return max(depths)


def parse_literal(text: object, *, max_chars: int = MAX_CHARS, max_depth: int = MAX_DEPTH) -> Any:
    """One cell holding a Python literal, or None when empty, too big, too deep or not a literal."""
    if not isinstance(text, str) or len(text) > max_chars:
        return None
    stripped = text.strip()
    if not stripped or stripped.lower() == "nan":
        return None
    rewritten = _STRING_OR_NUMPY.sub(_outside_strings, stripped)
    depth = _bracket_depth(rewritten)
    if depth is None or depth > max_depth:
        return None
    try:
        return ast.literal_eval(rewritten)
    except _PARSE_ERRORS:
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ``Input Dims`` as the pipeline writes it: a tuple or list of shapes, each a
# tuple or list of plain decimal sizes or None, spaces and tabs between. Only
# this form is read without Python's parser, and what it reads is what
# ``ast.literal_eval`` reads from it; any other text takes the general path.
_GAP = r"[ \t]*"
_SIZE = r"(?:0|[1-9][0-9]*)"
_SIZES = rf"{_SIZE}(?:{_GAP},{_GAP}{_SIZE})*"
_ONE_SHAPE = (rf"(?:\({_GAP}\)|\({_GAP}{_SIZE}{_GAP},{_GAP}\)|\({_GAP}{_SIZE}(?:{_GAP},{_GAP}{_SIZE})+{_GAP},?{_GAP}\)"
              rf"|\[{_GAP}(?:{_SIZES}{_GAP},?{_GAP})?\]|None)")
_SHAPES = rf"{_ONE_SHAPE}(?:{_GAP},{_GAP}{_ONE_SHAPE})*"
_PLAIN_DIMS = re.compile(rf"\({_GAP}\)|\({_GAP}{_ONE_SHAPE}{_GAP},{_GAP}\)"
                         rf"|\({_GAP}{_ONE_SHAPE}(?:{_GAP},{_GAP}{_ONE_SHAPE})+{_GAP},?{_GAP}\)"
                         rf"|\[{_GAP}(?:{_SHAPES}{_GAP},?{_GAP})?\]")
_SHAPE_IN_DIMS = re.compile(r"[(\[]([^()\[\]]*)[)\]]|None")


def parse_dims(text: object) -> tuple[tuple[int, ...], ...] | None:
    """``Input Dims``: one shape per input (``()`` for none), or None."""
    if isinstance(text, str) and len(text) <= MAX_CHARS:
        plain = text.strip()
        if _PLAIN_DIMS.fullmatch(plain):
            return tuple(tuple(map(int, re.findall("[0-9]+", m.group(1)))) if m.group(1) is not None else ()
                         for m in _SHAPE_IN_DIMS.finditer(plain[1:-1]))
    return dims_of(parse_literal(text))


def dims_of(value: object) -> tuple[tuple[int, ...], ...] | None:
    """The shapes of a parsed ``Input Dims`` cell, or None when it is not one."""
    if not isinstance(value, (tuple, list)):
        return None
    shapes: list[tuple[int, ...]] = []
    for entry in value:
        if entry is None:
            shapes.append(())
        elif isinstance(entry, (tuple, list)) and all(_is_int(d) and d >= 0 for d in entry):
            shapes.append(tuple(entry))
        else:
            return None
    return tuple(shapes)


def parse_call_stack(text: object) -> list[Any] | None:
    """``call_stack_full`` as written: a list of frames and of sub-lists of frames.

    The pipeline writes one flat stack, one sub-list per kernel, or shared
    outer frames followed by one sub-list per kernel. Anything but strings
    and lists of strings is unknown (None). :func:`stacks` turns the result
    into one full stack per kernel.
    """
    value = parse_literal(text)
    if not isinstance(value, (tuple, list)):
        return None
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (tuple, list)) and all(isinstance(f, str) for f in item):
            out.append(list(item))
        else:
            return None
    return out


def stacks(call_stack: list[Any] | None) -> list[list[str]]:
    """One stack per kernel, outermost frame first: frames before the sub-lists are shared by each."""
    if not call_stack:
        return []
    subs = [item for item in call_stack if isinstance(item, list)]
    if not subs:
        return [list(call_stack)]
    shared = [item for item in call_stack[: call_stack.index(subs[0])] if isinstance(item, str)]
    return [shared + sub for sub in subs]


def frames(call_stack: list[Any] | None) -> list[str]:
    """Every frame once, in the order written (sub-lists flattened)."""
    out: list[str] = []
    for item in call_stack or []:
        out.extend(item if isinstance(item, list) else [item])
    return out


# --- cells read column-wise ---------------------------------------------------

# Keys of both perf_params schemas (input contract, "MoE op families").
PERF_INT_KEYS = ("num_tokens", "hidden_dim", "inter_dim", "num_experts", "topk", "m_work", "N", "K")
PERF_TEXT_KEYS = ("input_dtype", "weight_dtype", "output_dtype")
PERF_FLAG_KEYS = ("gated",)

_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
# A stack's last frame is the string right before a closing bracket.
_LAST_FRAME = rf"(?:{_STRING})\s*\]"
_DETAIL_NAME = r"['\"]name['\"]\s*:\s*(?:'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\")"


def text_column(frame: pl.DataFrame, column: str) -> pl.Expr:
    """The text column (a categorical as its text), or a null literal when the CSV lacks it."""
    return pl.col(column).cast(pl.String) if column in frame.columns else pl.lit(None, dtype=pl.String)


def _unquote(expr: pl.Expr) -> pl.Expr:
    """A quoted string without its quotes, with repr's escapes of quotes and backslashes undone."""
    inner = expr.str.slice(1, expr.str.len_chars() - 2)
    return inner.str.replace_all(r"\\(['\"\\])", "$1")


# A numpy scalar as repr writes it: np.int64(16), numpy.str_('x'), np.True_.
_NUMPY_OPEN = r"(?:(?:np|numpy)\.(?:[A-Za-z0-9_]+\(\s*)?)?"


def _perf_value(params: pl.Expr, key: str) -> pl.Expr:
    """The value text of ``key``, a numpy wrapper around it dropped, in one regex pass.

    A numpy boolean keeps its trailing underscore (``True_``): only a flag
    reads it (``pp_gated``, which drops it), and to a number or a quoted text it is no
    value either way.
    """
    pattern = rf"(?:'{key}'|\"{key}\")\s*:\s*{_NUMPY_OPEN}({_STRING}|[^,}}\s()]+)"
    return params.str.extract(pattern, 1)


def perf_facts(frame: pl.DataFrame, keys: tuple[str, ...] | None = None) -> list[pl.Expr]:
    """``pp_<key>`` for each perf_params key (ints, ``pp_gated`` a boolean, dtypes text).

    :param keys: the keys to read (default: all of both schemas). Each key is
        one regex pass over the column, so callers over every row ask only
        for the keys they need.
    """
    wanted = PERF_INT_KEYS + PERF_TEXT_KEYS + PERF_FLAG_KEYS if keys is None else keys
    params = text_column(frame, "perf_params")
    out: list[pl.Expr] = []
    for key in (k for k in PERF_INT_KEYS if k in wanted):
        raw = _perf_value(params, key)
        number = raw.cast(pl.Float64, strict=False)
        whole = pl.when(number.is_finite() & (number == number.round(0)) & (number > 0)
                        & (number < 2.0**53)).then(number)
        out.append(whole.cast(pl.Int64).alias(f"pp_{key}"))
    for key in (k for k in PERF_TEXT_KEYS if k in wanted):
        raw = _perf_value(params, key)
        out.append(pl.when(raw.str.contains(r"^['\"]")).then(_unquote(raw)).alias(f"pp_{key}"))
    if "gated" in wanted:
        flag = _perf_value(params, "gated").str.replace(r"^(True|False)_$", "$1").str.to_lowercase()
        out.append(pl.when(flag.is_in(["true", "1"])).then(True)
                   .when(flag.is_in(["false", "0"])).then(False).alias("pp_gated"))
    return out


TYPE_CELLS = ("Input type",)
KERNEL_CELLS = ("call_stack_full", "kernel_details_summary")
STACK_CELLS = ("call_stack_full",)


def type_facts(frame: pl.DataFrame) -> list[pl.Expr]:
    """``input_types``: the dtype names of ``Input type``, ``''`` for an unknown one."""
    # A None entry (an input without a dtype) keeps its place: types pair with dims by position.
    types = text_column(frame, "Input type").str.extract_all(rf"{_STRING}|\bNone\b")
    return [types.list.eval(
        pl.when(pl.element() == "None").then(pl.lit("")).otherwise(_unquote(pl.element()))
    ).alias("input_types")]


def stack_kernels(frame: pl.DataFrame) -> pl.Expr:
    """The last frame of each stack of ``call_stack_full``, blanks included."""
    return last_frames(text_column(frame, "call_stack_full"))


def last_frames(stack: pl.Expr) -> pl.Expr:
    """The last frame of each stack of a ``call_stack_full`` text, blanks included."""
    return stack.str.extract_all(_LAST_FRAME).list.eval(_unquote(pl.element().str.replace(r"\s*\]$", "")))


def detail_kernels(frame: pl.DataFrame) -> pl.Expr:
    """The kernel names of ``kernel_details_summary``, blanks included."""
    details = text_column(frame, "kernel_details_summary").str.extract_all(_DETAIL_NAME)
    return details.list.eval(_unquote(pl.element().str.replace(r"^['\"]name['\"]\s*:\s*", "")))


def details_cut_to_names(cell: pl.Expr) -> pl.Expr:
    """A ``kernel_details_summary`` cell cut to its kernel names: ``[{'name': 'a'}, {'name': 'b'}]``.

    Each ``'name': ...`` entry is kept as written, so :func:`detail_kernels`
    reads the same names from the cut cell as from the whole one, and the
    durations (which make every row's cell different) are gone.
    """
    entries = cell.str.extract_all(_DETAIL_NAME).list.join("}, {")
    return pl.concat_str([pl.lit("[{"), entries, pl.lit("}]")])


def named(kernels: pl.Expr) -> pl.Expr:
    """The kernel names that are not blank."""
    return kernels.list.eval(pl.element().filter(pl.element().str.strip_chars() != ""))


def kernel_facts(frame: pl.DataFrame) -> list[pl.Expr]:
    """``kernels``: the last frame of each call stack, else the names of the kernel details."""
    from_stack = stack_kernels(frame)
    return [named(pl.when(from_stack.list.len() > 0).then(from_stack).otherwise(detail_kernels(frame)))
            .alias("kernels")]


def dims_tokens(frame: pl.DataFrame) -> pl.Expr:
    """``_dims_tokens``: the first size of the first ``Input Dims`` entry (M when perf_params lacks it)."""
    return text_column(frame, "Input Dims").str.extract(r"^\s*[\(\[]\s*[\(\[]\s*(\d+)", 1).cast(
        pl.Int64, strict=False).alias("_dims_tokens")
