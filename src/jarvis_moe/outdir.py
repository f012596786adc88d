"""The output folders of a category run, opened so that no write can leave the output directory.

``category_data`` and ``category_findings`` are opened as directory file
descriptors with ``O_NOFOLLOW`` when the outputs are written, and every
file is then created and renamed relative to those descriptors: a folder
swapped for a symbolic link after any check cannot redirect a write. A
folder that is itself a link is used only when its target lies inside the
output directory, reached one component at a time, each again without
following a link.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from jarvis_moe.errors import OutputError

DATA_DIR = "category_data"
FINDINGS_DIR = "category_findings"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_root(root: Path) -> int:
    """The output directory itself, as the caller named it."""
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OutputError(f"output directory {root} does not exist") from None
    except NotADirectoryError:
        raise OutputError(f"output directory {root} is not a directory") from None
    except OSError as exc:
        raise OutputError(f"cannot open the output directory {root}: {exc.strerror or exc}") from None


def open_folder(root_fd: int, root: Path, name: str) -> int | None:
    """``root/name`` as a directory descriptor, or None when it does not exist.

    :raises OutputError: when it is not a directory, or a link leading out of ``root``.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise OutputError(f"cannot open {root / name}: {exc.strerror or exc}") from None
        return _open_link(root_fd, root, name)


def make_folder(root_fd: int, root: Path, name: str) -> int:
    """``root/name`` created (when missing) and opened as :func:`open_folder` does."""
    try:
        os.mkdir(name, 0o755, dir_fd=root_fd)
    except FileExistsError:
        pass  # opened (and judged) below
    except OSError as exc:
        raise OutputError(f"cannot create {root / name}: {exc.strerror or exc}") from None
    fd = open_folder(root_fd, root, name)
    if fd is None:
        raise OutputError(f"{root / name} disappeared while the outputs were written")
    return fd


def _open_link(root_fd: int, root: Path, name: str) -> int:
    """Follow the link ``root/name`` only to a directory inside ``root``, never through another link."""
    where = root / name
    try:
        if not stat.S_ISLNK(os.lstat(name, dir_fd=root_fd).st_mode):
            raise OutputError(f"{where} exists but is not a directory; move it aside and rerun")
        target = os.readlink(name, dir_fd=root_fd)
    except FileNotFoundError:
        raise OutputError(f"{where} disappeared while the outputs were written") from None
    parts = _inside_parts(root, target)
    if parts is None:
        raise OutputError(f"{where} is a symbolic link to {target}, outside the output directory; "
                          "refusing to write there")
    fd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise OutputError(f"{where} is a symbolic link to {target}, which is not a plain directory inside "
                          "the output directory; refusing to write there") from None
    return fd


def _inside_parts(root: Path, target: str) -> list[str] | None:
    """The link target as folder names below ``root``, or None when it leads elsewhere."""
    path = PurePosixPath(target)
    if path.is_absolute():
        try:
            path = path.relative_to(os.path.realpath(root))
        except ValueError:
            return None
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts or None


def check_output_dir(output_dir: Path | str) -> None:
    """Fail early when ``output_dir`` cannot take the outputs; creates nothing.

    Run before any analysis, so a blocked directory is reported before time
    is spent on the trace. The writer checks again, race-free, when it writes.

    :raises OutputError: the directory is missing or not writable, or
        ``category_data`` / ``category_findings`` exists as something other
        than a directory, or leads outside the output directory.
    """
    root = Path(output_dir)
    root_fd = open_root(root)
    try:
        for name in (DATA_DIR, FINDINGS_DIR):
            fd = open_folder(root_fd, root, name)
            target, probe = (root / name, fd) if fd is not None else (root, root_fd)
            try:
                if not os.access(".", os.W_OK | os.X_OK, dir_fd=probe):
                    raise OutputError(f"{target} is not writable")
            finally:
                if fd is not None:
                    os.close(fd)
    finally:
        os.close(root_fd)


@dataclass
class Folders:
    """The open descriptors of the output folders of one write."""

    root: Path
    root_fd: int
    fds: dict[str, int]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        os.close(self.root_fd)

    def still_in_place(self) -> None:
        """The folders written into are still the ones the names lead to."""
        for name, fd in self.fds.items():
            try:
                now = os.stat(name, dir_fd=self.root_fd)
            except OSError:
                now = None
            held = os.fstat(fd)
            if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                raise OutputError(f"{self.root / name} was replaced while the outputs were written; "
                                  "they went into the folder that was there before")


def open_folders(root: Path, folders: Iterable[str]) -> Folders:
    """Open the folders that exist (none is created yet), each checked."""
    opened = Folders(root, open_root(root), {})
    try:
        for name in sorted(set(folders)):
            fd = open_folder(opened.root_fd, root, name)
            if fd is not None:
                opened.fds[name] = fd
    except BaseException:
        opened.close()
        raise
    return opened
