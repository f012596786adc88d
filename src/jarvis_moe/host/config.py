"""Plugin manifests (``plugin.toml``) and the user config (``jarvis.toml``).

A manifest states which categories a plugin provides, whether they run by
default, and their default options. A user config switches categories off or
changes options. Both are read with :mod:`tomllib` and checked by hand rather
than with a schema library: ``jarvis categories`` reads them on every call and
has to stay instant.

Every problem is a :class:`ConfigError` whose message names the file and the
dotted key, e.g. ``plugin.toml: categories.moe_fused.enabled: expected a
boolean, got 'yes'``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jarvis_moe.host.category import Category

CONFIG_ENV = "JARVIS_CONFIG"
DEFAULT_CONFIG_NAME = "jarvis.toml"
MANIFEST_SOURCE = "default (plugin.toml)"

_MANIFEST_CATEGORY_KEYS = ("description", "enabled", "inputs", "outputs", "options")
_USER_CATEGORY_KEYS = ("enabled", "options")


class ConfigError(ValueError):
    """A manifest or user config that cannot be used; the message names file and key."""


@dataclass(frozen=True)
class CategorySpec:
    """One ``[categories.<name>]`` table of a manifest.

    ``options`` already holds the manifest's shared ``[options]`` with the
    category's own ``[categories.<name>.options]`` laid over them.
    """

    name: str
    description: str
    enabled: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Manifest:
    """A validated ``plugin.toml``."""

    name: str
    source: str
    options: Mapping[str, Any]
    categories: Mapping[str, CategorySpec]


@dataclass(frozen=True)
class UserConfig:
    """A validated user config: per-category ``enabled`` and option overrides.

    Only the shape is checked here; category names and option types are
    checked against the registered categories by :func:`resolve_settings`.
    """

    source: str
    enabled: Mapping[str, bool] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CategorySettings:
    """What the host runs a category with, and where its enabled state came from."""

    enabled: bool
    enabled_source: str
    options: Mapping[str, Any]


def _describe(value: Any) -> str:
    """A short, readable form of an offending value for error messages."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return _parse_toml(text, str(path))


