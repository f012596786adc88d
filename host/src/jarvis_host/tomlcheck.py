"""Reading the user config's TOML and checking its values, with messages that name file and key.

Checked by hand rather than with a schema library: ``jarvis categories``
reads the config on every call and has to stay instant.
"""

from __future__ import annotations

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


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
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
        value = float(value) if ok else value
    else:
        ok = type(value) is type(default)
    if not ok:
        raise ConfigError(
            f"{source}: {key}: expected {type_name(default)} like the default "
            f"{describe(default)}, got {describe(value)}"
        )
    return value
