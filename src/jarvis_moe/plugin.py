"""The jarvis-moe plugin: registers ``moe_fused`` and ``moe_unfused``.

The categories come from the plugin's manifest (``plugin.toml``). Nothing
heavy is imported here: the host imports this module for every command,
including listing, so the analysis engine (polars, pydantic) is imported only
when a category actually runs.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from jarvis_moe.host import hookimpl
from jarvis_moe.host.category import Category, CategoryResult, Status
from jarvis_moe.host.config import Manifest, parse_manifest, read_manifest

MANIFEST_NAME = "plugin.toml"


def load_manifest() -> Manifest:
    """Read this plugin's manifest.

    An installed wheel carries it inside the package (``jarvis_moe/plugin.toml``);
    a source checkout or editable install has it at the repository root.

    :return: the validated manifest.
    :raises ConfigError: when the manifest is missing or invalid.
    """
    packaged = resources.files("jarvis_moe") / MANIFEST_NAME
    if packaged.is_file():
        if isinstance(packaged, Path):
            return read_manifest(packaged)
        return parse_manifest(packaged.read_text(encoding="utf-8"), f"jarvis_moe/{MANIFEST_NAME}")
    return read_manifest(Path(__file__).resolve().parents[2] / MANIFEST_NAME)


def default_options(category: str) -> dict[str, Any]:
    """The manifest defaults of one category, for callers outside the host.

    :param category: ``moe_fused`` or ``moe_unfused``.
    :return: a fresh dict of the shared options with the category's own
        overrides laid over them.
    :raises KeyError: when the manifest has no such category.
    """
    categories = load_manifest().categories
    if category not in categories:
        raise KeyError(f"no category {category!r} in {MANIFEST_NAME} (known: {', '.join(sorted(categories))})")
    return dict(categories[category].options)


class LazyAnalyser:
    """The analyse callable of one category; imports the engine on first call."""

    def __init__(self, category: str) -> None:
        self.category = category

    def __repr__(self) -> str:
        return f"LazyAnalyser({self.category!r})"

    def __call__(self, output_dir: Path, *, scope: str, options: Mapping[str, Any]) -> CategoryResult:
        """Run the analysis of this category.

        :param output_dir: the analysis output directory.
        :param scope: ``"standalone"`` or ``"comparative"``.
        :param options: the merged options of the category.
        :return: the engine's result; an internal ``ERROR`` result when the
            engine cannot be imported or raises (a bug, since it reports bad
            input through its result).
        """
        try:
            run = importlib.import_module("jarvis_moe.run")
            return run.analyse(Path(output_dir), category=self.category, scope=scope, options=options)
        except Exception as exc:
            if os.environ.get("JARVIS_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            return CategoryResult(
                Status.ERROR,
                f"internal error in {self.category}: {type(exc).__name__}: {exc}",
                internal_error=True,
            )


@hookimpl
def jarvis_register_categories(register: Callable[[Category], None]) -> None:
    """Register every category of the manifest, each with a lazy analyser.

    :param register: the host's registration callback.
    """
    manifest = load_manifest()
    for spec in manifest.categories.values():
        register(
            Category(
                name=spec.name,
                description=spec.description,
                inputs=spec.inputs,
                outputs=spec.outputs,
                analyse=LazyAnalyser(spec.name),
                enabled_by_default=spec.enabled,
                default_options=spec.options,
            )
        )
