"""Read the ops CSV in blocks of whole records, so a large file is never in memory at once.

A record ends at a line end outside quotes. With the quoting of RFC 4180 (a
quote inside a quoted cell is doubled) a line end is outside quotes when an
even number of quote characters precede it, so each block read is cut after
its last such line end and the file is read on from there. Each block is
parsed by the reader on its own, its row numbers continuing those of the
blocks before it; the parts are concatenated. Blocks are parsed on several
threads while the next ones are read. Memory is the parsed columns plus a
few blocks per thread, not the whole file.

Counting every quote costs about as much as reading the bytes, and a line
end inside a quoted cell is rare in the pipeline's files, so a block is
first cut after its last line end unchecked. Its parse tells when that cut
was inside a quoted cell: the reader refuses the block, or its last cell
takes in the rest of the block up to that line end. Only then are its
quotes counted; an odd count sends the reader back to that block's start,
and every cut after it is counted.

A quote that is never closed leaves an odd count at the end of the file:
the last block then holds it, and is read with every text column as plain
text, where the reader rejects an unclosed quote (a categorical column
would take it in).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from jarvis_moe.engine.contract import MAX_CSV_BYTES
from jarvis_moe.heap import heap_kept
from jarvis_moe.infile import open_regular

# The smallest block. Each block costs a fixed amount of work (a parse of
# its own, the details check): a 258 MB file read in 8 MiB blocks took
# 1.29x-1.38x a bare read, in 16 MiB ones 1.20x-1.29x.
BLOCK_BYTES = 16 << 20
# The largest: under the 32 MiB up to which glibc's allocator serves large
# buffers from memory it keeps and reuses. A larger buffer is a fresh mapping
# whose every page the kernel must fault in and zero: reading a 2.6 GB file
# in 64 MiB blocks took 1.6 s of processor time against 0.5 s in 24 MiB ones.
MAX_BLOCK_BYTES = 24 << 20
BLOCKS_PER_FILE = 64  # a large file is read in about this many blocks
MAX_PARSE_THREADS = 8  # blocks parsed at once, each with about a block's worth of memory
MERGED_PARTS = 32  # parsed blocks copied into one piece
MERGED_ROWS = 100_000  # ... or as many as hold this many rows
TAIL_BYTES = 64 << 10  # where a block's last line end is looked for
# What is done to each block's rows: given them and a function that parses the block again with every column.
PerBlock = Callable[[pl.DataFrame, Callable[[], pl.DataFrame]], pl.DataFrame]
QUOTE = b'"'
COUNT_SLICE = 1 << 20  # bytes whose quotes are counted at once


def quotes_in(data: bytes) -> int:
    """How many quote characters ``data`` holds.

    Each slice of ``COUNT_SLICE`` bytes is counted as the bytes a deletion of
    its quotes removes: the deletion finds them with ``memchr``, and the
    slice and its copy stay in the processor's cache and in memory the
    allocator reuses. In a CSV, where quotes are a few per hundred bytes,
    that is about twice as fast as ``bytes.count``, which tests every byte.
    """
    if len(data) <= COUNT_SLICE:
        return len(data) - len(data.replace(QUOTE, b""))
    view = memoryview(data)
    quotes = 0
    for start in range(0, len(data), COUNT_SLICE):
        part = bytes(view[start:start + COUNT_SLICE])
        quotes += len(part) - len(part.replace(QUOTE, b""))
    return quotes


def _record_end(data: bytes | bytearray, eol: bytes) -> int:
    """Index just past the last line end outside quotes, or 0 when there is none."""
    quotes = quotes_in(data)
    end = len(data)
    pos = data.rfind(eol)
    while pos >= 0:
        quotes -= data.count(QUOTE, pos, end)
        if quotes % 2 == 0:
            return pos + len(eol)
        end = pos
        pos = data.rfind(eol, 0, pos)
    return 0


def block_size(file_bytes: int) -> int:
    """The block size for a file of ``file_bytes``: a 64th of it, within 16 and 24 MiB.

    Each block costs the reader a fixed amount of work: a large file read in
    larger blocks takes a tenth less time, for a few blocks more in memory.
    """
    return min(MAX_BLOCK_BYTES, max(BLOCK_BYTES, file_bytes // BLOCKS_PER_FILE))


def _blocks(fd: int, eol: bytes, block_bytes: int | None, tail_bytes: int = TAIL_BYTES, start: int = 0,
            guess: bool = False) -> Iterator[tuple[int, bytes, bool, bool]]:
    """(offset, bytes, leaves a quote open, cut guessed) of each block of the open file from ``start``.

    The blocks each end at a record's end (the last: at the file's end);
    only the last can leave a quote open. They are read at their offsets,
    each about ``block_bytes`` long (default: :func:`block_size` of the
    file); a record longer than that is read in a block twice as long. The
    file is read up to the size it had when it was opened. With ``guess``,
    a block is cut after the last line end of its last ``tail_bytes``
    without counting its quotes (the cut is "guessed"): the parser of the
    block then tells whether it ended inside a quoted cell
    (:func:`_parse_block`). Without, every cut is a record's end.
    """
    end = os.fstat(fd).st_size
    block_bytes = block_bytes or block_size(end)
    size = block_bytes
    while start < end:
        data, guessed = _block_at(fd, (start, size, end), eol, tail_bytes, guess)
        if data is None:  # no record ends within ``size`` bytes
            size *= 2
            continue
        if not data:  # the file shrank while it was read
            return
        offset, start, size = start, start + len(data), block_bytes
        yield offset, data, start >= end and quotes_in(data) % 2 == 1, guessed


def _block_at(fd: int, span: tuple[int, int, int], eol: bytes, tail_bytes: int,
              guess: bool = False) -> tuple[bytes | None, bool]:
    """The records that start at ``start`` and end within ``size`` bytes (or the rest of the file).

    ``span`` is (start, size, end of the file). The cut is guessed from the
    block's last ``tail_bytes`` (the last line end) and
    the block read up to it; when an even number of quotes precede the guess,
    it is a record's end, as it almost always is. Otherwise the block is cut
    after its last line end that is one. Every byte is read once and its
    quotes counted at most once. None when no record ends within ``size``
    bytes. With ``guess`` the guess is returned unchecked, with True.
    """
    start, size, end = span
    if start + size >= end:
        return os.pread(fd, end - start, start), False
    tail = os.pread(fd, min(tail_bytes, size), start + size - min(tail_bytes, size))
    last = tail.rfind(eol)
    if last >= 0:
        data = os.pread(fd, start + size - len(tail) + last + len(eol) - start, start)
        if guess:
            return data, True
        if quotes_in(data) % 2 == 0:
            return data, False
    else:
        data = os.pread(fd, size, start)
    cut = _record_end(data, eol)
    return (data[:cut] if cut else None), False


def read_blocks(path: Path, schema: dict[str, Any], options: dict[str, Any], eol: str = "\n",
                per_block: PerBlock | None = None, block_bytes: int | None = None,
                deferred: str | None = None) -> pl.DataFrame:
    """``polars.read_csv(path, schema=schema, **options)``, block by block.

    ``options`` are the reader's; ``skip_rows`` applies to the first block
    only, and the row index (``row_index_name``, ``row_index_offset``) runs
    over the whole file. ``per_block`` transforms each block's rows as they
    are read (a long cell cut to what is used of it never lives in memory
    whole for the whole file).

    A ``deferred`` column of ``options["columns"]`` is left out of each
    block's parse: ``per_block`` gets the rows without it and a function
    that parses the block again with it, for the blocks whose rows need it.
    Where ``per_block`` gives back rows without it, it is null. The columns
    come in the order of ``options["columns"]``, the ones ``per_block``
    adds after them.

    Blocks are parsed by as many threads as polars has, up to
    ``MAX_PARSE_THREADS`` (the reader runs without the interpreter lock, and
    parses one block on one thread) while this thread reads the next ones;
    at most one block per thread waits, which bounds the memory in flight.

    The cuts are guessed (:func:`_blocks`): counting a block's quotes costs
    about as much as copying it. A block whose parse shows it ended inside
    a quoted cell is read again from its start, and from there on every cut
    is counted, so a file of many line breaks inside quotes is read at most
    once more than a file without.
    """
    row_index = options.get("row_index_name")
    block_options = {k: v for k, v in options.items() if k not in ("row_index_name", "row_index_offset")}
    workers = max(1, min(pl.thread_pool_size(), MAX_PARSE_THREADS))
    pieces = _Pieces()
    with open_regular(path, MAX_CSV_BYTES) as fh, heap_kept(os.fstat(fh.fileno()).st_size), \
            ThreadPoolExecutor(max_workers=workers) as pool:
        start, guess = 0, True
        while start is not None:
            blocks = _blocks(fh.fileno(), eol.encode(), block_bytes, TAIL_BYTES, start, guess)
            start = _parse_in_order(pool, workers, blocks, pieces, schema, block_options,
                                    options.get("skip_rows", 0), per_block, deferred)
            guess = False
    frame = pieces.frame()
    return frame.with_row_index(row_index, options.get("row_index_offset", 0)) if row_index else frame


def _parse_in_order(pool: ThreadPoolExecutor, workers: int, blocks: Iterator[tuple[int, bytes, bool, bool]],
                    pieces: _Pieces, schema: dict[str, Any], options: dict[str, Any], skip: int,
                    per_block: PerBlock | None, deferred: str | None = None) -> int | None:
    """Parse ``blocks`` on ``pool`` and add them to ``pieces`` in order; the offset of a block cut inside quotes.

    None when every block was a whole number of records. Blocks after one
    cut inside quotes are parsed for nothing: their parses are cancelled or
    left to end, and their results dropped.
    """
    pending: deque[tuple[int, Future[pl.DataFrame | None]]] = deque()
    try:
        for offset, block, unclosed, guessed in blocks:
            pending.append((offset, pool.submit(_parse_block, block, unclosed, schema,
                                                {**options, "skip_rows": skip if offset == 0 else 0}, per_block,
                                                guessed, deferred)))
            if len(pending) > workers and (wrong := _take_first(pending, pieces)) is not None:
                return wrong
        while pending:
            if (wrong := _take_first(pending, pieces)) is not None:
                return wrong
        return None
    finally:
        for _, future in pending:
            future.cancel()


def _take_first(pending: deque[tuple[int, Future[pl.DataFrame | None]]], pieces: _Pieces) -> int | None:
    """Add the first pending block's rows to ``pieces``; its offset instead when it was cut inside quotes."""
    offset, future = pending.popleft()
    part = future.result()
    if part is None:
        return offset
    pieces.add(part)
    return None


