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
        than a directory.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise OutputError(f"output directory {root} does not exist")
    for name in (DATA_DIR, FINDINGS_DIR):
        path = root / name
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise OutputError(f"{path} exists but is not a directory; move it aside and rerun")
        target = path if path.is_dir() else root
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputError(f"{target} is not writable")


def _output_dir(root: Path, name: str) -> Path:
    directory = root / name
    if (directory.exists() or directory.is_symlink()) and not directory.is_dir():
        raise OutputError(f"{directory} exists but is not a directory; move it aside and rerun")
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    return directory


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
    if not root.is_dir():
        raise OutputError(f"output directory {root} does not exist")
    if not re.fullmatch(r"[A-Za-z0-9_]+", category):
        raise OutputError(f"category name {category!r} is not a plain name")
    payload = metrics_json(metrics)
    # Check against the metrics as they will be read back (NaN already None).
    ensure_findings(markdown, json.loads(payload))
    data_dir = _output_dir(root, DATA_DIR)
    findings_dir = _output_dir(root, FINDINGS_DIR)
    paths = (data_dir / f"{category}_metrics.json", findings_dir / f"{category}_findings.md")
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"{path} is a directory; move it aside and rerun")
    for path, text in zip(paths, (payload, markdown)):
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return paths
