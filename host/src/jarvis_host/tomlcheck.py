"""Reading the user config's TOML and checking its values, with messages that name file and key.

Checked by hand rather than with a schema library: ``jarvis categories``
reads the config on every call and has to stay instant.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A user config that cannot be used; the message names file and key."""


def describe(value: Any) -> str:
    """A short, readable form of an offending value for error messages."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def type_name(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


MAX_TOML_BYTES = 1 << 20  # a config of a few KB; 1 MiB is far beyond any
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
NOT_REGULAR = "is not a regular file (a FIFO, device, socket or directory is never read)"


class NotRegularFile(OSError):
    """A path that is not a regular file, or one over the size accepted; never read."""

    def __str__(self) -> str:
        return str(self.args[0])


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, judged on the open file: a regular file of at most ``limit`` bytes.

    Opened with ``O_NONBLOCK``, so a FIFO without a writer cannot block the
    open, and refused before a byte is read when it is a FIFO, a device such
    as ``/dev/zero``, a socket or a directory.

    :raises NotRegularFile: for anything but a regular file, or one over ``limit``.
    :raises OSError: when it cannot be opened.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(NOT_REGULAR)
        if info.st_size > limit:
            raise NotRegularFile(f"is {info.st_size} bytes, more than the {limit} accepted")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = fh.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise NotRegularFile(f"grew to more than the {limit} bytes accepted while it was read")
    return data


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML: tables or arrays nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"{source}: invalid TOML: {str(exc).split(':')[0]}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = read_regular(path, MAX_TOML_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except NotRegularFile as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text: write it as UTF-8") from None
    return parse_toml(text, str(path))


def check_unknown(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            known = ", ".join(allowed)
            raise ConfigError(f"{source}: {where}: unknown key (known keys: {known})")


def expect_table(value: Any, source: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a table, got {describe(value)}")
    return value


def expect_bool(value: Any, source: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key}: expected a boolean, got {describe(value)}")
    return value


def override(default: Any, value: Any, source: str, key: str) -> Any:
    """Check that an override has the type of the value it replaces.

    bool is a subclass of int in Python, so booleans are matched first; an
    integer is accepted where the default is a float (``anomaly_pct = 120``).
    """
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        if isinstance(value, int):
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(f"{source}: {key}: {describe(value)} is too large for a number") from None
    else:
        ok = type(value) is type(default)
    if not ok:
        raise ConfigError(
            f"{source}: {key}: expected {type_name(default)} like the default "
            f"{describe(default)}, got {describe(value)}"
        )
    return value