class _Pieces:
    """Parsed blocks in order, copied into one contiguous piece every ``MERGED_PARTS`` blocks or ``MERGED_ROWS`` rows.

    Work over a column of thousands of pieces pays a fixed cost per piece;
    merging as the blocks come keeps each copy to a few blocks' worth.
    """

    def __init__(self) -> None:
        self.merged: list[pl.DataFrame] = []
        self.recent: list[pl.DataFrame] = []
        self.rows = 0  # in ``recent``

    def add(self, part: pl.DataFrame) -> None:
        self.recent.append(part)
        self.rows += part.height
        if len(self.recent) >= MERGED_PARTS or self.rows >= MERGED_ROWS:
            self._merge()

    def _merge(self) -> None:
        if self.recent:
            self.merged.append(pl.concat(self.recent, how="vertical", rechunk=True))
            self.recent, self.rows = [], 0

    def frame(self) -> pl.DataFrame:
        self._merge()
        return pl.concat(self.merged, how="vertical", rechunk=False) if len(self.merged) > 1 else self.merged[0]


def _parse_block(block: bytes, unclosed: bool, schema: dict[str, Any], options: dict[str, Any],
                 per_block: PerBlock | None, guessed: bool = False,
                 deferred: str | None = None) -> pl.DataFrame | None:
    """One block's rows; one that leaves a quote open is read with its text columns as plain text.

    A block whose cut was guessed and that the reader finds ended inside a
    quoted cell is None: the reader rejects it (polars raises an error) or
    takes the cell in, up to the block's last line end. Either way its
    quotes are then counted, and an odd count is a cut inside quotes.
    Without the ``deferred`` column the reader still parses every cell of
    the block (it only does not keep that column's), so it rejects the
    same blocks; a deferred cell that took in the rest of the block would
    leave the last row without the cells after it, and a last row without
    them has its block parsed whole and judged as above.
    """
    columns = options.get("columns")
    first = options
    if deferred is not None and columns is not None and deferred in columns:
        first = {**options, "columns": [c for c in columns if c != deferred]}
    eol = options.get("eol_char", "\n")
    try:
        part = _parse(block, unclosed, schema, first)
        if guessed and first is not options and _ends_short(part, columns[columns.index(deferred) + 1:]):
            first, part = options, _parse(block, unclosed, schema, options)
    except pl.exceptions.PolarsError:
        if guessed and quotes_in(block) % 2:
            return None
        raise
    if guessed and _last_cell_ends_a_line(part, eol) and quotes_in(block) % 2:
        return None
    if per_block is None:
        return part
    out = per_block(part, lambda: _parse(block, unclosed, schema, options))
    if first is options or deferred in out.columns:
        return out
    assert columns is not None and deferred is not None
    # Not parsed: null in its place (an insert, not a query: a tenth of a millisecond a block).
    return out.insert_column(columns.index(deferred),
                             pl.repeat(None, out.height, dtype=schema.get(deferred, pl.String), eager=True).alias(deferred))


