"""Read and check the header of ``category_data/<cat>_ops.csv``.

The first line (record) of the CSV is read from a probe of its first bytes:
is it text, UTF-8, CSV, and does it hold the required columns? A file whose
first line lacks them is not an ops CSV, with rows after it or not. What
leaves this module is the header's cells, the columns the analysis reads
and the file's line end.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

from jarvis_moe.engine.contract import KNOWN_COLUMNS, MAX_CSV_BYTES, REQUIRED_COLUMNS, canonical_column
from jarvis_moe.errors import ContractError
from jarvis_moe.infile import InputFileError, not_utf8, open_regular, wide_encoding

HEADER_FIRST_BYTES = 1 << 16
HEADER_PROBE_BYTES = 1 << 20
MAX_NAME_CHARS = 1000


class CsvHeader(NamedTuple):
    """The header of an ops CSV: its cells, the columns the analysis reads, the line end."""

    cells: list[str]
    selected: dict[int, str]  # column index -> contract name
    eol: str


def read_header(path: Path, rel: str, warnings: list[str]) -> CsvHeader | None:
    """The checked header, or None when the file has no data row (no MoE).

    :raises ContractError: for a file that is not CSV or lacks a required column.
    """
    header = _read_header(path, rel)
    if header is None:
        return None
    # Rows or not, a first line without the required columns is not an ops CSV.
    selected = _select_columns(header.cells, rel, warnings)
    return CsvHeader(header.cells, selected, header.eol) if header.has_rows else None


class _Probe(NamedTuple):
    cells: list[str]
    has_rows: bool  # a record follows the header (blank lines do not count)
    eol: str = "\n"  # "\r" for a file with old Mac line ends only


def _read_header(path: Path, rel: str) -> _Probe | None:
    """Header cells of the CSV, or ``None`` for a zero-byte/blank file."""
    try:
        with open_regular(path, MAX_CSV_BYTES) as fh:
            probe = fh.read(HEADER_FIRST_BYTES)
            if b"\n" not in probe and b"\r" not in probe:
                probe += fh.read(HEADER_PROBE_BYTES - len(probe))
    except InputFileError as exc:
        raise ContractError(rel, str(exc)) from None
    except OSError as exc:
        raise ContractError(rel, f"cannot be read: {exc.strerror or exc}") from None
    if not probe.strip(b"\xef\xbb\xbf \t\r\n"):
        return None
    if wide_encoding(probe):
        raise ContractError(rel, not_utf8(probe))
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
    longest = max((len(cell) for cell in header), default=0)
    if longest > MAX_NAME_CHARS:
        # Checked here, not left to the csv module's process-wide field limit.
        raise ContractError(
            rel, f"the header row is not valid CSV: a column name of {longest} characters", "header"
        )
    try:
        has_rows = any(record for record in records)
    except csv.Error:
        # A record cut by the end of the probe; the reader will judge it.
        has_rows = True
    if "\ufffd" in "".join(header) and b"\xef\xbf\xbd" not in probe:
        # Kept for the message if a required column then looks missing.
        note = not_utf8(probe)
        header = [_NotUtf8(cell, note) for cell in header]
    return _Probe(header, has_rows, eol)


class _NotUtf8(str):
    """A header cell whose bytes were not UTF-8 (decoded with U+FFFD), with what the file seems to be."""

    note: str

    def __new__(cls, text: str, note: str) -> "_NotUtf8":
        cell = super().__new__(cls, text)
        cell.note = note
        return cell


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
        odd = [cell for cell in header if isinstance(cell, _NotUtf8)]
        hint = f"; the file {odd[0].note}" if odd else ""
        raise ContractError(
            rel,
            f"missing required column {shown} (accepted spellings of µs: µs, μs, us){hint}",
            "header",
        )
    return selected
