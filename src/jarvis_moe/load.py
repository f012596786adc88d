"""Read and validate the three input files of a category.

Everything that can be wrong with the input is found here and raised as a
``ContractError`` naming the file and the place, or recorded as a warning
when the input is still usable. What leaves this module is typed: a polars
frame with the contract's column names, the metadata model, the tree data.
"""

from __future__ import annotations

import csv
import io
import json
import operator
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from jarvis_moe.contract import (
    FLOAT_COLUMNS,
    KNOWN_COLUMNS,
    MAX_NUMBER,
    NON_NEGATIVE_COLUMNS,
    REQUIRED_COLUMNS,
    TIME_SUM,
    Metadata,
    TreeEntry,
    canonical_column,
    describe_validation_error,
)
from jarvis_moe.errors import ContractError

ROW = "__row"  # 1-based data row number in the CSV, kept for messages
# Text cells that tell signatures apart, hashed to find repeated rows.
HASHED_COLUMNS = ("name", "Input Dims", "ex_UID")
HEADER_FIRST_BYTES = 1 << 16
MAX_NAME_CHARS = 1000
MAX_CELL_BYTES = 64 << 10
HEADER_PROBE_BYTES = 1 << 20
MAX_JSON_BYTES = 32 << 20


@dataclass(frozen=True)
class CategoryPaths:
    """Where a category's files live inside an output directory."""

    output_dir: Path
    category: str

    @property
    def ops_csv(self) -> Path:
        return self.output_dir / "category_data" / f"{self.category}_ops.csv"

    @property
    def metadata(self) -> Path:
        return self.output_dir / "metadata" / f"{self.category}_metadata.json"

    @property
    def tree_data(self) -> Path:
        return self.output_dir / "category_data" / f"{self.category}_tree_data.json"

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.output_dir).as_posix()
        except ValueError:
            return str(path)


@dataclass
class Inputs:
    """The validated input of one category run."""

    frame: pl.DataFrame
    metadata: Metadata
    tree: dict[str, TreeEntry] | None
    columns: frozenset[str]
    warnings: list[str] = field(default_factory=list)


def load_inputs(paths: CategoryPaths) -> Inputs | None:
    """Read the category's inputs; ``None`` means the category is missing.

    A missing CSV, a zero-byte one and a header-only one all mean "no MoE in
    this trace". Raises ``ContractError`` for input that breaks the contract.
    """
    csv_path = paths.ops_csv
    if not csv_path.exists() and not csv_path.is_symlink():
        return None
    rel = paths.rel(csv_path)
    if not csv_path.is_file():
        raise ContractError(rel, "is not a regular file")
    header = _read_header(csv_path, rel)
    if header is None or not header.has_rows:
        return None
    warnings: list[str] = []
    selected = _select_columns(header.cells, rel, warnings)
    metadata = load_metadata(paths)
    frame = _read_frame(csv_path, rel, header.cells, selected, header.eol)
    if frame.height == 0:
        return None
    frame = _bound_text_cells(frame, rel, warnings)
    frame = _type_columns(frame, rel, warnings)
    frame = _drop_duplicate_rows(frame, warnings)
    if metadata.e2e_time_ms is None:
        warnings.append(
            f"{paths.rel(paths.metadata)}: gpu_utilization.total_time_ms is missing or 0, so shares "
            "of end-to-end GPU time and impact scores cannot be computed; no findings are ranked"
        )
    tree = load_tree(paths, warnings)
    return Inputs(frame, metadata, tree, frozenset(frame.columns), warnings)


# --- the CSV ------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    cells: list[str]
    has_rows: bool  # a record follows the header (blank lines do not count)
    eol: str = "\n"  # "\r" for a file with old Mac line ends only


def _read_header(path: Path, rel: str) -> _Header | None:
    """Header cells of the CSV, or ``None`` for a zero-byte/blank file."""
    try:
        with path.open("rb") as fh:
            probe = fh.read(HEADER_FIRST_BYTES)
            if b"\n" not in probe and b"\r" not in probe:
                probe += fh.read(HEADER_PROBE_BYTES - len(probe))
    except OSError as exc:
        raise ContractError(rel, f"cannot be read: {exc.strerror or exc}") from None
    if not probe.strip(b"\xef\xbb\xbf \t\r\n"):
        return None
    if b"\x00" in probe:
        raise ContractError(rel, "is not a CSV file: it contains binary data (NUL bytes)")
    if b"\n" not in probe and b"\r" not in probe and len(probe) == HEADER_PROBE_BYTES:
        raise ContractError(rel, "has no line break in its first MiB: not a CSV header")
    eol = "\r" if b"\n" not in probe and b"\r" in probe else "\n"
    text = probe.decode("utf-8", errors="replace")
    # Records, not lines: a quoted header cell may hold a line break, and
    # the reader skips the header the same way.
    records = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(records)
    except (csv.Error, StopIteration):
        raise ContractError(rel, "the header row is not valid CSV", "header") from None
    try:
        has_rows = any(record for record in records)
    except csv.Error:
        # A record cut by the end of the probe; the reader will judge it.
        has_rows = True
    if "\ufffd" in "".join(header) and b"\xef\xbf\xbd" not in probe:
        # Kept for the message if a required column then looks missing.
        header = [_NotUtf8(cell) for cell in header]
    return _Header(header, has_rows, eol)


