"""Read and validate ``category_data/<cat>_ops.csv`` column-wise.

Everything that can be wrong with the CSV is found here and raised as a
``ContractError`` naming the file, the row and the column, or recorded as a
warning when the file is still usable. What leaves this module is a polars
frame with the contract's column names and typed number columns.
"""

from __future__ import annotations

import csv
import operator
from functools import reduce
from pathlib import Path
from typing import Any

import polars as pl

from jarvis_moe.engine.contract import (
    FLOAT_COLUMNS,
    MAX_CSV_BYTES,
    MAX_NUMBER,
    NON_NEGATIVE_COLUMNS,
    REPEATED_TEXT_COLUMNS,
    TIME_SUM,
)
from jarvis_moe.engine.csv_blocks import read_blocks
from jarvis_moe.engine.csv_header import MAX_NAME_CHARS, CsvHeader
from jarvis_moe.engine.details_cut import DETAILS_HASH, details_reading
from jarvis_moe.errors import ContractError
from jarvis_moe.infile import open_regular
from jarvis_moe.safetext import ACTING_PATTERN

# An op name that shows as nothing: only control, bidi and space characters
# (the characters safetext.plain_text drops or turns into spaces).
EMPTY_NAME = rf"^(?:{ACTING_PATTERN}|\s)*$"
ROW = "__row"  # 1-based data row number in the CSV, kept for messages
# Text cells that tell signatures apart, hashed to find repeated rows.
HASHED_COLUMNS = ("name", "Input Dims", "ex_UID")
MAX_CELL_BYTES = 64 << 10
DETAILS = "kernel_details_summary"
STACK = "call_stack_full"
NAMES_STREAMED_FROM = 40_000  # rows from which the empty-name test runs on the streaming engine


def read_rows(path: Path, rel: str, header: CsvHeader, warnings: list[str]) -> pl.DataFrame | None:
    """The validated rows, or None when none is left.

    :raises ContractError: for a row or cell that breaks the contract.
    """
    # The kernel details are read only for the blocks whose rows read them
    # (see details_cut); should repeated rows need them to be told apart,
    # the file is read again with every row's.
    for deferred in (True, False):
        frame = _read_frame(path, rel, header.cells, header.selected, header.eol, deferred)
        if frame.height == 0:
            return None
        found: list[str] = []
        _warn_if_truncated(path, rel, len(header.cells), frame.height, found)
        frame = _bound_text_cells(frame, rel, found)
        frame = _type_columns(frame, rel, found)
        kept = _drop_duplicate_rows(frame, found)
        if kept is not None:
            warnings.extend(found)
            return kept.drop(DETAILS_HASH, strict=False)
    raise AssertionError("repeated rows are told apart once every row's details are read")


def _read_frame(
    path: Path, rel: str, header: list[str], selected: dict[int, str], eol: str = "\n", deferred: bool = False
) -> pl.DataFrame:
    """The selected columns, number columns parsed as floats when they all are.

    With ``deferred``, the kernel details are parsed only in the blocks
    whose rows read them (``details_cut``); elsewhere they and their hash
    are null.

    The reader parses the number columns itself (no text copy of them, no
    cast) unless some cell is not a number; then everything is read as text
    and ``_type_columns`` finds the cell and says where it is.

    The reader is given one column more than the header has: a row with more
    cells than the header (an unquoted comma shifts every cell after it)
    fills it, and is reported instead of being read with shifted cells.
    """
    names = [f"column_{i + 1}" for i in range(len(header) + 1)]
    beyond = names[-1]
    text_schema: dict[str, Any] = {name: pl.String for name in names}
    text_schema.update({names[i]: pl.Categorical for i, name in selected.items() if name in REPEATED_TEXT_COLUMNS})
    typed_schema = dict(text_schema)
    typed_schema.update({names[i]: pl.Float64 for i, name in selected.items() if name in FLOAT_COLUMNS})
    options: dict[str, Any] = dict(
        has_header=False,
        skip_rows=1,  # the header, already read; skip_rows honours quoting
        columns=[names[i] for i in sorted(selected)] + [beyond],
        missing_columns="insert",
        extra_columns="ignore",
        truncate_ragged_lines=True,
        eol_char=eol,
        encoding="utf8-lossy",
        raise_if_empty=False,
        row_index_name=ROW,
        row_index_offset=1,
    )
    at = {name: i for i, name in selected.items()}
    cut, later = details_reading({i: names[i] for i in selected}, at.get(DETAILS), at.get(STACK), MAX_CELL_BYTES,
                                 deferred)
    try:
        try:
            frame = read_blocks(path, typed_schema, options, eol, cut, deferred=later)
        except pl.exceptions.ComputeError:
            frame = read_blocks(path, text_schema, options, eol, cut, deferred=later)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise ContractError(rel, _describe_unreadable(path, exc)) from None
    frame = _skip_blank_records(frame, names[at[TIME_SUM]])
    extra = frame.get_column(beyond).is_not_null()
    if extra.any():
        row = frame.filter(extra).get_column(ROW)[0]
        raise ContractError(
            rel,
            f"the row has more cells than the {len(header)} of the header: a cell with an "
            "unquoted comma, or rows pasted from another file",
            f"row {row}",
        )
    return frame.drop(beyond).rename({names[i]: name for i, name in selected.items()})


