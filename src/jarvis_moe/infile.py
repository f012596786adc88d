"""Read an input file only when it is a regular file, and never more than a cap.

Every file the plugin reads (ops CSV, metadata, tree data, category
manifest, plugin manifest) is opened once with ``O_NONBLOCK`` (so a FIFO
without a writer cannot block the open) and judged on the open descriptor:
anything but a regular file (a FIFO, ``/dev/zero``, a socket, a directory)
is refused before a byte is read, and so is a file over the caller's cap.
Judging the descriptor, not the path, leaves no gap in which the path could
be swapped for a device between a check and the read.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

NOT_REGULAR = "is not a regular file (a FIFO, device, socket or directory is never read)"
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# The UTF-16 and UTF-32 byte-order marks, longest first.
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"), (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
         (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"))


class InputFileError(OSError):
    """A file that cannot be read as an input; the message says why, without the file's name."""

    def __str__(self) -> str:
        return str(self.args[0])


def open_regular(path: Path | str, limit: int) -> BinaryIO:
    """``path`` opened for reading, checked to be a regular file of at most ``limit`` bytes.

    :raises InputFileError: when it is not a regular file or is larger than ``limit``.
    :raises OSError: when it cannot be opened (missing, no permission).
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(NOT_REGULAR)
        if info.st_size > limit:
            raise InputFileError(f"is {info.st_size} bytes, more than the {limit} accepted")
        os.set_blocking(fd, True)
        return io.open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of ``path`` (see :func:`open_regular`); a file that grows past ``limit`` meanwhile is refused."""
    with open_regular(path, limit) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"grew to more than the {limit} bytes accepted while it was read")
    return data


def not_utf8(data: bytes) -> str:
    """How to say that ``data`` is not UTF-8, naming the encoding it most likely is."""
    wide = wide_encoding(data)
    if wide:
        return f"is {wide} text, not UTF-8: write it as UTF-8"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "is not UTF-8 text: write it as UTF-8"
    return "is not UTF-8 text (it reads as Windows-1252 or Latin-1): write it as UTF-8"


def wide_encoding(data: bytes) -> str | None:
    """The name of a UTF-16 or UTF-32 encoding ``data`` is in (by its byte-order mark, or NUL
    bytes between ASCII characters), or None."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if odd > 0.9 * (len(sample) // 2):
            return "UTF-16 (little-endian)"
        if even > 0.9 * (len(sample) // 2):
            return "UTF-16 (big-endian)"
    return None