class _NotUtf8(str):
    """A header cell whose bytes were not UTF-8 (decoded with U+FFFD)."""


def _select_columns(header: list[str], rel: str, warnings: list[str]) -> dict[int, str]:
    """Column index -> contract name, for the columns the analysis reads."""
    selected: dict[int, str] = {}
    seen: set[str] = set()
    for index, raw in enumerate(header):
        name = canonical_column(raw)
        if name not in KNOWN_COLUMNS:
            continue
        if name in seen:
            warnings.append(f"{rel}: column '{name}' appears more than once; the first one is used")
            continue
        seen.add(name)
        selected[index] = name
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        shown = ", ".join(f"'{c}'" for c in missing)
        hint = (
            "; the header is not UTF-8 text (write the file as UTF-8)"
            if any(isinstance(cell, _NotUtf8) for cell in header) else ""
        )
        raise ContractError(
            rel,
            f"missing required column {shown} (accepted spellings of µs: µs, μs, us){hint}",
            "header",
        )
    return selected


def _read_frame(
    path: Path, rel: str, header: list[str], selected: dict[int, str], eol: str = "\n"
) -> pl.DataFrame:
    """The selected columns, number columns parsed as floats when they all are.

    The reader parses the number columns itself (no text copy of them, no
    cast) unless some cell is not a number; then everything is read as text
    and ``_type_columns`` finds the cell and says where it is.

    The reader is given one column more than the header has: a row with more
    cells than the header (an unquoted comma shifts every cell after it)
    fills it, and is reported instead of being read with shifted cells.
    """
    names = [f"column_{i + 1}" for i in range(len(header) + 1)]
    beyond = names[-1]
    text_schema = {name: pl.String for name in names}
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
    try:
        try:
            frame = pl.read_csv(path, schema=typed_schema, **options)
        except pl.exceptions.ComputeError:
            frame = pl.read_csv(path, schema=text_schema, **options)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise ContractError(rel, _describe_unreadable(path, exc)) from None
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


def _describe_unreadable(path: Path, exc: Exception) -> str:
    """Why the reader gave up, in a reader's words where the cause is known.

    Only runs when the file could not be read, so it may scan the file once.
    """
    quotes = 0
    try:
        with path.open("rb") as fh:
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
    text = [c for c in frame.columns if c != ROW and frame.schema[c] == pl.String]
    longest = frame.select(pl.col(c).str.len_bytes().max().alias(c) for c in text).row(0, named=True)
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
            too_long = pl.col(col).str.len_bytes() > MAX_CELL_BYTES
            fixed = pl.lit(None, pl.String)
            what = f"longer than {MAX_CELL_BYTES >> 10} KiB; treated as unknown"
        rows = frame.filter(too_long).get_column(ROW)
        if rows.is_empty():
            continue
        warnings.append(f"{rel}: {rows.len()} cell(s) of '{col}' are {what} (first at row {rows[0]})")
        updates.append(pl.when(too_long).then(fixed).otherwise(pl.col(col)).alias(col))
    return frame.with_columns(updates) if updates else frame


def _type_columns(frame: pl.DataFrame, rel: str, warnings: list[str]) -> pl.DataFrame:
    """Cast number columns; fail on a bad time sum, blank out other bad cells.

    A cell is bad when it holds text that is not a finite number, a number
    beyond ``MAX_NUMBER``, or a negative number in a column that cannot be
    negative. Blank cells are missing, not bad (except in the time sum,
    which every row needs).
    """
    names = frame.get_column("name").str.strip_chars()
    empty_name = names.is_null() | (names == "")
    if empty_name.any():
        row = frame.filter(empty_name).get_column(ROW)[0]
        raise ContractError(rel, "the op name is empty", f"row {row}, column 'name'")

    present = [c for c in FLOAT_COLUMNS if c in frame.columns]
    # Columns the reader parsed already are Float64: the cast is a no-op.
    numbers = frame.select(pl.col(c).cast(pl.Float64, strict=False) for c in present)
    # A cast leaves a cell null when it is null or not a plain number. Where
    # it left more nulls than the text had, some cells hold padded numbers or
    # text: only those columns pay for the string work.
    text_nulls = frame.select(present).null_count().row(0)
    number_nulls = numbers.null_count().row(0)
    unparsed = [c for c, t, n in zip(present, text_nulls, number_nulls) if n > t]
    filled = {}
    if unparsed:
        stripped = frame.select(pl.col(c).str.strip_chars() for c in unparsed)
        numbers = numbers.with_columns(stripped.select(pl.all().cast(pl.Float64, strict=False)).get_columns())
        filled = {c: stripped.get_column(c).fill_null("").ne("") for c in unparsed}

    def bad(col: str) -> pl.Expr:
        value = pl.col(col)
        out = ~value.is_finite() | (value.abs() > MAX_NUMBER)
        if col in NON_NEGATIVE_COLUMNS:
            out = out | (value < 0)
        out = out.fill_null(False)
        if col == TIME_SUM:
            return out | value.is_null()
        if col in filled:
            return out | (value.is_null() & pl.lit(filled[col]))
        return out

    counts = numbers.select(bad(c).sum().alias(c) for c in present).row(0, named=True)
    masks = numbers.select(bad(c).alias(c) for c in present if counts[c])
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
    return frame.with_columns(numbers.get_columns())


