"""Display forms of trace text.

Op, kernel and module names come from the trace and may hold anything. The
metrics JSON keeps the raw strings (``name``, ``kernel_name``, ``call_chain``)
and, next to them, display strings (``args``, ``launcher_path``,
``kernel_name_trunc`` and the ``operation`` of impact estimates) that are safe
to drop into a markdown table cell apart from ``|``, which the table writer
escapes. Readers see the same characters; only line breaks become spaces and
HTML-significant characters become entities, so a name can never open or
close an HTML comment, start a tag, or begin a line of its own.
"""

from __future__ import annotations

import re

_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\u0085\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def display_text(raw: object) -> str:
    """One-line, HTML-neutral form of a trace string."""
    text = "" if raw is None else str(raw)
    text = _LINE_BREAKS.sub(" ", text)
    text = _CONTROL.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").strip()
