"""The figures' order by time is a stable sort's, and each reader gets its columns or rows in that order."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.engine.ranking import Deferred, Ranked

times = st.lists(st.sampled_from([0.0, 1.0, 2.5, 2.5, 7.0, 1e-300, 1e300]), min_size=0, max_size=40)


def frame_of(values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"time_us": values, "row": list(range(len(values))),
                         "name": [f"op{i % 3}" for i in range(len(values))]},
                        schema={"time_us": pl.Float64, "row": pl.Int64, "name": pl.String})


@settings(max_examples=200, deadline=None)
@given(values=times)
def test_the_order_is_that_of_a_stable_sort_by_time_slowest_first(values):
    frame = frame_of(values)
    ranked = Ranked.by_time(frame)
    sorted_frame = frame.sort("time_us", descending=True, maintain_order=True)
    assert ranked.frame().equals(sorted_frame)
    assert ranked.columns(["name", "time_us"]).equals(sorted_frame.select("name", "time_us"))
    # Ties keep the input's order: rows of equal time in increasing input position.
    ranks = ranked.frame().get_column("row").to_list()
    assert ranks == sorted(range(len(values)), key=lambda i: -values[i])


@settings(max_examples=100, deadline=None)
@given(values=times.filter(bool), data=st.data())
def test_the_rows_at_given_ranks_are_those_of_the_sorted_frame(values, data):
    frame = frame_of(values)
    ranks = data.draw(st.lists(st.integers(0, len(values) - 1), max_size=10))
    ranked = Ranked.by_time(frame)
    assert ranked.rows(ranks).equals(ranked.frame()[ranks])


@settings(max_examples=100, deadline=None)
@given(values=times.filter(bool), data=st.data())
def test_deferred_facts_come_with_the_rows_of_their_groups(values, data):
    # Facts kept one row per group reach exactly the rows listed, as if every row had carried them.
    groups = data.draw(st.lists(st.integers(0, 3), min_size=len(values), max_size=len(values)))
    facts = pl.DataFrame({"fact": ["a", None, "c", "d"], "other": [1.5, 2.5, None, 4.0]})
    frame = frame_of(values).with_columns(pl.Series("__g", groups, dtype=pl.UInt32))
    ranked = Ranked.by_time(frame, (Deferred("__g", facts),))
    carried = frame.drop("__g").hstack(facts[frame.get_column("__g")].get_columns())
    assert ranked.frame().equals(carried.sort("time_us", descending=True, maintain_order=True))
    ranks = data.draw(st.lists(st.integers(0, len(values) - 1), max_size=10))
    assert ranked.rows(ranks).equals(ranked.frame()[ranks])
    assert ranked.columns(["name"]).equals(ranked.frame().select("name"))
