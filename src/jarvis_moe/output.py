"""Write the outputs of one category run as one set, never outside the output directory.

Every file a run writes (metrics JSON, findings page, replay spec and script,
roofline chart) goes through :func:`write_outputs`:

- **No path is trusted between a check and a write.** The folders are
  opened as directory descriptors at write time (:mod:`jarvis_moe.outdir`)
  and every file is created and renamed relative to them, so swapping a
  folder for a symbolic link after any check cannot redirect a write.
- **Fixed modes.** Every file is created ``0644`` whatever the umask, and
  never takes the mode of the file it replaces (a ``chmod 777`` or setuid
  bit on an old output does not survive a rerun).
- **One set.** All files are first written to temporaries and fsynced (disk
  full, a quota, a failed write: the temporaries are removed and the
  previous set is untouched). Then, in one short final step: the old
  findings page is removed, stale optional outputs of an earlier run are
  removed, the data files are renamed into place, and the findings page is
  renamed in last. The page is the set's commit mark: a reader that sees a
  page sees the data it cites. A process killed inside that step leaves no
  page (no set) rather than a page beside data of another run.
- **Stale temporaries** of earlier runs that were killed are removed by the
  next run (temporaries carry the writer's process id; those of a live
  process are left alone).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pydantic_core import PydanticSerializationError

from jarvis_moe.errors import OutputError
from jarvis_moe.metrics import MetricsError, MetricsNoData, MetricsOk
from jarvis_moe.outdir import DATA_DIR, FINDINGS_DIR, Folders, check_output_dir, make_folder, open_folders

__all__ = ["CategoryOutputs", "OutputError", "check_output_dir", "metrics_json", "write_outputs"]

FILE_MODE = 0o644
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# ".<target>.<pid>.<random>.tmp"; earlier versions wrote ".<target>.<random>.tmp".
_TEMP = re.compile(r"\.(?P<target>[A-Za-z0-9_][A-Za-z0-9_.-]*?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{6,16}\.tmp")


@dataclass(frozen=True)
class CategoryOutputs:
    """Every output a run of ``category`` may write, relative to the output directory."""

    category: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.category):
            raise OutputError(f"category name {self.category!r} is not a plain name")

    @property
    def metrics(self) -> str:
        return f"{DATA_DIR}/{self.category}_metrics.json"

    @property
    def findings(self) -> str:
        return f"{FINDINGS_DIR}/{self.category}_findings.md"

    @property
    def roofline(self) -> str:
        return f"{FINDINGS_DIR}/{self.category}_roofline.svg"

    @property
    def replay_spec(self) -> str:
        return f"{DATA_DIR}/{self.category}_replay.json"

    @property
    def replay_script(self) -> str:
        return f"{FINDINGS_DIR}/{self.category}_replay.py"

    @property
    def optional(self) -> tuple[str, ...]:
        """The outputs only some runs write; a run that does not write one removes an old one."""
        # The PNG chart of 0.2 and earlier: a rerun removes it with the other stale outputs.
        return (self.roofline, self.replay_script, self.replay_spec, f"{FINDINGS_DIR}/{self.category}_roofline.png")


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


# --- writing -------------------------------------------------------------------


def _split(relative: str) -> tuple[str, str]:
    folder, _, name = relative.partition("/")
    if folder not in (DATA_DIR, FINDINGS_DIR) or not _PLAIN_NAME.fullmatch(name):
        raise OutputError(f"{relative!r} is not a plain file under {DATA_DIR}/ or {FINDINGS_DIR}/")
    return folder, name


def _write_temp(dir_fd: int, name: str, data: bytes) -> str:
    """``data`` in a new temporary file next to ``name``, mode 0644, fsynced."""
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, _NEW_FILE, FILE_MODE, dir_fd=dir_fd)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(dir_fd, tmp)
        raise
    os.close(fd)
    return tmp


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _is_dir(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode)
    except FileNotFoundError:
        return False


def _clean_stale_temps(dir_fd: int, targets: set[str]) -> None:
    """Remove temporaries of our outputs left by a writer that no longer runs."""
    for entry in os.listdir(dir_fd):
        match = _TEMP.fullmatch(entry)
        if not match or match["target"] not in targets:
            continue
        pid = int(match["pid"]) if match["pid"] else None
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        try:
            os.unlink(entry, dir_fd=dir_fd)
        except OSError:
            pass  # gone meanwhile, or not ours to remove: harmless


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_outputs(output_dir: Path | str, files: Sequence[tuple[str, bytes]],
                  stale: Iterable[str] = ()) -> tuple[Path, ...]:
    """Write ``files`` (relative path, content) as one set; the last one is its findings page.

    :param stale: outputs of an earlier run to remove with the same step
        (an optional output this run does not write).
    :return: the paths written, in the order given.
    :raises OutputError: when a folder or file cannot be written; the
        previous set is then left as it was (or, for a failure in the final
        renaming step, without its findings page).
    """
    root = Path(output_dir)
    placed = [(*_split(relative), data) for relative, data in files]
    removed = [_split(relative) for relative in stale]
    if not placed:
        return ()
    folders = open_folders(root, [folder for folder, _, _ in placed] + [folder for folder, _ in removed])
    try:
        for folder, name, _ in placed:
            if folder in folders.fds and _is_dir(folders.fds[folder], name):
                raise OutputError(f"{root / folder / name} is a directory; move it aside and rerun")
        created = [folder for folder in sorted({folder for folder, _, _ in placed}) if folder not in folders.fds]
        for folder in created:
            folders.fds[folder] = make_folder(folders.root_fd, root, folder)
        for folder, fd in folders.fds.items():
            _clean_stale_temps(fd, {n for f, n, _ in placed if f == folder} | {n for f, n in removed if f == folder})
        try:
            _write_set(folders, placed, removed)
        except OutputError:
            for folder in created:  # a failed run on a fresh directory creates nothing
                try:
                    os.rmdir(folder, dir_fd=folders.root_fd)
                except OSError:
                    pass
            raise
    finally:
        folders.close()
    return tuple(root / folder / name for folder, name, _ in placed)


def _write_set(folders: Folders, placed: list[tuple[str, str, bytes]], removed: list[tuple[str, str]]) -> None:
    """Temporaries first, then the one renaming step with the page last."""
    staged: list[tuple[int, str, str]] = []
    current = "the outputs"
    try:
        for folder, name, data in placed:
            current = f"{folder}/{name}"
            fd = folders.fds[folder]
            staged.append((fd, name, _write_temp(fd, name, data)))
        page_fd, page, page_tmp = staged[-1]
        current = placed[-1][0] + "/" + page
        _unlink(page_fd, page)
        for folder, name in removed:
            current = f"{folder}/{name}"
            if folder in folders.fds and not _is_dir(folders.fds[folder], name):
                _unlink(folders.fds[folder], name)
        for (folder, name, _), (fd, _, tmp) in zip(placed[:-1], list(staged[:-1])):
            current = f"{folder}/{name}"
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            staged.pop(0)
        for fd in set(folders.fds.values()):
            os.fsync(fd)  # the data is on disk before the page that cites it
        current = placed[-1][0] + "/" + page
        os.replace(page_tmp, page, src_dir_fd=page_fd, dst_dir_fd=page_fd)
        staged.clear()
        os.fsync(page_fd)
    except OSError as exc:
        raise OutputError(f"cannot write {folders.root / current}: {exc.strerror or exc}") from exc
    finally:
        for fd, _, tmp in staged:
            _unlink(fd, tmp)
    folders.still_in_place()