def _parse(block: bytes, unclosed: bool, schema: dict[str, Any], options: dict[str, Any]) -> pl.DataFrame:
    """The block's rows; the text columns read as plain text first when the block leaves a quote open."""
    if not unclosed:
        return pl.read_csv(block, schema=schema, **options)
    plain = {name: pl.String if dtype == pl.Categorical else dtype for name, dtype in schema.items()}
    part = pl.read_csv(block, schema=plain, **options)
    return part.cast({c: t for c, t in schema.items() if c in part.columns and t == pl.Categorical})


def _ends_short(part: pl.DataFrame, after: list[str]) -> bool:
    """Whether the last row has none of the cells ``after`` (the columns that follow a deferred one)."""
    return part.height > 0 and all(part.get_column(c)[-1] is None for c in after if c in part.columns)


def _last_cell_ends_a_line(part: pl.DataFrame, eol: str) -> bool:
    """Whether a text cell of the last row ends with the line end: a cell that took in the rest of its block."""
    text = [c for c, dtype in part.schema.items() if dtype in (pl.String, pl.Categorical)]
    if part.height == 0 or not text:
        return False
    last = part.tail(1).select(pl.col(c).cast(pl.String).str.ends_with(eol).fill_null(False) for c in text)
    return any(last.row(0))
