"""An op name either shows in its Data-table row or is refused as empty.

The reader refuses a name that is blank once the display rule
(:func:`jarvis_moe.safetext.plain_text`) has dropped its control and bidi
characters; the page prints each member's name in the Operation cell, and
the findings self-check matches that cell against the finding's members.
When the reader's rule knew fewer characters than the display rule, a name
of only C1 and bidi controls (``"\\x80\\u202e"``) passed the reader, showed
as ``—`` in the Data table and the self-check stopped the run with an
internal error (``row '—' is not a member of the finding``). These tests
hold the two rules together.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from samples import conformance_problems
from jarvis_moe.engine import read_csv
from jarvis_moe.engine.read_csv import EMPTY_NAME
from jarvis_moe.engine.trace_text import display_text
from jarvis_moe.findings.check import split_cells
from jarvis_moe.findings.text import data_cell, safe_cell
from jarvis_moe.run import analyse

# The input that failed: C1 control U+0080 and the bidi override U+202E.
FAILING_NAME = "\x80\u202e"
# Characters the display rule treats specially: breaks, C0/C1 controls, bidi marks,
# Unicode spaces, and what a table cell escapes.
SPECIAL = st.sampled_from(list("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f\x80\x85\x9b\xa0 \u061c\u200e\u2028\u2029"
                               "\u202a\u202e\u2066\u2069\u3000\\|—`<>&"))
name_text = st.text(alphabet=st.one_of(SPECIAL, st.characters(codec="utf-8")), max_size=8)
FIXTURE = "fam-aiter-1stage-llama4-scout-fp8-mi325x"
CAT = "moe_fused"


@settings(max_examples=500, deadline=None)
@given(names=st.lists(name_text, min_size=1, max_size=20))
@example(names=[FAILING_NAME])
def test_a_name_the_reader_keeps_shows_in_its_data_cell(names):
    refused = pl.Series(names, dtype=pl.String).str.contains(EMPTY_NAME).to_list()
    for name, is_refused in zip(names, refused):
        shown = display_text(name)
        assert is_refused == (shown == ""), repr(name)
        if not is_refused:
            # The cell as the self-check reads it back from the table line.
            cell = split_cells(f"| {data_cell(shown)} | x |")[0]
            assert cell == safe_cell(shown) != "—" or shown == "—", repr(name)


def _with_first_name(root: Path, name: str) -> None:
    path = root / "category_data" / f"{CAT}_ops.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    rows[1][rows[0].index("name")] = name
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.mark.parametrize("streamed_from", [0, 10**9], ids=["streaming", "in-memory"])
def test_a_name_of_only_c1_and_bidi_controls_is_an_input_error(fixture_copy, monkeypatch, streamed_from):
    monkeypatch.setattr(read_csv, "NAMES_STREAMED_FROM", streamed_from)
    root = fixture_copy(FIXTURE)
    _with_first_name(root, FAILING_NAME)
    result = analyse(root, category=CAT, scope="standalone", options={"roofline_plot": False})
    assert not result.internal_error, result.message
    assert (result.status.value, result.exit_code) == ("ERROR", 2)
    assert result.message == (f"category_data/{CAT}_ops.csv (row 1, column 'name'): "
                              "the op name is empty (or only control characters)")
    assert conformance_problems(root, CAT) == []


@settings(max_examples=25, deadline=None)
@given(name=name_text)
@example(name=FAILING_NAME)
@example(name=" \u2066x\u2069 ")
def test_any_top_op_name_ends_in_a_page_that_passes_its_check(name):
    """The fixture's top op (a ranked finding's member) renamed: OK with the name shown, or the empty-name ERROR."""
    with tempfile.TemporaryDirectory(prefix="jarvis-name-") as tmp:
        root = Path(tmp) / FIXTURE
        shutil.copytree(FIXTURES / FIXTURE, root)
        _with_first_name(root, name)
        result = analyse(root, category=CAT, scope="standalone", options={"roofline_plot": False})
        assert not result.internal_error, result.message
        if "\x00" in name:  # a NUL byte makes the file binary, not a CSV
            assert result.status.value == "ERROR" and "binary data (NUL bytes)" in result.message
        elif display_text(name) == "":
            assert result.status.value == "ERROR" and "op name is empty" in result.message
        else:
            assert result.status.value == "OK", result.message
            metrics = json.loads((root / "category_data" / f"{CAT}_metrics.json").read_text(encoding="utf-8"))
            assert display_text(name) in {m["operation"] for f in metrics["category_findings"] for m in f["members"]}
        assert conformance_problems(root, CAT) == []
