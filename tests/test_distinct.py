"""Facts per distinct cell given back by group: against per-row computation and a dict of groups."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis_moe.engine import distinct
from jarvis_moe.engine.distinct import distinct_facts, distinct_groups

ids = st.one_of(st.none(), st.integers(0, 6), st.integers(0, 2**32 - 1))


def _reference(rows: list[tuple]) -> tuple[list[int], list[int]]:
    """Groups numbered in the order of their first rows, by a dict."""
    number: dict[tuple, int] = {}
    firsts: list[int] = []
    groups = []
    for i, row in enumerate(rows):
        if row not in number:
            number[row] = len(firsts)
            firsts.append(i)
        groups.append(number[row])
    return groups, firsts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 4), data=st.data(), path=st.sampled_from(["python", "slots", "search", "renumber"]))
def test_groups_are_those_of_a_dict(monkeypatch, width, data, path):
    rows = data.draw(st.lists(st.tuples(*[ids] * width), max_size=40))
    if path != "python":  # the frame's queries, not the loop for a few rows
        monkeypatch.setattr(distinct, "_PYTHON_ROWS", -1)
    if path != "slots":  # no table indexed by the key: every key is found by binary search
        monkeypatch.setattr(distinct, "_SLOTS_MIN", 0)
        monkeypatch.setattr(distinct, "_SLOTS_PER_ROW", 0)
    if path == "renumber":  # what is combined is renumbered before every further column
        monkeypatch.setattr(distinct, "_KEY_LIMIT", 2)
    frame = pl.DataFrame([list(col) for col in zip(*rows)] if rows else [[]] * width,
                         schema={f"c{i}": pl.UInt32 if i % 2 else pl.UInt64 for i in range(width)}, orient="col")
    group, firsts = distinct_groups(frame)
    assert (group.to_list(), firsts.to_list()) == _reference(rows)


@pytest.mark.parametrize("python_rows", [256, -1])
def test_equal_ids_with_a_null_are_one_group_and_a_null_is_not_zero(monkeypatch, python_rows):
    monkeypatch.setattr(distinct, "_PYTHON_ROWS", python_rows)
    frame = pl.DataFrame({"a": [None, 0, None, 0, 7], "b": [1, 1, 1, None, 1]}, schema={"a": pl.UInt32, "b": pl.UInt32})
    group, firsts = distinct_groups(frame)
    assert group.to_list() == [0, 1, 0, 2, 3]
    assert firsts.to_list() == [0, 1, 3, 4]


cells_text = st.sampled_from(["('c10::BFloat16', 'Float')", "('Float',)", None, "('x'", ""])
specs = st.sampled_from(["matrix_bf16", " matrix_fp8 ", "", None])


@pytest.mark.parametrize("as_categorical", [True, False])
@pytest.mark.parametrize("python_rows", [256, -1])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cells_text, specs, st.integers(0, 5), st.sampled_from(["op_a", "op_b", None])),
                     max_size=50))
def test_facts_are_those_computed_row_by_row(monkeypatch, as_categorical, python_rows, rows):
    monkeypatch.setattr(distinct, "_PYTHON_ROWS", python_rows)
    text = pl.Categorical if as_categorical else pl.String
    frame = pl.DataFrame(rows, schema={"t": text, "spec": text, "n": pl.Int64, "name": pl.String}, orient="row")
    facts = [pl.col("t").cast(pl.String).str.extract(r"'([^']*)'", 1).alias("first"),
             pl.concat_str([pl.col("name"), pl.col("spec").cast(pl.String).str.strip_chars()], separator="|")
             .alias("named_spec"),
             (pl.col("n") * 2).alias("twice")]
    group, table = distinct_facts(frame, ("t", "spec", "n"), facts, keep=("name",))
    want = frame.select(facts)
    assert table.columns == want.columns
    assert table[group].to_dicts() == want.to_dicts()
    assert table.height == frame.unique(subset=["t", "spec", "n", "name"]).height


def test_without_key_cells_every_row_is_one_group():
    frame = pl.DataFrame({"x": [3, 1, 2]})
    group, table = distinct_facts(frame, ("absent",), [pl.lit("same").alias("fact")])
    assert group.to_list() == [0, 0, 0]
    assert table.to_dicts() == [{"fact": "same"}]
