"""Shared fixtures of the host tests: fake plugin distributions, a fake engine
and ways to run the commands in a subprocess.

The host is tested on its own, with fake plugins, and with jarvis-moe as the
real plugin it was written for (installed beside it, as the repository's
README installs both); ``fixture_copy`` copies jarvis-moe's bundled output
directories from ``tests/fixtures/``."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

import jarvis_moe
from jarvis_moe import __version__, plugin, run
from jarvis_host.plugins import PluginInfo, Registry, load_registry

from .helpers import make_output_dir

FIXTURES = Path(__file__).parents[2] / "tests" / "fixtures"

# A plugin as a third party writes it: registration by keyword arguments,
# an analyser returning a plain object. HOOKIMPL_IMPORT picks the marker: the
# host's (``jarvis_host.hookimpl``) or the plugin's own pluggy marker, in
# which case the module imports nothing from jarvis_moe at all.
GOOD_PLUGIN = '''
from types import SimpleNamespace
HOOKIMPL_IMPORT

def analyse(output_dir, *, scope, options):
    return RESULT

@hookimpl
def jarvis_register_categories(register):
    for name in NAMES:
        register(name=name, description="fake " + name, inputs=["in.csv"], outputs=["out.md"],
                 analyse=analyse, EXTRA)
'''

MARKERS = {
    "host": "from jarvis_host import hookimpl",
    "own": "import pluggy\nhookimpl = pluggy.HookimplMarker(\"jarvis\")",
}
OK_RESULT = "SimpleNamespace(status=\"OK\", message=f\"scope={scope} options={sorted(options.items())}\")"


def good_plugin_source(*names: str, marker: str = "host", result: str = OK_RESULT,
                       enabled: bool = True, options: Mapping[str, Any] | None = None) -> str:
    """Source of a plugin module registering the given category names.

    :param marker: ``"host"`` decorates with ``jarvis_host.hookimpl``;
        ``"own"`` makes its own pluggy marker and imports nothing from jarvis_moe.
    :param result: Python expression the analyser returns (``scope`` and
        ``options`` are in scope).
    :param enabled: the ``enabled`` keyword passed to ``register``.
    :param options: the ``options`` keyword passed to ``register``.
    """
    extra = f"enabled={enabled!r}, options={dict(options or {})!r}"
    return (GOOD_PLUGIN.replace("HOOKIMPL_IMPORT", MARKERS[marker]).replace("NAMES", repr(tuple(names)))
            .replace("RESULT", result).replace("EXTRA", extra))


@pytest.fixture
def good_plugin() -> Callable[..., str]:
    """Source of a working plugin module; call it with the category names
    (see :func:`good_plugin_source` for the keywords)."""
    return good_plugin_source


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copy one of jarvis-moe's bundled output directories to a temporary place and return it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """An empty analysis output directory (``category_data/`` only) under ``tmp_path``."""
    return make_output_dir(tmp_path / "analysis")


class FakeSite:
    """A directory on ``sys.path`` holding fake installed distributions.

    Each distribution is a ``*.dist-info`` folder with a ``[jarvis]`` entry
    point and the module it names, which is how importlib.metadata sees a
    really installed plugin.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, distribution: str, source: str, version: str = "1.0",
            entry_point: str = "main") -> str:
        """Install a fake distribution whose entry point names a new module.

        :return: the module's name (unique per distribution).
        """
        module = f"fake_{distribution.replace('-', '_')}_plugin"
        dist_info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8")
        (dist_info / "entry_points.txt").write_text(
            f"[jarvis]\n{entry_point} = {module}\n", encoding="utf-8")
        (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        self.modules.append(module)
        importlib.invalidate_caches()
        return module

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that sees these distributions."""
        env = dict(os.environ)
        env.pop("JARVIS_LOAD_PLUGINS", None)
        env.pop("JARVIS_CONFIG", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        env.update(extra)
        return env


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh :class:`FakeSite` on ``sys.path``; its modules are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    site = FakeSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def warnings_seen() -> list[str]:
    """A list to pass as ``warn=``; collects the warnings a function emits."""
    return []


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No plugin filter or config from the developer's own environment."""
    monkeypatch.delenv("JARVIS_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("JARVIS_CONFIG", raising=False)


@pytest.fixture
def moe_registry() -> Registry:
    """The jarvis-moe categories, registered without relying on installation."""
    info = PluginInfo("jarvis-moe", __version__, "moe = jarvis_moe.plugin")
    return load_registry(entry_points=[], extra_plugins=[(plugin, info)])


class RecordingEngine:
    """Stands in for ``jarvis_moe.run``: records calls, returns a fixed result."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def analyse(self, output_dir: Path, *, category: str, scope: str,
                options: Mapping[str, Any]) -> Any:
        self.calls.append({"output_dir": output_dir, "category": category,
                           "scope": scope, "options": dict(options)})
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> Callable[..., RecordingEngine]:
    """Replace ``jarvis_moe.run`` with a :class:`RecordingEngine`.

    The result defaults to the plugin's own result type
    (:class:`jarvis_moe.run.AnalysisResult`), which the host must convert.
    """

    def install(result: Any = run.AnalysisResult(run.Status.OK, "fine")) -> RecordingEngine:
        engine = RecordingEngine(result)
        module = types.ModuleType("jarvis_moe.run")
        module.analyse = engine.analyse  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "jarvis_moe.run", module)
        # ``from jarvis_moe import run`` reads the package attribute first.
        monkeypatch.setattr(jarvis_moe, "run", module, raising=False)
        return engine

    return install


def _run_python(args: list[str], env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ("JARVIS_LOAD_PLUGINS", "JARVIS_CONFIG")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=dict(env), cwd=cwd, timeout=120)


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python <args>`` with this interpreter in a subprocess, capturing text.

    Without ``env``, the subprocess gets this environment minus any
    ``JARVIS_LOAD_PLUGINS`` / ``JARVIS_CONFIG`` of the developer's shell.
    """
    return _run_python


@pytest.fixture
def run_jarvis() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``jarvis`` command as ``python -m jarvis_host.cli``, so
    tests do not depend on PATH."""

    def run(*args: str, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return _run_python(["-m", "jarvis_host.cli", *args], env=env, cwd=cwd)

    return run
