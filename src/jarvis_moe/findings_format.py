"""Small formatting helpers shared by the findings writer.

Two kinds of trace-derived text reach the findings file, and they are escaped
differently on purpose:

* Cells of the ``**Data:**`` tables in ``## Detailed Analysis`` must carry the
  ``args`` / ``launcher_path`` / ``kernel_name_trunc`` / ``operation`` strings
  verbatim, because the host compares them with the metrics JSON. Those
  strings are already display text (one line, ``<``/``>``/``&`` as entities),
  so :func:`data_cell` escapes only ``|``.
* Everywhere else (sentences, titles, the reader tables) :func:`inline`
  backslash-escapes every character that could start inline markdown
  (emphasis, code spans, links, images, strikethrough, headings) and turns any
  leftover ``<``/``>`` into entities. Backslash escapes and entities render
  as the plain character, so readers see the same text.

Trace text is never placed at the start of a line, so block structure (lists,
headings, quotes, setext underlines) cannot be started from it either.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

from jarvis_moe.text import display_text

DASH = "—"

# ASCII punctuation that can open or close an inline construct, plus the
# backslash itself and `|` so the same escaping is safe in reader tables.
_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]|~#!])")
_PARTIAL_ENTITY = re.compile(r"&[#A-Za-z0-9]*$")
_FP4_NAMES = ("fp4", "mxfp4", "float4", "e2m1")


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, inf, non-numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(value: Any, places: int = 2, *, thousands: bool = False) -> str:
    """A number with fixed decimals, or an em dash when it is missing."""
    f = num(value)
    if f is None:
        return DASH
    return f"{f:,.{places}f}" if thousands else f"{f:.{places}f}"


def fmt_pct(value: Any, places: int = 2) -> str:
    """``12.34%``, or an em dash."""
    text = fmt(value, places)
    return text if text == DASH else f"{text}%"


def fmt_peak(value: Any) -> str:
    """A platform peak without trailing zeros: ``708``, ``5.3``."""
    f = num(value)
    if f is None:
        return DASH
    return f"{round(f, 2):g}"


def fmt_int(value: Any) -> str:
    """A count, or an em dash."""
    f = num(value)
    return DASH if f is None else str(int(round(f)))


def inline(text: Any) -> str:
    """Display text made inert for use inside a markdown sentence or title.

    Expects display text (see :func:`jarvis_moe.text.display_text`); raw trace
    text must go through :func:`raw_inline` instead. Idempotent on ``<``/``>``
    handling because display text holds neither.
    """
    s = "" if text is None else str(text)
    s = re.sub(r"[\r\n\t\v\f\x1c-\x1e\x85\u2028\u2029]+", " ", s)
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    return _INLINE_SPECIALS.sub(r"\\\1", s)


def raw_inline(text: Any) -> str:
    """Raw trace or engine text (names, warnings, messages) for a sentence."""
    return inline(display_text(text))


def shorten(display: str, limit: int = 60) -> str:
    """Cut display text to ``limit`` characters without splitting an entity."""
    if len(display) <= limit:
        return display
    cut = display[:limit]
    # An entity cut in half (``&am``) would show as stray characters.
    cut = _PARTIAL_ENTITY.sub("", cut)
    return cut.rstrip() + "…"


def data_cell(display: Any) -> str:
    """A verbatim Data-table cell: display text with only ``|`` escaped."""
    if display is None:
        return DASH
    return str(display).replace("|", "\\|")


def op_display(op: Mapping[str, Any]) -> str:
    """The display name of an operation (engine field, or derived)."""
    shown = op.get("display_name")
    return shown if isinstance(shown, str) else display_text(op.get("name"))


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a pipe table; cells must already be escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def bound_label(bound: Any) -> str:
    """``memory-bound`` / ``compute-bound`` / em dash."""
    return f"{bound}-bound" if bound in ("memory", "compute") else DASH


def efficiency_cell(eff: Mapping[str, Any] | None) -> str:
    """``X.XX% of Y TB/s`` (memory) or ``X.XX% of Y TFLOPS`` (compute)."""
    if not eff:
        return DASH
    pct = num(eff.get("efficiency_percent"))
    bound = eff.get("bound_type")
    if pct is None or bound not in ("memory", "compute"):
        return DASH
    if bound == "memory":
        return f"{pct:.2f}% of {fmt_peak(eff.get('resolved_peak_hbm_bw'))} TB/s"
    return f"{pct:.2f}% of {fmt_peak(eff.get('resolved_peak_maf'))} TFLOPS"


def speed_change(t1: Any, t2: Any, speedup_pct: Any = None) -> str:
    """How trace 2 compares with trace 1, as ``X.XX% faster/slower``.

    ``speedup_pct`` is positive when trace 2 is faster; when it is missing it
    is derived from the two times. Never a raw ratio.
    """
    pct = num(speedup_pct)
    a, b = num(t1), num(t2)
    if pct is None and a and b is not None:
        pct = (a - b) / a * 100
    if pct is None:
        return DASH
    if abs(pct) < 0.005:
        return "no change"
    return f"{abs(pct):.2f}% {'faster' if pct > 0 else 'slower'}"


def is_fp4(op: Mapping[str, Any]) -> bool:
    """Whether an op already computes on 4-bit weights.

    Lower-precision advice would contradict the trace for such an op.
    """
    moe = op.get("moe") or {}
    eff = op.get("efficiency") or {}
    names = [str(moe.get("weight_dtype") or ""), str(eff.get("compute_spec") or "")]
    return any(tag in n.lower() for n in names for tag in _FP4_NAMES)


def plural(n: Any, word: str, many: str | None = None) -> str:
    """``1 call`` / ``3 calls``."""
    count = int(num(n) or 0)
    return f"{count} {word if count == 1 else (many or word + 's')}"


def joined(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# Short dtype names, as the Args column writes them (analysis §2).
_DTYPES = {
    "c10::bfloat16": "bf16", "bfloat16": "bf16", "bf16": "bf16",
    "c10::half": "fp16", "half": "fp16", "float16": "fp16", "fp16": "fp16",
    "float": "fp32", "float32": "fp32", "fp32": "fp32", "double": "fp64", "fp64": "fp64",
    "c10::float8_e4m3fnuz": "fp8", "c10::float8_e4m3fn": "fp8", "unsigned char": "fp8", "fp8": "fp8",
    "c10::float4_e2m1fn_x2": "fp4", "mxfp4": "fp4", "fp4": "fp4",
}


def dtype_text(raw: Any) -> str:
    """A dtype for a sentence: ``c10::BFloat16`` → ``bf16``; unknown names kept, escaped."""
    if raw is None or str(raw).strip() == "":
        return DASH
    short = _DTYPES.get(str(raw).strip().lower())
    return short if short else raw_inline(raw)
