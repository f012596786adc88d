"""What a run's replay artifact offers the findings page, as typed fields.

The page's Path B names the replay script and, per case, the op it replays
and the backend that runs it first. The backend travels as its key
(``vllm``, ``sglang``, ``aiter``, ``triton``, ``torch``), never as a label, so
the findings choose their own words and nothing parses display text.
"""

from __future__ import annotations

from typing import NamedTuple


class ReplayCaseRef(NamedTuple):
    """One case of the spec: its number, the index of its op in the metrics, its first backend's key."""

    case: int
    op_index: int
    backend: str


class ReplayRef(NamedTuple):
    """The replay script written with a run (path relative to the output directory) and its cases."""

    script: str
    cases: tuple[ReplayCaseRef, ...]

    def op_indexes(self) -> frozenset[int]:
        """Indexes of the operations that have a case."""
        return frozenset(c.op_index for c in self.cases)