def _skip_blank_records(frame: pl.DataFrame, first: str) -> pl.DataFrame:
    """Drop records whose every cell is empty or blank (blank lines), numbering the rest 1, 2, ...

    A blank line is not a record: it neither fails the file nor counts in the
    row numbers of messages. Only rows whose ``first`` cell (a short one every
    record needs) is blank are candidates; the other cells are read for those
    rows only, so a file without blank lines pays for one short column.
    """
    candidates = frame.select(_blank(frame, first)).to_series().arg_true()
    if candidates.is_empty():
        return frame
    cells = [c for c in frame.columns if c not in (ROW, DETAILS_HASH)]
    blank = frame[candidates].filter(pl.all_horizontal(_blank(frame, c) for c in cells)).get_column(ROW)
    if blank.is_empty():
        return frame
    kept = frame.filter(~pl.col(ROW).is_in(blank.implode()))
    return kept.with_columns(pl.int_range(1, kept.height + 1, dtype=frame.schema[ROW]).alias(ROW))


def _blank(frame: pl.DataFrame, col: str) -> pl.Expr:
    """Whether each cell of ``col`` is empty or only white space."""
    if frame.schema[col].is_numeric():
        return pl.col(col).is_null()
    return pl.col(col).cast(pl.String).str.strip_chars().fill_null("") == ""


def _warn_if_truncated(path: Path, rel: str, width: int, rows: int, warnings: list[str]) -> None:
    """A file cut off in its last row: no final line break and fewer cells than the header.

    The reader fills the missing cells with nothing, which is right for a row
    written that way on purpose, but a cut-off file deserves a word.
    """
    tail_bytes = 1 << 16
    try:
        with open_regular(path, MAX_CSV_BYTES) as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - tail_bytes))
            tail = fh.read()
    except OSError:
        return
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last = tail.splitlines()[-1].decode("utf-8", errors="replace")
    try:
        cells = next(csv.reader([last]))
    except (csv.Error, StopIteration):
        return
    if len(cells) < width:
        warnings.append(f"{rel}: the last row (row {rows}) has {len(cells)} of the header's {width} cells and "
                        "the file does not end with a line break: it looks truncated; its missing cells are "
                        "treated as empty")


def _describe_unreadable(path: Path, exc: Exception) -> str:
    """Why the reader gave up, in a reader's words where the cause is known.

    Only runs when the file could not be read, so it may scan the file once.
    """
    quotes = 0
    try:
        with open_regular(path, MAX_CSV_BYTES) as fh:
            while chunk := fh.read(1 << 23):
                quotes += chunk.count(b'"')
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if quotes % 2:
        return "is not a well-formed CSV file: a quoted cell is never closed (the file looks truncated)"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"is not a well-formed CSV file: {first[:300]}"


def _bound_text_cells(frame: pl.DataFrame, rel: str, warnings: list[str]) -> pl.DataFrame:
    """Keep trace text to sizes a report can carry.

    An op name over ``MAX_NAME_CHARS`` characters is cut there and tagged
    with a hash of the whole name (so cut names stay distinct). Any other
    text cell over ``MAX_CELL_BYTES`` is treated as unknown: no real shape,
    dtype list, call stack or kernel list comes near that size, and the
    outputs copy some of these cells.
    """
    text = [c for c in frame.columns if c != ROW and frame.schema[c] in (pl.String, pl.Categorical)]
    # A categorical's lengths are of its distinct cells: a repeated long cell is measured once.
    longest = frame.select(_len_bytes(frame, c).max().alias(c) for c in text).row(0, named=True)
    updates = []
    for col in text:
        if (longest[col] or 0) <= (MAX_NAME_CHARS if col == "name" else MAX_CELL_BYTES):
            continue
        if col == "name":
            too_long = pl.col(col).str.len_chars() > MAX_NAME_CHARS
            tag = pl.col(col).hash().mod(1 << 32).cast(pl.String)
            fixed = pl.concat_str([pl.col(col).str.slice(0, MAX_NAME_CHARS), pl.lit("… [#"), tag, pl.lit("]")])
            what = f"longer than {MAX_NAME_CHARS} characters; cut there"
        else:
            too_long = _len_bytes(frame, col) > MAX_CELL_BYTES
            fixed = pl.lit(None, frame.schema[col])
            what = f"longer than {MAX_CELL_BYTES >> 10} KiB; treated as unknown"
        rows = frame.filter(too_long).get_column(ROW)
        if rows.is_empty():
            continue
        warnings.append(f"{rel}: {rows.len()} cell(s) of '{col}' are {what} (first at row {rows[0]})")
        updates.append(pl.when(too_long).then(fixed).otherwise(pl.col(col)).alias(col))
    return frame.with_columns(updates) if updates else frame


