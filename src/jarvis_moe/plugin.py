"""The jarvis-moe plugin: registers ``moe_fused`` and ``moe_unfused`` with a Jarvis host.

A plugin needs only pluggy and the host's hook name: this module makes its
own ``jarvis`` hook-implementation marker and imports nothing from any host,
so the bundled reference host and the real pipeline load it alike. The
categories and their default options come from the plugin's manifest. The
analysis engine (polars, pydantic) is imported only when a category runs,
so listing categories stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy

from jarvis_moe.manifest import load_manifest

hookimpl = pluggy.HookimplMarker("jarvis")


class LazyAnalyser:
    """The analyse callable of one category; imports the engine on first call."""

    def __init__(self, category: str) -> None:
        self.category = category

    def __repr__(self) -> str:
        return f"LazyAnalyser({self.category!r})"

    def __call__(self, output_dir: Path, *, scope: str, options: Mapping[str, Any]) -> Any:
        """Analyse this category in ``output_dir``; never raises (see :func:`jarvis_moe.run.analyse`).

        :return: an :class:`~jarvis_moe.run.AnalysisResult` (status, message,
            outputs, warnings, internal_error).
        """
        from jarvis_moe import run

        return run.analyse(Path(output_dir), category=self.category, scope=scope, options=options)


@hookimpl
def jarvis_register_categories(register: Callable[..., None]) -> None:
    """Register every category of the manifest, each with a lazy analyser.

    :param register: the host's registration callback, called with keyword
        arguments (see the host protocol).
    """
    for spec in load_manifest().categories.values():
        register(
            name=spec.name, description=spec.description, inputs=spec.inputs, outputs=spec.outputs,
            analyse=LazyAnalyser(spec.name), enabled=spec.enabled, options=dict(spec.options),
        )
