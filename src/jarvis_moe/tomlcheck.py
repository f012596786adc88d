"""Checking the TOML of the plugin's manifest, with messages that name file and key.

Checked by hand rather than with a schema library: a host lists the
categories by reading the manifest, and listing has to stay instant. The
reference host checks its user config the same way, with its own module
(``jarvis_host.tomlcheck``): the plugin imports nothing from a host.
"""

from __future__ import annotations

import tomllib
from typing import Any, Mapping


class ConfigError(ValueError):
    """A manifest or user config that cannot be used; the message names file and key."""


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


MAX_TOML_BYTES = 1 << 20  # a manifest or config of a few KB; 1 MiB is far beyond any


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML: tables or arrays nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"{source}: invalid TOML: {str(exc).split(':')[0]}") from None


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


def expect_str(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key}: expected a string, got {describe(value)}")
    return value


def expect_str_list(value: Any, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {key}: expected an array of strings, got {describe(value)}")
    return tuple(value)


def check_option_value(value: Any, source: str, key: str) -> Any:
    # Options reach the analyser as plain scalars; nested tables would have no
    # defined override rule.
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(item, (bool, int, float, str)) for item in value):
        return value
    raise ConfigError(
        f"{source}: {key}: expected a boolean, number, string or array of them, got {describe(value)}"
    )


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