def _len_bytes(frame: pl.DataFrame, col: str) -> pl.Expr:
    """Bytes of each cell of a text or categorical column."""
    return pl.col(col).cat.len_bytes() if frame.schema[col] == pl.Categorical else pl.col(col).str.len_bytes()


def _type_columns(frame: pl.DataFrame, rel: str, warnings: list[str]) -> pl.DataFrame:
    """Cast number columns; fail on a bad time sum, blank out other bad cells.

    A cell is bad when it holds text that is not a finite number, a number
    beyond ``MAX_NUMBER``, or a negative number in a column that cannot be
    negative. Blank cells are missing, not bad (except in the time sum,
    which every row needs).
    """
    _refuse_empty_names(frame, rel)
    present = [c for c in FLOAT_COLUMNS if c in frame.columns]
    numbers, filled = _parse_numbers(frame, present)
    ranges = _ranges(numbers, present)
    suspect = [c for c in present if _may_be_bad(c, ranges[c], filled)]
    numbers = _blank_bad_cells(frame, numbers, suspect, filled, rel, warnings)
    # A "-0" cell is stored as 0 (and so printed as 0). Only a column whose
    # range holds 0 can hold one; the others are kept as they are. (polars
    # folds x + 0.0 into x, which would keep the -0.)
    zeros = {c: low is not None and low <= 0 <= high for c, (low, high, _, _) in ranges.items()}
    return frame.with_columns(numbers.select(
        pl.when(pl.col(c) == 0).then(0.0).otherwise(pl.col(c)).alias(c) if zeros[c] else pl.col(c) for c in present
    ).get_columns())


def _ranges(numbers: pl.DataFrame, present: list[str]) -> dict[str, tuple[Any, Any, bool, int]]:
    """Per column: (least, greatest, whether a NaN is there, nulls); the least and greatest leave NaN out."""
    stats = numbers.select(e for i, c in enumerate(present) for e in (
        pl.col(c).min().alias(f"{i}l"), pl.col(c).max().alias(f"{i}h"),
        pl.col(c).is_nan().any().alias(f"{i}n"), pl.col(c).null_count().alias(f"{i}z"))).row(0)
    return {c: stats[4 * i:4 * i + 4] for i, c in enumerate(present)}


def _may_be_bad(col: str, ranges: tuple[Any, Any, bool, int], filled: dict[str, pl.Series]) -> bool:
    """Whether ``col`` can hold a cell :func:`_bad` finds, judged from its range: most columns cannot."""
    low, high, nan, nulls = ranges
    if col in filled or nan or (col == TIME_SUM and nulls):
        return True
    if low is None:
        return False
    if high > MAX_NUMBER or low < -MAX_NUMBER:  # an infinity is beyond it too
        return True
    if col in NON_NEGATIVE_COLUMNS and low < 0:
        return True
    return col == "operation_count" and low < 1


def _refuse_empty_names(frame: pl.DataFrame, rel: str) -> None:
    """Blank once control and bidi characters are gone (such a name would show
    as nothing): one anchored test, no copy of the names."""
    empty_name = pl.col("name").str.contains(EMPTY_NAME).fill_null(True)
    # On the streaming engine the test runs on every core (1.3 ms against 2.2 ms
    # for 100 000 names); under about 40 000 its set-up costs more than that
    # saves, and a process's first streaming query pays 3 ms to start it.
    engine = "streaming" if frame.height >= NAMES_STREAMED_FROM else "in-memory"
    if frame.lazy().select(empty_name.any()).collect(engine=engine).item():
        row = frame.filter(empty_name).get_column(ROW)[0]
        raise ContractError(rel, "the op name is empty (or only control characters)", f"row {row}, column 'name'")


def _parse_numbers(frame: pl.DataFrame, present: list[str]) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """The number columns as Float64, and per column that needed it, which cells held text at all."""
    # Columns the reader parsed already are Float64: the cast is a no-op.
    numbers = frame.select(pl.col(c).cast(pl.Float64, strict=False) for c in present)
    # A cast leaves a cell null when it is null or not a plain number. Where
    # it left more nulls than the text had, some cells hold padded numbers or
    # text: only those columns pay for the string work.
    text_nulls = frame.select(present).null_count().row(0)
    number_nulls = numbers.null_count().row(0)
    unparsed = [c for c, t, n in zip(present, text_nulls, number_nulls) if n > t]
    filled: dict[str, pl.Series] = {}
    if unparsed:
        stripped = frame.select(pl.col(c).str.strip_chars() for c in unparsed)
        numbers = numbers.with_columns(stripped.select(pl.all().cast(pl.Float64, strict=False)).get_columns())
        filled = {c: stripped.get_column(c).fill_null("").ne("") for c in unparsed}
    return numbers, filled


