"""Formatting helpers of the findings page: identifiers, sentences, numbers, tables.

Trace text reaches the page in three forms, each safe for where it goes:

- :func:`code` writes an identifier (op, kernel, module, file name) as an
  inline code span: it reads cleanly raw and rendered, and nothing inside a
  code span is markdown. Text holding ``&``, ``<`` or ``>`` (a marker or
  comment in a span would still be one to the host's text search), ``#``
  (the host finds its sections by their text, ``## Recommendations``, even
  inside a span) or ``**`` (it finds the labels, ``**Resolution:**``, the
  same way) is written escaped instead, like any sentence text;
- :func:`inline` escapes display text for a sentence: every character that
  could start inline markdown is backslash-escaped, ``&``, ``<`` and ``>``
  become entities, so readers see the same characters;
- :func:`data_cell` keeps the host-parsed Data-table cells verbatim (the
  host compares them with the metrics JSON, which holds the trace's text
  unescaped), escaping ``|``; a cell that would be markup (a tag, a
  comment, an autolink, an entity) or that holds ``**`` (a label such as
  ``**Resolution:**`` would read as one to the host's text search, out of
  its order) is entity-escaped instead, the one case where safety wins over
  the verbatim copy.

Trace text is never placed at the start of a line, so it cannot start a
heading, list or quote. Numbers are printed as the engine rounded them:
each figure has one number of places, used wherever it appears.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from jarvis_moe.safetext import plain_text

DASH = "—"

_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]|~#!])")
_PARTIAL_ENTITY = re.compile(r"&[#A-Za-z0-9]*$")


def inline(display: object) -> str:
    """Display text made inert inside a sentence, a title or a reader-table cell."""
    s = plain_text(display)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _INLINE_SPECIALS.sub(r"\\\1", s)


def code(display: object, *, in_table: bool = False, limit: int | None = None) -> str:
    """An identifier as an inline code span (or escaped text when a span would garble it)."""
    text = plain_text(display).strip()
    if limit is not None:
        text = shorten(text, limit)
    if not text:
        return DASH
    if any(c in text for c in "&<>#") or "**" in text:
        return inline(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    body = text.replace("|", "\\|") if in_table else text
    if not in_table and "|" in text:
        return inline(text)
    return f"{fence}{pad}{body}{pad}{fence}"


def shorten(display: str, limit: int = 60) -> str:
    """Cut display text to ``limit`` characters without splitting an entity."""
    if len(display) <= limit:
        return display
    return _PARTIAL_ENTITY.sub("", display[:limit]).rstrip() + "…"


# What markdown would read as markup: a tag, a comment or its end, a
# declaration or instruction, an autolink, an entity. ``<br>`` is the
# display strings' own joiner and stays.
_MARKUP = re.compile(
    r"<[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|</[A-Za-z][A-Za-z0-9-]*\s*>|<!--|-->|<[?!]"
    r"|<[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>|<[^\s<>@]+@[^\s<>@]+>"
    r"|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)


def safe_cell(display: str) -> str:
    """Display text as a Data cell prints it: verbatim, unless markdown would read markup in
    it or a host's text search a label (``**``: its asterisks become ``&#42;``)."""
    pieces = display.split("<br>")
    if not any(_MARKUP.search(p) or "**" in p for p in pieces):
        return display
    return "<br>".join(p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "&#42;")
                       for p in pieces)


def data_cell(display: object) -> str:
    """A Data-table cell: the display text verbatim (markup escaped, see :func:`safe_cell`), ``|`` escaped."""
    text = plain_text(display)
    return DASH if text == "" else safe_cell(text).replace("|", "\\|")


def num(value: float | int | None, places: int = 2, *, thousands: bool = False) -> str:
    """A figure with the places it was rounded to, or an em dash."""
    if value is None:
        return DASH
    text = f"{value:,.{places}f}" if thousands else f"{value:.{places}f}"
    # A figure that rounds to zero is 0, never -0.
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


def pct(value: float | None, places: int = 2) -> str:
    return DASH if value is None else f"{num(value, places)}%"


def peak(value: float | None) -> str:
    """A platform peak as the metadata wrote it: ``708``, ``5.3``."""
    return DASH if value is None else f"{round(value, 2):g}"


def count(n: int | None) -> str:
    return DASH if n is None else str(n)


def value(x: float | int | None) -> str:
    """A figure exactly as stored: whole numbers plain, others with the places they carry."""
    if x is None:
        return DASH
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def joined(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a pipe table; cells must already be escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def bound_label(bound: str | None) -> str:
    return f"{bound}-bound" if bound in ("memory", "compute") else DASH


def sentence(text: str) -> str:
    """End a line of prose with a full stop (warnings come without one)."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def tokens(count: float | int | None) -> str:
    """``1 token``, ``1.57 tokens``: a token count with its noun."""
    return f"{value(count)} token{'' if count == 1 else 's'}"
