"""Facts of text cells computed once per distinct cell, and given back to every row by position.

The ops of a trace share a few call stacks, dtype lists and specs over
thousands of shapes, so the regex passes that read those cells run over
their distinct values only. Each row's cells are turned into one integer
key (the cells' categorical codes, combined), the distinct keys numbered,
and every row finds its facts by its key's number: a gather, where a join
on the cells would hash every row's key again and copy every column of
the frame into a new one.
"""

from __future__ import annotations

import polars as pl

# Combinations of cells from which a fact of one cell is computed per value of that cell.
_GROUPED_FROM = 1024
# Keys up to this multiple of the rows (and at least _SLOTS_MIN) are numbered
# through a table indexed by the key itself; larger ones by a binary search.
_SLOTS_PER_ROW = 4
_SLOTS_MIN = 1 << 16
_KEY_LIMIT = 1 << 62
# Facts of at least this many distinct values are computed on the streaming engine.
_STREAMED_FROM = 2048
# Up to this many rows the groups are numbered in Python: a dozen small
# queries cost more than the loop.
_PYTHON_ROWS = 256


def distinct_groups(ids: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """(each row's group, the first row of each group) for the distinct rows of non-negative integer columns.

    Groups are numbered in the order of their first rows; a null is a value
    like any other (two rows with a null in the same column and equal other
    ids are one group).
    """
    if ids.height <= _PYTHON_ROWS:
        return _small_groups(ids)
    key = _combined_key(ids)
    firsts = key.arg_unique()
    keys = key.gather(firsts)
    count = pl.int_range(len(keys), dtype=pl.UInt32, eager=True)
    top = int(keys.max()) + 1 if len(keys) else 0
    if top <= max(_SLOTS_PER_ROW * ids.height, _SLOTS_MIN):
        slots = pl.repeat(None, top, dtype=pl.UInt32, eager=True).scatter(keys, count)
        return slots.gather(key), firsts
    order = keys.arg_sort()
    return order.gather(keys.gather(order).search_sorted(key)).cast(pl.UInt32), firsts


def _small_groups(ids: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """:func:`distinct_groups` by a dict of the rows."""
    number: dict[tuple, int] = {}
    firsts: list[int] = []
    groups = []
    for i, row in enumerate(ids.iter_rows()):
        group = number.setdefault(row, len(number))
        if group == len(firsts):
            firsts.append(i)
        groups.append(group)
    return pl.Series(groups, dtype=pl.UInt32), pl.Series(firsts, dtype=pl.UInt32)


def _combined_key(ids: pl.DataFrame) -> pl.Series:
    """One UInt64 per row, equal for two rows exactly when all their ids are (nulls included); one column at least."""
    key: pl.Series | None = None
    width = 1
    for name in ids.columns:
        column = ids.get_column(name).cast(pl.UInt64)
        top = column.max()
        span = (-1 if top is None else int(top)) + 2  # the values 0 .. top, and null as top + 1
        column = column.fill_null(span - 1)
        if key is not None and width * span >= _KEY_LIMIT:  # renumber what is combined so far densely
            key = key.rank("dense").cast(pl.UInt64) - 1
            width = int(key.max()) + 1 if ids.height else 1
        key = column if key is None else key + column * width
        width *= span
    assert key is not None
    return key


def distinct_facts(
    df: pl.DataFrame, cells: tuple[str, ...], facts: list[pl.Expr], keep: tuple[str, ...] = (),
    first: list[pl.Expr] | None = None,
) -> tuple[pl.Series, pl.DataFrame]:
    """(each row's group, the ``facts`` of each group) for the distinct values of ``keep`` and ``cells``.

    ``facts`` read the key columns and the columns of ``first``, which are
    computed before them, in order, and not kept (a parsed list that several
    facts read is parsed once; each of ``first`` may read those before it).
    Each fact is computed value by value (no aggregation over rows) and
    named apart from the key cells. A row's facts are ``facts[group]``: a
    caller gathers each fact for the rows that read it, every row or a few.
    Without key cells in ``df`` every row is one group.
    """
    keys = [*keep, *(c for c in cells if c in df.columns)]
    if not keys:
        return pl.repeat(0, df.height, dtype=pl.UInt32, eager=True), df.head(1).select(facts)
    ids = [f"__id_{i}" for i in range(len(keys))]
    id_frame = df.select(cell_id(df, c).alias(i) for c, i in zip(keys, ids))
    group, firsts = distinct_groups(id_frame)
    distinct = id_frame[firsts].hstack(df.select(keys)[firsts].get_columns())
    if first:
        staged = distinct.lazy()
        for expr in first:
            staged = staged.with_columns(expr)
        distinct = staged.collect()
    distinct = _with_facts(distinct, dict(zip(keys, ids)), facts)
    return group, distinct.drop(*ids, *keys, *(e.meta.output_name() for e in first or ()))


def _with_facts(distinct: pl.DataFrame, id_of: dict[str, str], facts: list[pl.Expr]) -> pl.DataFrame:
    """``distinct`` with ``facts``; a fact that reads one key cell is computed once per value of that cell.

    The distinct combinations of several cells are many more than the
    distinct values of each (a dtype list shared by every shape of 8 192
    token counts is parsed once, not 8 192 times).
    """
    # Few rows: a few queries more cost more than their facts. One cell: its
    # values are the distinct rows already.
    if distinct.height < _GROUPED_FROM or len(id_of) == 1:
        return with_columns_once(distinct, facts)
    by_cell: dict[str, list[pl.Expr]] = {}
    rest: list[pl.Expr] = []
    for fact in facts:
        roots = fact.meta.root_names()
        if len(set(roots)) == 1 and roots[0] in id_of:
            by_cell.setdefault(roots[0], []).append(fact)
        else:
            rest.append(fact)
    order = distinct.columns + [fact.meta.output_name() for fact in facts]
    for cell, cell_facts in by_cell.items():
        key = id_of[cell]
        values = with_columns_once(distinct.select(key, cell).unique(subset=key, keep="first"), cell_facts)
        distinct = distinct.join(values.drop(cell), on=key, how="left", nulls_equal=True, maintain_order="left")
    return with_columns_once(distinct, rest).select(order)


def with_columns_once(df: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """``df.with_columns(exprs)``, each repeated part of the expressions computed once.

    An eager ``with_columns`` evaluates every occurrence of a subexpression
    (a fact that tests a regex match four times runs the regex four times);
    the lazy engine finds the common ones and computes each once.
    """
    if not exprs:
        return df
    # Thousands of values (one perf_params per token count) are parsed on
    # every core, a few on one: the streaming engine's morsels cost more
    # than they save under about 2 000 rows (8 192 regex extracts: 3.9 ms
    # against 6.7 ms on two cores).
    engine = "streaming" if df.height >= _STREAMED_FROM else "in-memory"
    return df.lazy().with_columns(exprs).collect(engine=engine)


def cell_id(df: pl.DataFrame, column: str) -> pl.Expr:
    """An exact integer id of each cell: its code as a categorical, else its dense rank.

    A text column is cast first: the cast hashes each cell once, where a
    dense rank sorted them (0.27 s against 0.03 s for a million op names).
    The codes are exact within one frame, not from one frame to the next.
    """
    dtype = df.schema[column]
    if dtype == pl.Categorical:
        return pl.col(column).to_physical()
    if dtype == pl.String:
        return pl.col(column).cast(pl.Categorical).to_physical()
    return pl.col(column).rank("dense")
