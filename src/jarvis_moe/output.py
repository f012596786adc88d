"""Write the category outputs so a reader never sees half a file.

Each file is written to a temporary file in its own directory, flushed and
fsynced, then moved over the target with ``os.replace``: the rename is atomic
on POSIX, and it replaces a symlink at the target instead of writing through
it, so a planted link cannot redirect the write.

Order of the two files. Everything that can fail on content (JSON
serialisation, the findings contract check) runs before either file is
touched, so bad content changes nothing on disk. Then the metrics JSON is
written, and the findings markdown last: the markdown is what the host merges
into its report, so it only appears once the data it cites is in place. If
the markdown write itself fails (disk full, permissions), the new JSON sits
next to the previous markdown; the host's agreement check flags that pair,
and the raised :class:`OutputError` makes the run fail, so the mismatch is
never silent.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Mapping

from jarvis_moe.errors import OutputError
from jarvis_moe.mdcheck import ensure_findings

__all__ = ["OutputError", "check_output_dir", "json_safe", "metrics_json", "write_bytes_atomic",
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


def json_safe(value: Any) -> Any:
    """A copy of ``value`` with NaN and infinities replaced by None.

    JSON has no NaN; the findings render a missing number as an em dash, so
    None is the honest equivalent. The caller's dict is not modified.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def metrics_json(metrics: Mapping[str, Any]) -> str:
    """The metrics as the JSON text written to disk (indent 2, UTF-8 kept).

    :raises OutputError: when a value is not JSON data (e.g. a Path or set).
    """
    try:
        return json.dumps(json_safe(metrics), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
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


def output_paths(output_dir: Path | str, category: str) -> tuple[Path, Path]:
    """The (metrics, findings) paths of a category, checked but not created.

    Every check comes before the first directory or file is created, so a
    run that cannot write its outputs leaves the output directory as it
    found it.

    :raises OutputError: as :func:`check_output_dir`, or when a target path
        is a directory.
    """
    root = Path(output_dir)
    check_output_dir(root)
    if not re.fullmatch(r"[A-Za-z0-9_]+", category):
        raise OutputError(f"category name {category!r} is not a plain name")
    paths = (_inside(root, DATA_DIR) / f"{category}_metrics.json",
             _inside(root, FINDINGS_DIR) / f"{category}_findings.md")
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"{path} is a directory; move it aside and rerun")
    return paths


def write_outputs(output_dir: Path | str, category: str, metrics: Mapping[str, Any],
                  markdown: str) -> tuple[Path, Path]:
    """Write ``category_data/<cat>_metrics.json`` and ``category_findings/<cat>_findings.md``.

    :param output_dir: the analysis output directory.
    :param category: ``moe_fused`` or ``moe_unfused``.
    :param metrics: the metrics dict (not modified).
    :param markdown: the findings text from :mod:`jarvis_moe.findings`.
    :return: (metrics path, findings path).
    :raises FindingsContractError: when the markdown breaks the findings
        format for these metrics; nothing is written.
    :raises OutputError: when a directory or file cannot be written.
    """
    root = Path(output_dir)
    output_paths(root, category)
    payload = metrics_json(metrics)
    # Check against the metrics as they will be read back (NaN already None).
    ensure_findings(markdown, json.loads(payload))
    paths = output_paths(root, category)
    for name in (DATA_DIR, FINDINGS_DIR):
        _output_dir(root, name)
    for path, text in zip(paths, (payload, markdown)):
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return paths


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