def _bad(col: str, filled: dict[str, pl.Series]) -> pl.Expr:
    """Which cells of ``col`` are not usable numbers."""
    value = pl.col(col)
    out = ~value.is_finite() | (value.abs() > MAX_NUMBER)
    if col in NON_NEGATIVE_COLUMNS:
        out = out | (value < 0)
    if col == "operation_count":  # a signature in a trace ran at least once
        out = out | (value < 1)
    out = out.fill_null(False)
    if col == TIME_SUM:
        return out | value.is_null()
    if col in filled:
        return out | (value.is_null() & pl.lit(filled[col]))
    return out


def _blank_bad_cells(frame: pl.DataFrame, numbers: pl.DataFrame, present: list[str],
                     filled: dict[str, pl.Series], rel: str, warnings: list[str]) -> pl.DataFrame:
    """Fail on a bad time sum; blank other bad cells of the ``present`` columns with one warning per column."""
    if not present:
        return numbers
    counts = numbers.select(_bad(c, filled).sum().alias(c) for c in present).row(0, named=True)
    masks = numbers.select(_bad(c, filled).alias(c) for c in present if counts[c])
    blanked = []
    for col in present:
        n_bad = int(counts[col])
        if not n_bad:
            continue
        first = frame.filter(masks.get_column(col)).row(0, named=True)
        cell = first[col]
        shown = repr(cell[:40]) if isinstance(cell, str) else repr("" if cell is None else str(cell))
        if col == TIME_SUM:
            raise ContractError(
                rel,
                f"'{col}' must be a finite, non-negative number of microseconds (at most "
                f"{MAX_NUMBER:g}), got {shown}"
                + (f" ({n_bad} rows affected)" if n_bad > 1 else ""),
                f"row {first[ROW]}, column '{col}'",
            )
        warnings.append(
            f"{rel}: {n_bad} cell(s) of '{col}' are not usable numbers (first at row "
            f"{first[ROW]}: {shown}); treated as missing"
        )
        blanked.append(col)
    if blanked:
        numbers = numbers.with_columns(
            pl.when(masks.get_column(c)).then(None).otherwise(pl.col(c)).alias(c) for c in blanked
        )
    return numbers


def _drop_duplicate_rows(frame: pl.DataFrame, warnings: list[str]) -> pl.DataFrame | None:
    """Exact repeats of a row would count its time twice: keep the first.

    Rows are compared through a hash of their short cells first; only rows
    that share a hash are compared cell by cell, so a file without repeats
    (the usual case) never pays for a row-wise comparison of its long cells.
    None when rows look the same but some of their kernel details were not
    read (their hash is null): the details may tell them apart.
    """
    # Rows that differ in one cell are not repeats: when every ex_UID has a hash of its own (a null
    # hashes as one value), no row repeats another. Hashes count in a fifth of the time of texts.
    if "ex_UID" in frame.columns and frame.get_column("ex_UID").hash().n_unique() == frame.height:
        return frame
    data_cols = [c for c in frame.columns if c != ROW]
    # Numbers and a few short cells are hashed: rows that differ only in
    # other cells share a hash and are told apart by the exact comparison.
    hashed = [c for c in data_cols if c in HASHED_COLUMNS or frame.schema[c].is_numeric()] or data_cols
    row_hash = reduce(operator.xor, (pl.col(c).hash(seed) for seed, c in enumerate(hashed)))
    hashes = frame.lazy().select(row_hash).collect(engine="in-memory").to_series()
    if hashes.n_unique() == hashes.len():  # counting distinct hashes is 7x cheaper than marking repeats
        return frame
    candidates = frame.filter(hashes.is_duplicated())
    repeats = candidates.filter(pl.struct(data_cols).is_first_distinct().not_()).get_column(ROW)
    n_dup = repeats.len()
    if not n_dup:
        return frame
    if DETAILS_HASH in frame.columns and candidates.get_column(DETAILS_HASH).has_nulls():
        return None
    rows = repeats.head(5).to_list()
    warnings.append(
        f"{n_dup} row(s) repeat an earlier row exactly and were ignored (rows "
        f"{', '.join(map(str, rows))}{', ...' if n_dup > 5 else ''})"
    )
    return frame.filter(~pl.col(ROW).is_in(repeats.implode()))
