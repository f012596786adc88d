"""Read the ops CSV in blocks of whole records, so a large file is never in memory at once.

A record ends at a line end outside quotes. With the quoting of RFC 4180 (a
quote inside a quoted cell is doubled) a line end is outside quotes when an
even number of quote characters precede it, so the file is cut after the
last such line end of each block and the rest carried into the next one.
Each block is parsed by the reader on its own, its row numbers continuing
those of the blocks before it; the parts are concatenated. Memory is the
parsed columns plus about two blocks, not the whole file.

A quote that is never closed leaves an odd count at the end of the file:
the last block then holds it, and is read with every text column as plain
text, where the reader rejects an unclosed quote (a categorical column
would take it in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from jarvis_moe.engine.contract import MAX_CSV_BYTES
from jarvis_moe.infile import open_regular

BLOCK_BYTES = 8 << 20
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


def record_blocks(path: Path, eol: bytes, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The bytes of ``path`` in blocks that each end at a record's end (the last: at the file's end)."""
    carry = b""
    with open_regular(path, MAX_CSV_BYTES) as fh:
        while chunk := fh.read(block_bytes):
            data = carry + chunk if carry else chunk
            cut = _record_end(data, eol)
            if cut == len(data):
                yield data
                carry = b""
            elif cut:
                yield data[:cut]
                carry = data[cut:]
            else:
                carry = data
    if carry:
        yield carry


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
    for block in record_blocks(path, eol.encode(), block_bytes):
        unclosed = block.count(QUOTE) % 2 == 1
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