def _drop_duplicate_rows(frame: pl.DataFrame, warnings: list[str]) -> pl.DataFrame:
    """Exact repeats of a row would count its time twice: keep the first.

    Rows are compared through a hash of their short cells first; only rows
    that share a hash are compared cell by cell, so a file without repeats
    (the usual case) never pays for a row-wise comparison of its long cells.
    """
    data_cols = [c for c in frame.columns if c != ROW]
    # Numbers and a few short cells are hashed: rows that differ only in
    # other cells share a hash and are told apart by the exact comparison.
    hashed = [c for c in data_cols if c in HASHED_COLUMNS or frame.schema[c].is_numeric()] or data_cols
    row_hash = reduce(operator.xor, (pl.col(c).hash(seed) for seed, c in enumerate(hashed)))
    hashes = frame.select(row_hash).to_series()
    shared = hashes.is_duplicated()
    if not shared.any():
        return frame
    candidates = frame.filter(shared)
    repeats = candidates.filter(pl.struct(data_cols).is_first_distinct().not_()).get_column(ROW)
    n_dup = repeats.len()
    if not n_dup:
        return frame
    rows = repeats.head(5).to_list()
    warnings.append(
        f"{n_dup} row(s) repeat an earlier row exactly and were ignored (rows "
        f"{', '.join(map(str, rows))}{', ...' if n_dup > 5 else ''})"
    )
    return frame.filter(~pl.col(ROW).is_in(repeats.implode()))


# --- metadata and tree data ---------------------------------------------------


def _read_json(path: Path, rel: str) -> Any:
    # A device or a pipe (a link to /dev/zero) would be read forever.
    if not path.is_file():
        raise ContractError(rel, "is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ContractError(rel, f"is {size} bytes, more than the {MAX_JSON_BYTES} accepted")
        raw = path.read_bytes()
    except OSError as exc:
        raise ContractError(rel, f"cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ContractError(rel, "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ContractError(rel, f"is not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ContractError(rel, "is not usable JSON: nested too deeply") from None


def load_metadata(paths: CategoryPaths) -> Metadata:
    rel = paths.rel(paths.metadata)
    if paths.metadata.exists() and not paths.metadata.is_file():
        raise ContractError(rel, "is not a regular file")
    if not paths.metadata.is_file():
        raise ContractError(
            rel, "is missing: the ops CSV has rows, so its metadata file is required"
        )
    data = _read_json(paths.metadata, rel)
    if not isinstance(data, dict):
        raise ContractError(rel, f"must hold a JSON object, got {type(data).__name__}")
    try:
        return Metadata.model_validate(data)
    except ValidationError as exc:
        where, problem = describe_validation_error(exc)
        raise ContractError(rel, problem, where) from None


def load_tree(paths: CategoryPaths, warnings: list[str]) -> dict[str, TreeEntry] | None:
    """The optional tree data; a broken file is a warning, never an error."""
    path = paths.tree_data
    if not path.exists() and not path.is_symlink():
        return None
    rel = paths.rel(path)
    try:
        data = _read_json(path, rel)
    except ContractError as exc:
        warnings.append(f"{exc} — tree data ignored (it is optional)")
        return None
    if not isinstance(data, dict):
        warnings.append(f"{rel}: expected a JSON object keyed by event id, got {type(data).__name__}; tree data ignored")
        return None
    tree: dict[str, TreeEntry] = {}
    skipped = 0
    for key, value in data.items():
        try:
            tree[str(key)] = TreeEntry.model_validate(value)
        except ValidationError:
            skipped += 1
    if skipped:
        warnings.append(f"{rel}: {skipped} entr{'y' if skipped == 1 else 'ies'} of the wrong shape ignored")
    return tree
