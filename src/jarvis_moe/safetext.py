"""The one rule for text from a trace or its metadata that a reader will see.

A string that reaches the findings page or a display field of the metrics
JSON (``platform``, ``display_name``, ``args``, warnings, ...) keeps every
printable character but loses the ones that act on a terminal or an editor
instead of showing: control characters (C0, DEL, C1: ESC sequences can
retitle or clear a terminal, BEL rings it) and the bidirectional marks,
embeddings, overrides and isolates that make text read in another order
than it is stored. Line and paragraph breaks and tabs become one space, so
a string stays on one line and cannot forge another.
"""

from __future__ import annotations

import re

# Breaks and tabs: each run becomes one space.
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
# Controls (C0, DEL, C1) and bidi controls: removed. The same text is a valid
# pattern for polars (Rust regex), for column-wise checks.
ACTING_PATTERN = r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
_INVISIBLE = re.compile(ACTING_PATTERN)


def plain_text(raw: object) -> str:
    """``raw`` as one line without control or bidi-control characters (``None`` is ``""``)."""
    return _INVISIBLE.sub("", _BREAKS.sub(" ", "" if raw is None else str(raw)))
