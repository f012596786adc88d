"""Write the category outputs so a reader never sees half a file.

Each file is written to a temporary file in its own directory, flushed and
fsynced, then moved over the target with ``os.replace``: the rename is atomic
on POSIX, and it replaces a symlink at the target instead of writing through
it, so a planted link cannot redirect the write.

Order of the files. Everything that can fail on content (JSON
serialisation, the findings contract check) runs before any file is touched
(in :mod:`jarvis_moe.run`), so bad content changes nothing on disk. The files
are then written in the order given, the findings markdown last: it is what
the host merges into its report, so it only appears once the data it cites
is in place. If a later write fails (disk full, permissions), the raised
:class:`OutputError` makes the run fail, so a mismatch is never silent.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from pydantic_core import PydanticSerializationError

from jarvis_moe.errors import OutputError
from jarvis_moe.metrics import MetricsError, MetricsNoData, MetricsOk

__all__ = ["OutputError", "check_output_dir", "metrics_json", "write_bytes_atomic",
           "write_outputs", "write_text_atomic"]

FINDINGS_DIR = "category_findings"
DATA_DIR = "category_data"


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically.

    A symlink at ``path`` is replaced by a regular file; its target is left
    alone. The temporary file is removed on any failure.

    :return: the path written.
    :raises OSError: when the directory is not writable or the disk is full.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`write_text_atomic`)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; findings are meant to be read by others.
        os.fchmod(fd, _mode_for(target))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)
    return target


def _mode_for(target: Path) -> int:
    """Keep the mode of an existing regular file, else rw-r--r--."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return 0o644
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o644


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every platform can open a directory."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def metrics_json(metrics: MetricsOk | MetricsNoData | MetricsError) -> str:
    """The metrics as the JSON text written to disk (indent 2, UTF-8 kept, NaN as null).

    :raises OutputError: when a value is not JSON data.
    """
    try:
        # pydantic's serializer writes NaN and infinities as null (ser_json_inf_nan)
        # and keeps UTF-8; several times faster than json.dumps.
        return metrics.model_dump_json(indent=2, by_alias=True) + "\n"
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        raise OutputError(f"metrics cannot be written as JSON: {exc}") from exc


def check_output_dir(output_dir: Path | str) -> None:
    """Fail early when ``output_dir`` cannot take the outputs.

    Run before any analysis, so a blocked directory is reported before time
    is spent on the trace.

    :raises OutputError: the directory is missing or not writable, or
        ``category_data`` / ``category_findings`` exists as something other
        than a directory, or leads outside the output directory.
    """
    root = Path(output_dir)
    if not root.exists():
        raise OutputError(f"output directory {root} does not exist")
    if not root.is_dir():
        raise OutputError(f"output directory {root} is not a directory")
    for name in (DATA_DIR, FINDINGS_DIR):
        path = _inside(root, name)
        target = path if path.is_dir() else root
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputError(f"{target} is not writable")


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refused when it is not a directory or leads elsewhere.

    A ``category_findings`` that is a symbolic link to another place would
    make the run write outside the directory it was given.
    """
    directory = root / name
    if (directory.exists() or directory.is_symlink()) and not directory.is_dir():
        raise OutputError(f"{directory} exists but is not a directory; move it aside and rerun")
    if directory.is_symlink():
        real_root = root.resolve()
        if not directory.resolve().is_relative_to(real_root):
            raise OutputError(
                f"{directory} is a symbolic link to {directory.resolve()}, outside the output "
                "directory; refusing to write there"
            )
    return directory


def _output_dir(root: Path, name: str) -> Path:
    directory = _inside(root, name)
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    return directory


def output_path(output_dir: Path | str, relative: str) -> Path:
    """The path of one output, checked but not created.

    :param relative: ``category_data/<file>`` or ``category_findings/<file>``,
        a plain file name.
    :raises OutputError: as :func:`check_output_dir`, for any other place,
        or when the target is a directory.
    """
    root = Path(output_dir)
    folder, _, name = relative.partition("/")
    if folder not in (DATA_DIR, FINDINGS_DIR) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise OutputError(f"{relative!r} is not a plain file under {DATA_DIR}/ or {FINDINGS_DIR}/")
    path = _inside(root, folder) / name
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{path} is a directory; move it aside and rerun")
    return path


def write_outputs(output_dir: Path | str, files: list[tuple[str, bytes]]) -> tuple[Path, ...]:
    """Write each (relative path, content) atomically, in the order given.

    Every path is checked before the first directory or file is created, so
    a run that cannot write its outputs leaves the output directory as it
    found it.

    :raises OutputError: when a directory or file cannot be written.
    """
    root = Path(output_dir)
    check_output_dir(root)
    paths = [output_path(root, relative) for relative, _ in files]
    for name in sorted({relative.partition("/")[0] for relative, _ in files}):
        _output_dir(root, name)
    for path, (_, data) in zip(paths, files):
        try:
            write_bytes_atomic(path, data)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return tuple(paths)


def remove_stale(path: Path | str) -> None:
    """Remove an optional output of an earlier run that this run did not write.

    A roofline PNG left from a previous run would contradict findings that
    no longer link it. A symlink is removed, never followed.

    :raises OutputError: when it exists and cannot be removed.
    """
    target = Path(path)
    if target.is_symlink() or target.is_file():
        try:
            target.unlink()
        except OSError as exc:
            raise OutputError(f"cannot remove the stale {target}: {exc.strerror or exc}") from exc
