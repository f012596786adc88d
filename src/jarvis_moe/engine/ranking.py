"""The per-op figures in the report's order, slowest first, gathered in that order only where read.

Every op's figures are computed over every row, but most of their columns
are read for the few ops the report lists. Sorting the whole frame by time
moved every column of every row (0.2 s at a million rows); here the order
is found once from the time column, and each reader gathers the columns it
reads in that order, or the rows it lists. Facts of distinct cells that
only listed ops read stay one row per distinct cell (:class:`Deferred`)
and are given back to those rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import polars as pl


class Deferred(NamedTuple):
    """Facts not given back to every row: ``group``, the column of each row's group; ``facts``, one row per group."""

    group: str
    facts: pl.DataFrame


class Ranked(NamedTuple):
    """``every``: the figures, one row per op, in the input's order; ``order``: its row at each rank.

    ``deferred`` holds the facts of each op that only :meth:`rows` and
    :meth:`frame` give (their group columns are in ``every``).
    """

    every: pl.DataFrame
    order: pl.Series
    deferred: tuple[Deferred, ...] = ()

    @classmethod
    def by_time(cls, every: pl.DataFrame, deferred: tuple[Deferred, ...] = ()) -> Ranked:
        """Ranked by ``time_us``, slowest first; ties keep the input's order (as a stable sort)."""
        order = every.select(pl.arg_sort_by("time_us", descending=True, maintain_order=True)).to_series()
        return cls(every, order, deferred)

    def columns(self, names: Sequence[str]) -> pl.DataFrame:
        """These columns of every op, in rank order.

        Each is made one piece first: a gather over a column in the reader's
        pieces looks each index up piece by piece (0.22 s for a million names
        in ten pieces, against 0.01 s for the copy into one and its gather).
        """
        return self.every.select(names).rechunk().select(pl.all().gather(self.order))

    def rows(self, ranks: Sequence[int]) -> pl.DataFrame:
        """Every column of the ops at these ranks, in the order given, their deferred facts with them."""
        return self._with_facts(self.every[self.order.gather(list(ranks))])

    def frame(self) -> pl.DataFrame:
        """Every column of every op, in rank order: the frame a sort by time gives."""
        return self._with_facts(self.every[self.order])

    def _with_facts(self, picked: pl.DataFrame) -> pl.DataFrame:
        groups = [d.group for d in self.deferred]
        facts = [column for d in self.deferred for column in d.facts[picked.get_column(d.group)].get_columns()]
        return picked.drop(groups).hstack(facts)
