"""This plugin's manifest, ``plugin.toml``: its categories and their default options.

An installed wheel carries the manifest inside the package
(``jarvis_moe/plugin.toml``); a source checkout has it at the repository
root. Reading it needs the standard library only, so registering the
categories stays instant.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from jarvis_moe.infile import InputFileError, not_utf8, read_regular
from jarvis_moe.tomlcheck import (
    MAX_TOML_BYTES, ConfigError, check_option_value, check_unknown, expect_bool, expect_str, expect_str_list,
    expect_table, override, parse_toml,
)

MANIFEST_NAME = "plugin.toml"
CATEGORY_KEYS = ("description", "enabled", "inputs", "outputs", "options")


class CategorySpec(NamedTuple):
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


class Manifest(NamedTuple):
    """A validated ``plugin.toml``."""

    name: str
    source: str
    options: Mapping[str, Any]
    categories: Mapping[str, CategorySpec]


def parse_manifest(text: str, source: str) -> Manifest:
    """Validate the text of a plugin manifest.

    :param text: TOML text of a ``plugin.toml``.
    :param source: how to name the file in error messages.
    :return: the manifest, with each category's options merged.
    :raises ConfigError: on invalid TOML, an unknown key or a wrong type.
    """
    data = parse_toml(text, source)
    check_unknown(data, ("name", "options", "categories"), source, "")
    if "name" not in data:
        raise ConfigError(f"{source}: name: missing (the plugin's distribution name)")
    name = expect_str(data["name"], source, "name")
    shared = {
        key: check_option_value(value, source, f"options.{key}")
        for key, value in expect_table(data.get("options", {}), source, "options").items()
    }
    categories: dict[str, CategorySpec] = {}
    tables = expect_table(data.get("categories", {}), source, "categories")
    for cat_name, raw in tables.items():
        prefix = f"categories.{cat_name}"
        table = expect_table(raw, source, prefix)
        check_unknown(table, CATEGORY_KEYS, source, prefix)
        for required in ("description", "inputs", "outputs"):
            if required not in table:
                raise ConfigError(f"{source}: {prefix}.{required}: missing")
        options = dict(shared)
        own = expect_table(table.get("options", {}), source, f"{prefix}.options")
        for key, value in own.items():
            key_path = f"{prefix}.options.{key}"
            value = check_option_value(value, source, key_path)
            options[key] = override(shared[key], value, source, key_path) if key in shared else value
        categories[cat_name] = CategorySpec(
            name=cat_name,
            description=expect_str(table["description"], source, f"{prefix}.description"),
            enabled=expect_bool(table.get("enabled", True), source, f"{prefix}.enabled"),
            inputs=expect_str_list(table["inputs"], source, f"{prefix}.inputs"),
            outputs=expect_str_list(table["outputs"], source, f"{prefix}.outputs"),
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
        data = read_regular(path, MAX_TOML_BYTES)
    except InputFileError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {not_utf8(data)}") from None
    return _parsed(text, str(path))


def load_manifest() -> Manifest:
    """Read and validate this plugin's manifest.

    The file is read on every call; its parse is kept for as long as its text
    stays the same (a ``jarvis run`` asks for it once per category and once
    to register them, each parse 1-2 ms). Callers copy what they change.

    :raises ConfigError: when it is missing or invalid.
    """
    packaged = resources.files("jarvis_moe") / MANIFEST_NAME
    if packaged.is_file():
        return _parsed(packaged.read_text(encoding="utf-8"), f"jarvis_moe/{MANIFEST_NAME}")
    return read_manifest(Path(__file__).resolve().parents[2] / MANIFEST_NAME)


@lru_cache(maxsize=4)
def _parsed(text: str, source: str) -> Manifest:
    return parse_manifest(text, source)


def default_options(category: str) -> dict[str, Any]:
    """The manifest defaults of one category (shared options with its own laid over them).

    :raises KeyError: when the manifest has no such category.
    """
    categories = load_manifest().categories
    if category not in categories:
        raise KeyError(f"no category {category!r} in {MANIFEST_NAME} (known: {', '.join(sorted(categories))})")
    return dict(categories[category].options)