def _check_unknown(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            known = ", ".join(allowed)
            raise ConfigError(f"{source}: {where}: unknown key (known keys: {known})")


def _expect_table(value: Any, source: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a table, got {_describe(value)}")
    return value


def _expect_bool(value: Any, source: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key}: expected a boolean, got {_describe(value)}")
    return value


def _expect_str(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key}: expected a string, got {_describe(value)}")
    return value


def _expect_str_list(value: Any, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {key}: expected an array of strings, got {_describe(value)}")
    return tuple(value)


def _check_option_value(value: Any, source: str, key: str) -> Any:
    # Options reach the analyser as plain scalars; nested tables would have no
    # defined override rule.
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(item, (bool, int, float, str)) for item in value):
        return value
    raise ConfigError(
        f"{source}: {key}: expected a boolean, number, string or array of them, got {_describe(value)}"
    )


def _override(default: Any, value: Any, source: str, key: str) -> Any:
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
            f"{source}: {key}: expected {_type_name(default)} like the default "
            f"{_describe(default)}, got {_describe(value)}"
        )
    return value


def parse_manifest(text: str, source: str) -> Manifest:
    """Validate the text of a plugin manifest.

    :param text: TOML text of a ``plugin.toml``.
    :param source: how to name the file in error messages.
    :return: the manifest, with each category's options merged.
    :raises ConfigError: on invalid TOML, an unknown key or a wrong type.
    """
    data = _parse_toml(text, source)
    _check_unknown(data, ("name", "options", "categories"), source, "")
    if "name" not in data:
        raise ConfigError(f"{source}: name: missing (the plugin's distribution name)")
    name = _expect_str(data["name"], source, "name")
    shared = {
        key: _check_option_value(value, source, f"options.{key}")
        for key, value in _expect_table(data.get("options", {}), source, "options").items()
    }
    categories: dict[str, CategorySpec] = {}
    tables = _expect_table(data.get("categories", {}), source, "categories")
    for cat_name, raw in tables.items():
        prefix = f"categories.{cat_name}"
        table = _expect_table(raw, source, prefix)
        _check_unknown(table, _MANIFEST_CATEGORY_KEYS, source, prefix)
        for required in ("description", "inputs", "outputs"):
            if required not in table:
                raise ConfigError(f"{source}: {prefix}.{required}: missing")
        options = dict(shared)
        own = _expect_table(table.get("options", {}), source, f"{prefix}.options")
        for key, value in own.items():
            key_path = f"{prefix}.options.{key}"
            value = _check_option_value(value, source, key_path)
            options[key] = _override(shared[key], value, source, key_path) if key in shared else value
        categories[cat_name] = CategorySpec(
            name=cat_name,
            description=_expect_str(table["description"], source, f"{prefix}.description"),
            enabled=_expect_bool(table.get("enabled", True), source, f"{prefix}.enabled"),
            inputs=_expect_str_list(table["inputs"], source, f"{prefix}.inputs"),
            outputs=_expect_str_list(table["outputs"], source, f"{prefix}.outputs"),
            options=options,
        )
    return Manifest(name=name, source=source, options=shared, categories=categories)


def read_manifest(path: Path) -> Manifest:
    """Read and validate a plugin manifest file.

    :param path: the ``plugin.toml`` to read.
    :return: the validated manifest.
    :raises ConfigError: naming the file and key of the first problem found.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_manifest(text, str(path))


def find_config(explicit: Path | None = None, environ: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> Path | None:
    """Locate the user config.

    :param explicit: the ``--config`` argument, which wins when given.
    :param environ: environment to read ``JARVIS_CONFIG`` from (default: ``os.environ``).
    :param cwd: directory searched for ``jarvis.toml`` (default: the current one).
    :return: the config path, or ``None`` when there is none. A path named
        explicitly or by ``JARVIS_CONFIG`` is returned even when missing, so
        that reading it reports the mistake instead of silently ignoring it.
    """
    if explicit is not None:
        return Path(explicit)
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    candidate = (Path.cwd() if cwd is None else cwd) / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def read_user_config(path: Path) -> UserConfig:
    """Read a user config and check its shape.

    :param path: the TOML file.
    :return: the per-category overrides it holds.
    :raises ConfigError: when the file is missing, not TOML, or has an
        unknown key or a wrongly typed ``enabled``.
    """
    source = str(path)
    data = _read_toml(Path(path))
    _check_unknown(data, ("categories",), source, "")
    enabled: dict[str, bool] = {}
    options: dict[str, dict[str, Any]] = {}
    for cat_name, raw in _expect_table(data.get("categories", {}), source, "categories").items():
        prefix = f"categories.{cat_name}"
        table = _expect_table(raw, source, prefix)
        _check_unknown(table, _USER_CATEGORY_KEYS, source, prefix)
        if "enabled" in table:
            enabled[cat_name] = _expect_bool(table["enabled"], source, f"{prefix}.enabled")
        if "options" in table:
            options[cat_name] = dict(_expect_table(table["options"], source, f"{prefix}.options"))
    return UserConfig(source=source, enabled=enabled, options=options)


def resolve_settings(categories: Mapping[str, Category],
                     config: UserConfig | None) -> dict[str, CategorySettings]:
    """Lay a user config over the defaults of the registered categories.

    :param categories: the registered categories by name.
    :param config: the user config, or ``None`` for plugin defaults only.
    :return: the settings of every registered category, by name.
    :raises ConfigError: when the config names an unknown category or option,
        or gives an option a value whose type differs from its default.
    """
    if config is not None:
        known = ", ".join(sorted(categories)) or "none"
        for cat_name in {*config.enabled, *config.options}:
            if cat_name not in categories:
                raise ConfigError(
                    f"{config.source}: categories.{cat_name}: unknown category (known: {known})"
                )
    settings: dict[str, CategorySettings] = {}
    for cat_name, category in categories.items():
        enabled, source = category.enabled_by_default, MANIFEST_SOURCE
        options = dict(category.default_options)
        if config is not None:
            if cat_name in config.enabled:
                enabled, source = config.enabled[cat_name], f"config: {config.source}"
            for key, value in config.options.get(cat_name, {}).items():
                key_path = f"categories.{cat_name}.options.{key}"
                if key not in options:
                    known = ", ".join(sorted(options)) or "none"
                    raise ConfigError(f"{config.source}: {key_path}: unknown option (known: {known})")
                options[key] = _override(options[key], value, config.source, key_path)
        settings[cat_name] = CategorySettings(enabled=enabled, enabled_source=source, options=options)
    return settings


def load_settings(categories: Mapping[str, Category], config_path: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, CategorySettings]:
    """Find, read and apply the user config in one step.

    :param categories: the registered categories by name.
    :param config_path: the ``--config`` argument, if any.
    :param environ: environment for ``JARVIS_CONFIG`` (default: ``os.environ``).
    :return: the settings of every registered category, by name.
    :raises ConfigError: see :func:`read_user_config` and :func:`resolve_settings`.
    """
    path = find_config(config_path, environ)
    config = read_user_config(path) if path is not None else None
    return resolve_settings(categories, config)
