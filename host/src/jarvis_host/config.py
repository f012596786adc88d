"""The user config (``jarvis.toml``): categories switched off, options changed.

The registered categories bring their own defaults (each plugin reads its
own manifest); a user config is laid over them, and checked against them:
an unknown category or option, or an option of another type than its
default, is a :class:`ConfigError` whose message names the file and the
dotted key, e.g. ``jarvis.toml: categories.moe_fused.enabled: expected a
boolean, got 'yes'``.
""" 

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from jarvis_host.category import Category
from jarvis_host.tomlcheck import ConfigError, check_unknown, expect_bool, expect_table, override, read_toml

CONFIG_ENV = "JARVIS_CONFIG"
DEFAULT_CONFIG_NAME = "jarvis.toml"
DEFAULT_SOURCE = "default (plugin)"
_USER_CATEGORY_KEYS = ("enabled", "options")


@dataclass(frozen=True)
class UserConfig:
    """A validated user config: per-category ``enabled`` and option overrides.

    Only the shape is checked here; category names and option types are
    checked against the registered categories by :func:`resolve_settings`.
    """

    source: str
    enabled: Mapping[str, bool] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class CategorySettings(NamedTuple):
    """What the host runs a category with, and where its enabled state came from."""

    enabled: bool
    enabled_source: str
    options: Mapping[str, Any]


class ConfigLocation(NamedTuple):
    """The user config in effect and where the host found it.

    ``origin`` is ``"--config"``, ``"$JARVIS_CONFIG"``, ``"./jarvis.toml"``
    or ``"none"`` (plugin defaults only).
    """

    path: Path | None
    origin: str

    def describe(self) -> str:
        """One line for the user: ``config: jarvis.toml (./jarvis.toml)``."""
        if self.path is None:
            return (f"config: none (no --config, ${CONFIG_ENV} or ./{DEFAULT_CONFIG_NAME}): "
                    "plugin defaults")
        return f"config: {self.path} ({self.origin})"


def locate_config(explicit: Path | None = None, environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> ConfigLocation:
    """Locate the user config and say where it came from.

    :param explicit: the ``--config`` argument, which wins when given.
    :param environ: environment to read ``JARVIS_CONFIG`` from (default: ``os.environ``).
    :param cwd: directory searched for ``jarvis.toml`` (default: the current one).
    :return: the config path (``None`` when there is none) and its origin. A
        path named explicitly or by ``JARVIS_CONFIG`` is returned even when
        missing, so that reading it reports the mistake instead of silently
        ignoring it.
    """
    if explicit is not None:
        return ConfigLocation(Path(explicit), "--config")
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return ConfigLocation(Path(env[CONFIG_ENV]), f"${CONFIG_ENV}")
    candidate = (Path.cwd() if cwd is None else cwd) / DEFAULT_CONFIG_NAME
    if candidate.is_file():
        return ConfigLocation(candidate, f"./{DEFAULT_CONFIG_NAME}")
    return ConfigLocation(None, "none")


def read_user_config(path: Path) -> UserConfig:
    """Read a user config and check its shape.

    :param path: the TOML file.
    :return: the per-category overrides it holds.
    :raises ConfigError: when the file is missing, not TOML, or has an
        unknown key or a wrongly typed ``enabled``.
    """
    source = str(path)
    data = read_toml(Path(path))
    check_unknown(data, ("categories",), source, "")
    enabled: dict[str, bool] = {}
    options: dict[str, dict[str, Any]] = {}
    for cat_name, raw in expect_table(data.get("categories", {}), source, "categories").items():
        prefix = f"categories.{cat_name}"
        table = expect_table(raw, source, prefix)
        check_unknown(table, _USER_CATEGORY_KEYS, source, prefix)
        if "enabled" in table:
            enabled[cat_name] = expect_bool(table["enabled"], source, f"{prefix}.enabled")
        if "options" in table:
            options[cat_name] = dict(expect_table(table["options"], source, f"{prefix}.options"))
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
        enabled, source = category.enabled_by_default, DEFAULT_SOURCE
        options = dict(category.default_options)
        if config is not None:
            if cat_name in config.enabled:
                enabled, source = config.enabled[cat_name], f"config: {config.source}"
            for key, value in config.options.get(cat_name, {}).items():
                key_path = f"categories.{cat_name}.options.{key}"
                if key not in options:
                    raise ConfigError(f"{config.source}: {key_path}: unknown option ({_closest(key, options)})")
                options[key] = override(options[key], value, config.source, key_path)
        settings[cat_name] = CategorySettings(enabled=enabled, enabled_source=source, options=options)
    return settings


def _closest(key: str, known: Mapping[str, Any]) -> str:
    """``did you mean <the closest known key>?``, or the known keys when none is close."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(known)) or 'none'}"


def settings_at(categories: Mapping[str, Category], location: ConfigLocation) -> dict[str, CategorySettings]:
    """Read the located user config (if any) and lay it over the defaults.

    :param categories: the registered categories by name.
    :param location: where the user config is (see :func:`locate_config`).
    :return: the settings of every registered category, by name.
    :raises ConfigError: see :func:`read_user_config` and :func:`resolve_settings`.
    """
    config = read_user_config(location.path) if location.path is not None else None
    return resolve_settings(categories, config)


def load_settings(categories: Mapping[str, Category], config_path: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, CategorySettings]:
    """Find, read and apply the user config in one step.

    :param categories: the registered categories by name.
    :param config_path: the ``--config`` argument, if any.
    :param environ: environment for ``JARVIS_CONFIG`` (default: ``os.environ``).
    :return: the settings of every registered category, by name.
    :raises ConfigError: see :func:`read_user_config` and :func:`resolve_settings`.
    """
    return settings_at(categories, locate_config(config_path, environ))
