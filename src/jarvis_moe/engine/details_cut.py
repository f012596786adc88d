"""What is kept of each ``kernel_details_summary`` cell as the blocks of the ops CSV are read.

The cell differs on every row (it carries each signature's kernel
durations) and only its kernel names are ever read, and only for the rows
whose call stack names no kernel. Cutting it as each block is read keeps
the whole column out of memory; cutting it to nothing where it is not read
keeps its regex off most rows.
"""

from __future__ import annotations

from typing import Callable

import polars as pl

from jarvis_moe.engine.cells import details_cut_to_names, last_frames
from jarvis_moe.engine.csv_blocks import PerBlock

# Hash of each whole kernel-details cell, kept while the rows are checked for
# exact repeats: rows that differ only in that cell are not repeats.
DETAILS_HASH = "__details_hash"


def details_reading(kept: dict[int, str], details_at: int | None, stack_at: int | None, max_bytes: int,
                    deferred: bool) -> tuple[PerBlock | None, str | None]:
    """How the reader takes the kernel details: each block's cutter, and the column it defers (or None).

    ``kept`` maps the file position of each kept column to the reader's
    name of it. The details are deferred (``csv_blocks.read_blocks``) only
    with a stack to judge the blocks by and a kept cell after them in each
    row: a details cell that took in the rest of a block then shows.
    """
    if details_at is None:
        return None, None
    stack = kept[stack_at] if stack_at is not None else None
    later = deferred and stack is not None and max(kept) > details_at
    return details_cutter(kept[details_at], max_bytes, stack), kept[details_at] if later else None


def details_cutter(column: str, max_bytes: int, stack: str | None = None) -> PerBlock:
    """For each block of rows as it is read: ``column``'s cells cut to what is read of them, ``DETAILS_HASH`` added.

    The kernel names of a details cell are read only where the row's call
    stack (column ``stack``, when the CSV has one) names no kernel in its
    last frames (``cells.kernel_facts``, ``figures._with_family``): those
    cells are cut to their names, the others to nothing, so the regex over
    a cell that differs on every row runs only where its names are read.
    The hash is of the whole cell. A cell over ``max_bytes`` stays whole,
    for the reader to judge as it judges any other over-long cell; a stack
    over ``max_bytes``, which the reader will treat as unknown, names no
    kernel.

    A block read without ``column`` (see ``csv_blocks.read_blocks``) whose
    every stack names its kernels keeps none of its details: the reader
    makes each cell null, and its hash is null (the cell was not read; the
    check for repeated rows reads the file again should it need them). Any
    other block is parsed again with them.
    """
    cell = pl.col(column)
    unnamed: dict[str, bool] = {}  # stack: whether it names no kernel, shared by the blocks

    def cut(part: pl.DataFrame, reparse: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        if column not in part.columns:
            if _every_stack_named(part, stack, unnamed, max_bytes):  # the reader puts the null cells in
                return part.insert_column(part.width, pl.repeat(None, part.height, dtype=pl.UInt64,
                                                                eager=True).alias(DETAILS_HASH))
            return cut_each(reparse())  # some row reads its details: the judgement above stands
        # The usual block: no cell over the bound and every stack names its
        # kernels, so every cell is cut to nothing, in one query.
        if (part.get_column(column).str.len_bytes().max() or 0) <= max_bytes \
                and _every_stack_named(part, stack, unnamed, max_bytes):
            return part.with_columns(cell.hash().alias(DETAILS_HASH), pl.lit(None, pl.String).alias(column))
        return cut_each(part)

    def cut_each(part: pl.DataFrame) -> pl.DataFrame:
        details = part.get_column(column)
        over = (details.str.len_bytes() > max_bytes).fill_null(False)
        kept = pl.repeat(None, part.height, dtype=pl.String, eager=True).alias(column)
        if over.any():
            kept = details.zip_with(over, kept)
        rows = (_details_read(part, stack, unnamed, max_bytes) & ~over).arg_true()
        if not rows.is_empty():
            kept = kept.scatter(rows, part.select(details_cut_to_names(cell.gather(rows))).to_series())
        return part.with_columns(details.hash().alias(DETAILS_HASH), kept)

    return cut


def _every_stack_named(part: pl.DataFrame, stack: str | None, unnamed: dict[str, bool], max_bytes: int) -> bool:
    """Whether every row of ``part`` has a stack that names its kernels (none of its details is read)."""
    if stack is None or stack not in part.columns:
        return False
    seen = part.select(pl.col(stack).drop_nulls().unique().cast(pl.String).implode().alias("stacks"),
                       pl.col(stack).null_count().alias("nulls")).row(0, named=True)
    return not seen["nulls"] and not any(_verdicts(seen["stacks"], unnamed, max_bytes).values())


MAX_STACKS_KEPT = 4096  # verdicts kept from block to block


def _details_read(part: pl.DataFrame, stack: str | None, unnamed: dict[str, bool], max_bytes: int) -> pl.Series:
    """Whether each row's kernel names are read from its details: its stack names no kernel, or it has none.

    ``unnamed`` holds the verdict on each stack seen so far: a trace has a
    handful, so each is read once, not once per row or per block (a file
    with thousands is judged block by block).
    """
    if stack is None:
        return pl.repeat(True, part.height, eager=True)
    stacks = part.get_column(stack)
    verdicts = _verdicts(stacks.unique().drop_nulls().cast(pl.String).to_list(), unnamed, max_bytes)
    without = [text for text, unread in verdicts.items() if unread]
    read = stacks.is_null()
    return read | stacks.cast(pl.String).is_in(without) if without else read


def _verdicts(distinct: list[str], unnamed: dict[str, bool], max_bytes: int) -> dict[str, bool]:
    """Whether each of the ``distinct`` stacks names no kernel, judged once and kept in ``unnamed``."""
    new = [text for text in distinct if text not in unnamed]
    if new and len(unnamed) + len(new) > MAX_STACKS_KEPT:
        unnamed.clear()
        new = distinct
    if new:
        verdicts = pl.select(last_frames(pl.Series(new, dtype=pl.String)).list.len() == 0).to_series()
        unnamed.update((text, none or len(text.encode("utf-8")) > max_bytes)
                       for text, none in zip(new, verdicts.to_list()))
    return {text: unnamed[text] for text in distinct}
