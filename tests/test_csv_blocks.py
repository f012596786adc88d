"""Reading the ops CSV in blocks gives what one read of the whole file gives.

Blocks end at record ends, found by counting quotes; cells with quoted
commas, doubled quotes and line breaks must never be cut. The kernel-details
cells are cut to their kernel names as they are read (to nothing where the
row's call stack names its kernels), and the kernels and library read from
the cut cells are those of the whole ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csvbuild import write_output_dir
from jarvis_moe.engine import cells, csv_blocks, details_cut, read_csv
from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine.csv_blocks import _blocks, _record_end, quotes_in, read_blocks
from jarvis_moe.engine.load import load_inputs
from jarvis_moe.errors import ContractError

OPTIONS = dict(has_header=False, skip_rows=1, row_index_name="__row", row_index_offset=1, raise_if_empty=False,
               truncate_ragged_lines=True)
cell_text = st.text(alphabet=st.sampled_from('ab,"\n\r x\'µ'), max_size=12)


def _write(path: Path, rows: list[list[str]], eol: str = "\n") -> None:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator=eol).writerows([["a", "b", "c"], *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")


def record_blocks(path: Path, eol: bytes, block_bytes: int | None = None, tail: int = csv_blocks.TAIL_BYTES,
                  guess: bool = False) -> list[tuple[bytes, bool]]:
    """The blocks the reader cuts ``path`` into: (bytes, leaves a quote open)."""
    with path.open("rb") as fh:
        return [(data, unclosed) for _, data, unclosed, _ in _blocks(fh.fileno(), eol, block_bytes, tail, guess=guess)]


def test_the_record_end_is_the_last_line_end_outside_quotes():
    # The last line break is inside the quoted "x\ny" (one quote before it), so the cut is after "1,2\n".
    assert _record_end(b'1,2\n3,"x\ny', b"\n") == 4
    assert _record_end(b'1,"a""b"\n2', b"\n") == 9  # a doubled quote keeps the count even
    assert _record_end(b'1,"open\nstill', b"\n") == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), quotes=st.lists(st.integers(0, 199), max_size=40),
       slice_bytes=st.integers(1, 64))
def test_quotes_are_counted_as_bytes_count_counts_them(monkeypatch, data, quotes, slice_bytes):
    # Slices of 1 to 64 bytes: the quotes of every slice and of the last, partial one are counted.
    raw = bytearray(data)
    for i in quotes:
        if i < len(raw):
            raw[i] = ord('"')
    monkeypatch.setattr(csv_blocks, "COUNT_SLICE", slice_bytes)
    assert quotes_in(bytes(raw)) == bytes(raw).count(b'"')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell_text, min_size=3, max_size=3), min_size=1, max_size=30),
       block=st.integers(1, 64), tail=st.integers(1, 80))
def test_blocks_read_the_same_rows_as_one_read(tmp_path, rows, block, tail):
    path = tmp_path / "t.csv"
    _write(path, rows)
    schema = {"column_1": pl.String, "column_2": pl.Categorical, "column_3": pl.String}
    whole = pl.read_csv(path, schema=schema, **OPTIONS)
    blocks = list(record_blocks(path, b"\n", block, tail))
    assert b"".join(data for data, _ in blocks) == path.read_bytes()
    assert not any(unclosed for _, unclosed in blocks)  # every quote the csv module writes is closed
    # Every block but the last ends with a line end outside quotes (after an even number of them).
    assert all(data.endswith(b"\n") and data.count(b'"') % 2 == 0 for data, _ in blocks[:-1])
    parts = read_blocks(path, schema, OPTIONS, block_bytes=block)
    assert parts.to_dicts() == whole.to_dicts()
    assert parts.schema == whole.schema


def test_old_mac_line_ends_are_cut_at_carriage_returns(tmp_path):
    path = tmp_path / "t.csv"
    _write(path, [["1", "x\ry", "2"], ["3", "4", "5"]], eol="\r")
    options = {**OPTIONS, "eol_char": "\r"}
    parts = read_blocks(path, {f"column_{i}": pl.String for i in (1, 2, 3)}, options, eol="\r", block_bytes=3)
    assert parts.get_column("column_2").to_list() == ["x\ry", "4"]
    assert parts.get_column("__row").to_list() == [1, 2]


def test_a_quote_never_closed_is_still_an_error(tmp_path):
    # A categorical column would take the open cell in; the last block is read as plain text instead.
    (tmp_path / "category_data").mkdir()
    write_output_dir(tmp_path, [{"name": "vllm::fused_moe", "Kernel Time (µs)_sum": "1.0",
                                 "call_stack_full": "['a', 'b']"}])
    path = tmp_path / "category_data" / "moe_fused_ops.csv"
    path.write_bytes(path.read_bytes().rstrip(b"\n")[:-4])
    with pytest.raises(ContractError, match="a quoted cell is never closed"):
        load_inputs(CategoryPaths(tmp_path, "moe_fused"))


name_text = st.text(alphabet=st.sampled_from("ab_:'\"\\ ,{}"), max_size=10)


@settings(max_examples=100, deadline=None)
@given(names=st.lists(name_text, max_size=4), quote=st.sampled_from(["'", '"']))
def test_names_read_from_the_cut_details_are_those_of_the_whole_cell(names, quote):
    def entry(name: str) -> str:
        escaped = name.replace("\\", "\\\\").replace(quote, "\\" + quote)
        return (f"{{'name': {quote}{escaped}{quote}, 'stream': 7, 'count': 3, "
                f"'mean_duration_us': np.float64(12.5)}}")

    cell = "[" + ", ".join(entry(n) for n in names) + "]"
    frame = pl.DataFrame({"kernel_details_summary": [cell, None]})
    cut = frame.select(cells.details_cut_to_names(pl.col("kernel_details_summary")).alias("kernel_details_summary"))
    whole = frame.select(cells.detail_kernels(frame)).to_series().to_list()
    assert cut.select(cells.detail_kernels(cut)).to_series().to_list() == whole
    assert whole[0] == names


def test_rows_differing_only_in_their_kernel_durations_are_not_repeats(tmp_path):
    row = {"name": "vllm::fused_moe", "Kernel Time (µs)_sum": "1.0", "ex_UID": "1",
           "kernel_details_summary": "[{'name': 'k', 'mean_duration_us': 1.5}]"}
    rows = [row, {**row, "kernel_details_summary": "[{'name': 'k', 'mean_duration_us': 2.5}]"}, dict(row)]
    inputs = load_inputs(CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused"))
    assert inputs is not None
    # Rows 1 and 3 are the same row; row 2 differs only in a duration of its kernel details.
    assert inputs.frame.get_column("__row").to_list() == [1, 2]
    assert inputs.frame.get_column("kernel_details_summary").to_list() == ["[{'name': 'k'}]"] * 2
    assert details_cut.DETAILS_HASH not in inputs.frame.columns


def test_rows_whose_stacks_name_the_kernels_are_told_apart_by_their_details_too(tmp_path):
    # Every stack names its kernel: the block takes the path that cuts every cell to nothing.
    row = {"name": "vllm::fused_moe", "Kernel Time (µs)_sum": "1.0", "ex_UID": "1",
           "call_stack_full": "['a.py(1): f', 'fused_moe_kernel']",
           "kernel_details_summary": "[{'name': 'k', 'mean_duration_us': 1.5}]"}
    rows = [row, {**row, "kernel_details_summary": "[{'name': 'k', 'mean_duration_us': 2.5}]"}, dict(row)]
    inputs = load_inputs(CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused"))
    assert inputs is not None
    assert inputs.frame.get_column("__row").to_list() == [1, 2]
    assert inputs.frame.get_column("kernel_details_summary").to_list() == [None, None]


STACKS = [
    None,  # no stack: the details name the kernels
    "",  # blank
    "[]",  # no frame at all
    "['a.py(1): f', 'b.py(2): g', 'fused_moe_kernel']",  # one stack, its kernel last
    "['a.py(1): f', ['b.py(2): g', 'kernel_a'], ['b.py(3): h', 'kernel_b']]",  # one per kernel
    "['a.py(1): f', ['b.py(2): g', '  ']]",  # a blank last frame: named, but no kernel
    "not a list",
]
DETAILS = [None, "", "[]", "[{'name': 'triton_fused_moe', 'mean_duration_us': np.float64(1.5)}]",
           "[{'name': 'ck_moe_stage1', 'count': 2}, {'name': 'aiter::fmoe_int8', 'count': 2}]",
           "[{'name': 'marlin_moe_wna16', 'mean_duration_us': 9.0}]"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(STACKS), st.sampled_from(DETAILS),
                               st.sampled_from(["vllm::moe_forward", "fused_moe", "aten::mm"])),
                     min_size=1, max_size=10))
def test_kernels_and_libraries_read_from_cut_details_are_those_of_the_whole_cells(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("cut")
    write_output_dir(root, [{"name": name, "Kernel Time (µs)_sum": f"{i + 1}", "ex_UID": str(i),
                             "call_stack_full": stack or "", "kernel_details_summary": details or ""}
                            for i, (stack, details, name) in enumerate(rows)])
    inputs = load_inputs(CategoryPaths(root, "moe_fused"))
    assert inputs is not None
    read = inputs.frame
    whole = pl.read_csv(root / "category_data" / "moe_fused_ops.csv", infer_schema=False)
    assert read.height == whole.height  # each row has its own ex_UID: no repeats
    # What the listed ops show, and the library column-wise: the same from the cut cells.
    assert (read.select(cells.kernel_facts(read)).to_series().to_list()
            == whole.select(cells.kernel_facts(whole)).to_series().to_list())
    from jarvis_moe.engine.figures import POSITION, _with_family

    def libraries(frame: pl.DataFrame) -> list:
        base = frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(POSITION), pl.col("name"),
                            *(c for c in cells.STACK_CELLS if c in frame.columns))
        return _with_family(base, frame)[0].sort(POSITION).get_column("library").to_list()

    assert libraries(read) == libraries(whole)


def test_details_are_cut_to_nothing_where_the_stack_names_the_kernels(tmp_path):
    named = "['a.py(1): f', 'fused_moe_kernel']"
    details = "[{'name': 'k', 'mean_duration_us': 1.5}]"
    rows = [{"name": "fused_moe", "Kernel Time (µs)_sum": "1", "call_stack_full": named,
             "kernel_details_summary": details},
            {"name": "fused_moe", "Kernel Time (µs)_sum": "2", "call_stack_full": "",
             "kernel_details_summary": details}]
    inputs = load_inputs(CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused"))
    assert inputs is not None
    assert inputs.frame.get_column("kernel_details_summary").to_list() == [None, "[{'name': 'k'}]"]


def test_details_are_read_where_the_stack_is_too_long_to_be_kept(tmp_path):
    # The reader treats an over-long stack as unknown: the kernels then come from the details.
    long_stack = "['" + "a.py(1): f', '" * 6000 + "fused_moe_kernel']"
    assert len(long_stack) > read_csv.MAX_CELL_BYTES
    rows = [{"name": "fused_moe", "Kernel Time (µs)_sum": "1", "call_stack_full": long_stack,
             "kernel_details_summary": "[{'name': 'triton_k', 'mean_duration_us': 1.5}]"}]
    inputs = load_inputs(CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused"))
    assert inputs is not None
    frame = inputs.frame
    assert frame.get_column("call_stack_full").to_list() == [None]
    assert frame.select(cells.kernel_facts(frame)).to_series().to_list() == [["triton_k"]]


def test_a_file_with_more_stacks_than_are_kept_judges_each_block_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(details_cut, "MAX_STACKS_KEPT", 2)
    rows = [{"name": "fused_moe", "Kernel Time (µs)_sum": f"{i + 1}", "ex_UID": str(i),
             "call_stack_full": f"['a.py({i}): f', 'kernel_{i}']" if i % 3 else "[]",
             "kernel_details_summary": f"[{{'name': 'detail_{i}'}}]"} for i in range(12)]
    root = write_output_dir(tmp_path, rows)
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 64)
    monkeypatch.setattr(csv_blocks, "MAX_BLOCK_BYTES", 64)
    inputs = load_inputs(CategoryPaths(root, "moe_fused"))
    assert inputs is not None
    frame = inputs.frame
    assert frame.select(cells.kernel_facts(frame)).to_series().to_list() == [
        [f"kernel_{i}"] if i % 3 else [f"detail_{i}"] for i in range(12)]


blank_or_not = st.sampled_from(["", " ", "\t", "x", " y "])


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 9)), st.one_of(st.none(), blank_or_not),
                               st.one_of(st.none(), blank_or_not)), min_size=1, max_size=12),
       text_time=st.booleans())
def test_blank_records_are_those_whose_every_cell_is_blank(rows, text_time):
    # Only rows with a blank time sum are read cell by cell; the result must be that of reading every cell.
    times = [None if t is None else (f" {t} " if text_time else t) for t, _, _ in rows]
    frame = pl.DataFrame({"t": times, "a": [a for _, a, _ in rows], "b": [b for _, _, b in rows]},
                         schema={"t": pl.String if text_time else pl.Float64, "a": pl.Categorical, "b": pl.String})
    frame = frame.with_row_index("__row", 1)
    kept = read_csv._skip_blank_records(frame, "t")

    def blank(cell: object) -> bool:
        return cell is None or (isinstance(cell, str) and not cell.strip())

    expected = [r for r in frame.drop("__row").rows() if not all(blank(c) for c in r)]
    assert kept.drop("__row").rows() == expected
    assert kept.get_column("__row").to_list() == list(range(1, len(expected) + 1))


@pytest.mark.parametrize("threads, merged, merged_rows", [(1, 2, 1000), (3, 5, 1000), (2, 1000, 7)])
def test_any_number_of_parsing_threads_and_merges_reads_the_same_rows(tmp_path, monkeypatch, threads, merged,
                                                                      merged_rows):
    # 200 rows in blocks of 40 bytes: dozens of blocks, parsed on 1 to 3 threads, merged every 2 or 5
    # blocks, or every 7 rows.
    path = tmp_path / "t.csv"
    _write(path, [[str(i), f"x\n{i % 7}", "a,b" if i % 3 else ""] for i in range(200)])
    monkeypatch.setattr(csv_blocks, "MAX_PARSE_THREADS", threads)
    monkeypatch.setattr(csv_blocks, "MERGED_PARTS", merged)
    monkeypatch.setattr(csv_blocks, "MERGED_ROWS", merged_rows)
    schema = {"column_1": pl.String, "column_2": pl.Categorical, "column_3": pl.String}
    whole = pl.read_csv(path, schema=schema, **OPTIONS)
    parts = read_blocks(path, schema, OPTIONS, block_bytes=40)
    assert parts.to_dicts() == whole.to_dicts()
    assert parts.get_column("__row").to_list() == list(range(1, 201))


def test_the_block_size_grows_with_the_file_within_its_bounds(tmp_path, monkeypatch):
    # A 64th of the file, within the bounds: 16 MiB up to 1 GiB files, 24 MiB from 1.5 GiB.
    assert csv_blocks.block_size(100 << 20) == 16 << 20
    assert csv_blocks.block_size(1 << 30) == 16 << 20
    assert csv_blocks.block_size(1280 << 20) == 20 << 20
    assert csv_blocks.block_size(4 << 30) == 24 << 20
    # Bounds of 16 and 64 bytes, a quarter of the file: the default reads blocks of 16 to 64 bytes.
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 16)
    monkeypatch.setattr(csv_blocks, "MAX_BLOCK_BYTES", 64)
    monkeypatch.setattr(csv_blocks, "BLOCKS_PER_FILE", 4)
    path = tmp_path / "t.csv"
    _write(path, [[str(i), f"x\n{i % 7}", "a,b" if i % 3 else ""] for i in range(60)])
    blocks = [block for block, _ in record_blocks(path, b"\n")]
    assert b"".join(blocks) == path.read_bytes()
    assert len(blocks) > 4  # the file is over 4 x 64 bytes: the upper bound holds
    assert all(len(block) <= 2 * 64 for block in blocks)
    schema = {"column_1": pl.String, "column_2": pl.Categorical, "column_3": pl.String}
    assert read_blocks(path, schema, OPTIONS).to_dicts() == pl.read_csv(path, schema=schema, **OPTIONS).to_dicts()


def test_figures_do_not_depend_on_how_the_file_was_split_into_blocks(tmp_path, monkeypatch):
    # 3 000 rows of seeded random times: a float sum taken over the reader's pieces would differ in
    # its last bits between layouts, and with it every op's share of the category.
    import random

    from jarvis_moe.engine.figures import ranked_figures
    from jarvis_moe.manifest import default_options
    from jarvis_moe.options import build_options

    rng = random.Random(7)
    rows = [{"name": "vllm::fused_moe", "Kernel Time (µs)_sum": repr(rng.uniform(0.1, 1e6) * 10 ** rng.randint(-3, 6)),
             "ex_UID": str(i)} for i in range(3000)]
    paths = CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused")
    options = build_options(default_options("moe_fused"), {})

    def shares() -> list[float]:
        inputs = load_inputs(paths)
        assert inputs is not None
        figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=options).frame()
        return figures.sort("__position").get_column("pct_category").to_list()

    whole = shares()
    # Blocks of 2 KiB (dozens of rows), merged every 3 blocks or 50 rows: hundreds of pieces.
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(csv_blocks, "MAX_BLOCK_BYTES", 2048)
    monkeypatch.setattr(csv_blocks, "MERGED_PARTS", 3)
    monkeypatch.setattr(csv_blocks, "MERGED_ROWS", 50)
    assert shares() == whole


def test_a_negative_zero_is_stored_as_zero(tmp_path):
    rows = [{"name": "fused_moe", "Kernel Time (µs)_sum": "-0", "Kernel Time (µs)_mean": "-0.0", "ex_UID": "1"},
            {"name": "fused_moe", "Kernel Time (µs)_sum": "2", "Kernel Time (µs)_mean": "3", "ex_UID": "2"}]
    inputs = load_inputs(CategoryPaths(write_output_dir(tmp_path, rows), "moe_fused"))
    assert inputs is not None
    for column in ("Kernel Time (µs)_sum", "Kernel Time (µs)_mean"):
        assert str(inputs.frame.get_column(column)[0]) == "0.0", column


BLOCK_OPTIONS = dict(has_header=False, truncate_ragged_lines=True, raise_if_empty=False, missing_columns="insert",
                     extra_columns="ignore", encoding="utf8-lossy", eol_char="\n")


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical])
@pytest.mark.parametrize("tail", [b'x,1,"s","open\nmore\n', b'x,1,"open\nmore\n', b'"open\nmore\n', b'x,"1\n'])
def test_polars_rejects_a_block_cut_inside_quotes_or_keeps_its_last_line_end(dtype, tail):
    # What guessed cuts rely on: a block that ends inside a quoted cell is refused, or the cell
    # takes in the rest of the block, line end included. Either way _parse_block sees it.
    block = b"".join(b'a%d,%d,"stack %d",t\n' % (i, i, i % 7) for i in range(2000)) + tail
    schema = {"column_1": dtype, "column_2": pl.Float64, "column_3": dtype, "column_4": dtype}
    try:
        part = pl.read_csv(block, schema=schema, **BLOCK_OPTIONS)
    except pl.exceptions.PolarsError:
        return
    assert csv_blocks._last_cell_ends_a_line(part, "\n")


def test_a_guessed_block_whose_last_cell_took_in_its_line_end_is_read_again(monkeypatch):
    # A reader that takes an open quoted cell in, up to the end of the block.
    took_in = pl.DataFrame({"column_1": ["a", "open\nmore\n"]})
    monkeypatch.setattr(csv_blocks.pl, "read_csv", lambda *a, **k: took_in)
    assert csv_blocks._parse_block(b'a\n"open\nmore\n', False, {}, BLOCK_OPTIONS, None, guessed=True) is None
    # An even count of quotes: the cell really ends with a line break, and the block is kept.
    kept = csv_blocks._parse_block(b'a\n"open\nmore\n"\n', False, {}, BLOCK_OPTIONS, None, guessed=True)
    assert kept is took_in


def test_after_a_cut_inside_quotes_every_cut_is_counted(tmp_path, monkeypatch):
    # The first block's last line end is the one inside the first row's quoted cell.
    rows = [[f"{i}", "a\n" + "b" * 40 if i % 3 == 0 else "plain", "z"] for i in range(40)]
    path = tmp_path / "t.csv"
    _write(path, rows)
    calls = []
    blocks = csv_blocks._blocks

    def recorded(fd, eol, block_bytes, tail_bytes=csv_blocks.TAIL_BYTES, start=0, guess=False):
        calls.append((start, guess))
        return blocks(fd, eol, block_bytes, tail_bytes, start, guess)

    monkeypatch.setattr(csv_blocks, "_blocks", recorded)
    schema = {f"column_{i}": pl.String for i in (1, 2, 3)}
    parts = read_blocks(path, schema, OPTIONS, block_bytes=24)
    assert parts.to_dicts() == pl.read_csv(path, schema=schema, **OPTIONS).to_dicts()
    # The first block is the one cut inside quotes: it is read again, and every cut from there counted.
    assert calls == [(0, True), (0, False)]


def _cell(kind: int, text: str) -> str:
    """A cell as a hand-written file may hold it: plain, quoted, with a stray quote, or a quote never closed."""
    return [text.replace(",", "").replace("\n", ""), '"' + text.replace('"', '""') + '"', 'x"y', '"open\n'][kind]


malformed_rows = st.lists(st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 1, 2, 3]),
                                             st.text(alphabet=st.sampled_from('xy ,\n"'), max_size=6)),
                                   min_size=3, max_size=3), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=malformed_rows, block=st.integers(1, 48))
def test_guessed_cuts_read_what_counted_cuts_read_even_in_a_malformed_file(tmp_path, monkeypatch, rows, block):
    path = tmp_path / "t.csv"
    path.write_bytes(("a,b,c\n" + "".join(",".join(_cell(k, t) for k, t in row) + "\n" for row in rows)).encode())
    schema = {"column_1": pl.String, "column_2": pl.Categorical, "column_3": pl.String}
    options = {**OPTIONS, "missing_columns": "insert", "extra_columns": "ignore", "eol_char": "\n"}

    def outcome() -> tuple:
        try:
            return ("rows", read_blocks(path, schema, options, block_bytes=block).to_dicts())
        except pl.exceptions.PolarsError as exc:
            return ("error", type(exc).__name__)

    guessed = outcome()
    blocks = csv_blocks._blocks
    with monkeypatch.context() as patch:
        patch.setattr(csv_blocks, "_blocks", lambda fd, eol, size, tail=csv_blocks.TAIL_BYTES, start=0, guess=False:
                      blocks(fd, eol, size, tail, start, False))
        assert outcome() == guessed


_NUMBERS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 1e15, 1.0000001e15, -1e16]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NUMBERS, _NUMBERS, _NUMBERS, _NUMBERS), min_size=1, max_size=12))
def test_columns_screened_out_by_their_range_hold_no_bad_cell(rows):
    # The range screen lets the full per-cell test run only on columns that
    # can fail it: it must never pass over a column with a bad cell.
    present = [read_csv.TIME_SUM, "operation_count", "GFLOPS", "delta_us (trace2 - trace1)"]
    numbers = pl.DataFrame(list(zip(*rows)), schema={c: pl.Float64 for c in present}, orient="col")
    ranges = read_csv._ranges(numbers, present)
    bad = numbers.select(read_csv._bad(c, {}).any().alias(c) for c in present).row(0, named=True)
    for col in present:
        if bad[col]:
            assert read_csv._may_be_bad(col, ranges[col], {}), (col, numbers.get_column(col).to_list())
        low, high = ranges[col][:2]
        if (numbers.get_column(col) == 0).any():
            assert low is not None and low <= 0 <= high


DETAILS_WITH_BREAKS = DETAILS + ['[{\'name\': "k\nwith a break", \'count\': 1}]', "[{'name': 'say \"hi\"\r\n'}]"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(STACKS[1:] + [STACKS[3]] * 4), st.sampled_from(DETAILS_WITH_BREAKS),
                               st.sampled_from(["1", "2", "3"]), st.sampled_from(["1.0", "2.0"])),
                     min_size=1, max_size=24),
       block=st.sampled_from([64, 160, 400, 1 << 20]))
def test_details_read_only_where_needed_give_the_rows_of_a_full_read(tmp_path_factory, monkeypatch, rows, block):
    # Blocks whose stacks all name their kernels are parsed without the details; the rows, cells,
    # repeats and warnings must be those of a read that parses every block's details.
    root = tmp_path_factory.mktemp("deferred")
    write_output_dir(root, [{"name": "fused_moe", "Kernel Time (µs)_sum": time, "ex_UID": uid,
                             "call_stack_full": stack, "kernel_details_summary": details or ""}
                            for stack, details, uid, time in rows])
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", block)
    monkeypatch.setattr(csv_blocks, "MAX_BLOCK_BYTES", block)
    deferred = load_inputs(CategoryPaths(root, "moe_fused"))
    full_read = read_csv._read_frame
    monkeypatch.setattr(read_csv, "_read_frame", lambda *args, **kwargs: full_read(*args[:5], deferred=False))
    full = load_inputs(CategoryPaths(root, "moe_fused"))
    assert deferred is not None and full is not None
    assert deferred.frame.to_dicts() == full.frame.to_dicts()
    assert deferred.frame.schema == full.frame.schema
    assert deferred.warnings == full.warnings


def test_a_deferred_cell_that_took_in_the_rest_of_its_block_is_caught(monkeypatch):
    # A reader that takes an open quote's cell in up to the block's end, instead of refusing the
    # block, would hide that in a column left out of the parse; the last row then lacks the cells
    # after it, and the block is parsed whole and judged like any other.
    options = {"columns": ["column_1", "column_2", "column_3"], "eol_char": "\n"}
    schema = {c: pl.String for c in options["columns"]}
    parses: list[list[str]] = []

    def taking_in(block: bytes, unclosed: bool, schema: dict, opts: dict) -> pl.DataFrame:
        parses.append(opts["columns"])
        cells = {"column_1": ["1", "2"], "column_2": ["x", '"cut\n3,z,\n'], "column_3": ["y", None]}
        if last_row_whole:
            cells["column_3"] = ["y", "z"]
        return pl.DataFrame({c: cells[c] for c in opts["columns"]}, schema={c: pl.String for c in opts["columns"]})

    monkeypatch.setattr(csv_blocks, "_parse", taking_in)
    keep = lambda part, reparse: part  # noqa: E731
    block = b'1,x,y\n2,"cut\n3,z,\n'  # one quote: the guessed cut is inside a cell
    last_row_whole = False
    assert csv_blocks._parse_block(block, False, schema, options, keep, guessed=True, deferred="column_2") is None
    assert parses == [["column_1", "column_3"], ["column_1", "column_2", "column_3"]]
    parses.clear()
    last_row_whole = True  # the cells after the deferred one are there: one parse, the column null
    part = csv_blocks._parse_block(b"1,x,y\n2,w,z\n", False, schema, options, keep, guessed=True,
                                   deferred="column_2")
    assert parses == [["column_1", "column_3"]]
    assert part is not None and part.columns == options["columns"]
    assert part.get_column("column_2").to_list() == [None, None]
