"""Read the ops CSV in blocks of whole records, so a large file is never in memory at once.

A record ends at a line end outside quotes. With the quoting of RFC 4180 (a
quote inside a quoted cell is doubled) a line end is outside quotes when an
even number of quote characters precede it, so each block read is cut after
its last such line end and the file is read on from there. Each block is
parsed by the reader on its own, its row numbers continuing those of the
blocks before it; the parts are concatenated. The next block is read while
the reader parses this one. Memory is the parsed columns plus a few blocks,
not the whole file.

A quote that is never closed leaves an odd count at the end of the file:
the last block then holds it, and is read with every text column as plain
text, where the reader rejects an unclosed quote (a categorical column
would take it in).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import polars as pl

from jarvis_moe.engine.contract import MAX_CSV_BYTES
from jarvis_moe.infile import open_regular

BLOCK_BYTES = 8 << 20
TAIL_BYTES = 64 << 10  # where a block's last line end is looked for
T = TypeVar("T")
QUOTE = b'"'


def _record_end(data: bytes | bytearray, eol: bytes) -> int:
    """Index just past the last line end outside quotes, or 0 when there is none."""
    quotes = data.count(QUOTE)
    end = len(data)
    pos = data.rfind(eol)
    while pos >= 0:
        quotes -= data.count(QUOTE, pos, end)
        if quotes % 2 == 0:
            return pos + len(eol)
        end = pos
        pos = data.rfind(eol, 0, pos)
    return 0


def record_blocks(path: Path, eol: bytes, block_bytes: int = BLOCK_BYTES,
                  tail_bytes: int = TAIL_BYTES) -> Iterator[tuple[bytes, bool]]:
    """The bytes of ``path`` in blocks that each end at a record's end (the last: at the file's end).

    Each block comes with whether it leaves a quote open, which only the last
    one can. Blocks are read at their offsets, each about ``block_bytes``
    long; a record longer than that is read in a block twice as long. The
    file is read up to the size it had when it was opened.
    """
    with open_regular(path, MAX_CSV_BYTES) as fh:
        fd = fh.fileno()
        end = os.fstat(fd).st_size
        start, size = 0, block_bytes
        while start < end:
            data = _block_at(fd, (start, size, end), eol, tail_bytes)
            if data is None:  # no record ends within ``size`` bytes
                size *= 2
                continue
            if not data:  # the file shrank while it was read
                return
            start += len(data)
            size = block_bytes
            yield data, start >= end and data.count(QUOTE) % 2 == 1


def _block_at(fd: int, span: tuple[int, int, int], eol: bytes, tail_bytes: int) -> bytes | None:
    """The records that start at ``start`` and end within ``size`` bytes (or the rest of the file).

    ``span`` is (start, size, end of the file). The cut is guessed from the
    block's last ``tail_bytes`` (the last line end) and
    the block read up to it; when an even number of quotes precede the guess,
    it is a record's end, as it almost always is. Otherwise the block is cut
    after its last line end that is one. Every byte is read once and its
    quotes counted once. None when no record ends within ``size`` bytes.
    """
    start, size, end = span
    if start + size >= end:
        return os.pread(fd, end - start, start)
    tail = os.pread(fd, min(tail_bytes, size), start + size - min(tail_bytes, size))
    last = tail.rfind(eol)
    if last >= 0:
        data = os.pread(fd, start + size - len(tail) + last + len(eol) - start, start)
        if data.count(QUOTE) % 2 == 0:
            return data
    else:
        data = os.pread(fd, size, start)
    cut = _record_end(data, eol)
    return data[:cut] if cut else None


def _read_ahead(blocks: Iterator[T]) -> Iterator[T]:
    """The items of ``blocks``, the next one read by a second thread while the caller parses this one.

    The reader parses without holding the interpreter lock, so reading and
    counting quotes of the next block overlap its work. An error of the
    reading thread is raised here, where the block would have come.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(next, blocks, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, blocks, None)
            yield item


def read_blocks(path: Path, schema: dict[str, Any], options: dict[str, Any], eol: str = "\n",
                per_block: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
                block_bytes: int = BLOCK_BYTES) -> pl.DataFrame:
    """``polars.read_csv(path, schema=schema, **options)``, block by block.

    ``options`` are the reader's; ``skip_rows`` applies to the first block
    only and ``row_index_offset`` continues across blocks. ``per_block``
    transforms each block's rows as they are read (a long cell cut to what
    is used of it never lives in memory whole for the whole file).
    """
    plain = {name: pl.String if dtype == pl.Categorical else dtype for name, dtype in schema.items()}
    parts = []
    rows = 0
    for block, unclosed in _read_ahead(record_blocks(path, eol.encode(), block_bytes)):
        part = pl.read_csv(
            block, schema=plain if unclosed else schema,
            **{**options, "skip_rows": options.get("skip_rows", 0) if not parts else 0,
               "row_index_offset": options.get("row_index_offset", 0) + rows},
        )
        if unclosed:
            part = part.cast({c: t for c, t in schema.items() if c in part.columns and t == pl.Categorical})
        rows += part.height
        parts.append(per_block(part) if per_block else part)
    return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
