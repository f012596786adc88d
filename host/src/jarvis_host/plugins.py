"""Finding, loading and registering the installed Jarvis plugins.

Plugins are modules named by entry points in the ``jarvis`` group. Each one is
loaded and asked for its categories in isolation: a plugin that fails to
import, implements a hook the host does not define, or raises while
registering is set aside as broken with a warning naming its distribution,
and every other plugin keeps working. Two plugins claiming the same category
name is different: the host cannot tell which one the user meant, so that is
an error for every command.

:func:`load_registry` builds a fresh plugin manager on every call and keeps no
module state: a command loads the plugins once, and tests never see each
other's plugins.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import pluggy

from jarvis_host import PROJECT_NAME, hookspecs, warn_stderr
from jarvis_host.category import Category

ENTRY_POINT_GROUP = PROJECT_NAME
LOAD_PLUGINS_ENV = "JARVIS_LOAD_PLUGINS"


class PluginConflictError(RuntimeError):
    """Two plugins (or one plugin twice) registered the same category name."""


class PluginInfo(NamedTuple):
    """The distribution a plugin module came from."""

    distribution: str
    version: str
    entry_point: str


class BrokenPlugin(NamedTuple):
    """A plugin that was skipped, and why."""

    plugin: PluginInfo
    error: str


@dataclass
class Registry:
    """The outcome of loading plugins: categories by name, and what failed."""

    categories: dict[str, Category] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """Distribution name in its comparable form (PEP 503): ``Jarvis_MoE`` -> ``jarvis-moe``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _plugin_info(entry_point: metadata.EntryPoint) -> PluginInfo:
    dist = getattr(entry_point, "dist", None)
    # Each read of ``dist.name`` or ``dist.version`` parses the METADATA file
    # again (about 0.7 ms): read it once.
    meta = dist.metadata if dist is not None else None
    name = (meta.get("Name") if meta is not None else None) or ""
    version = (meta.get("Version") if meta is not None else None) or ""
    # A distribution without a name in its metadata still needs a label the
    # user can act on; the entry point's target module is the next best thing.
    return PluginInfo(
        distribution=name or entry_point.value.split(":")[0],
        version=version,
        entry_point=f"{entry_point.name} = {entry_point.value}",
    )


def _allowed_distributions(environ: Mapping[str, str]) -> set[str] | None:
    """Names from ``JARVIS_LOAD_PLUGINS``; ``None`` when unset (load all)."""
    raw = environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {normalise_name(part.strip()) for part in raw.split(",") if part.strip()}


def _check_hooks(pm: pluggy.PluginManager) -> None:
    """Reject hook implementations the host has no spec for (usually a typo)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(n for n in vars(pm.hook) if not n.startswith("_")
                                 and getattr(pm.hook, n).has_spec()))
        unknown = sorted(n for n in vars(pm.hook) if not n.startswith("_")
                         and not getattr(pm.hook, n).has_spec())
        raise pluggy.PluginValidationError(
            exc.plugin,
            f"unknown hook {', '.join(unknown)} (misspelt? the host defines: {known})",
        ) from None


def _collect_categories(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> list[Category]:
    """Call one plugin's ``jarvis_register_categories`` and return what it registered."""
    registered: list[Category] = []

    def register(name: str, *, description: str, inputs: Iterable[str], outputs: Iterable[str],
                 analyse: Any, enabled: bool = True, options: Mapping[str, Any] | None = None) -> None:
        for label, paths in (("inputs", inputs), ("outputs", outputs)):
            if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
                raise TypeError(f"category {name!r}: {label} must be a list of paths, got {paths!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"category {name!r}: enabled must be true or false, got {enabled!r}")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"category {name!r}: options must be a table, got {type(options).__name__}")
        category = Category(name=name, description=description, inputs=tuple(inputs), outputs=tuple(outputs),
                            analyse=analyse, enabled_by_default=enabled, default_options=dict(options or {}))
        if not category.name or not isinstance(category.name, str) or category.name != category.name.strip():
            raise ValueError(f"invalid category name {category.name!r}")
        if not callable(category.analyse):
            raise TypeError(f"category {category.name!r}: analyse is not callable")
        registered.append(dataclasses.replace(category, plugin=info.distribution, version=info.version))

    arguments: dict[str, Any] = {"register": register}
    # Calling each plugin's implementation on its own (instead of the hook for
    # all plugins at once) is what lets one failing plugin be set aside.
    for impl in pm.hook.jarvis_register_categories.get_hookimpls():
        if impl.plugin is plugin:
            impl.function(*(arguments[name] for name in impl.argnames))
    return registered


def load_registry(
    *,
    strict: bool = False,
    environ: Mapping[str, str] | None = None,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    extra_plugins: Iterable[tuple[ModuleType, PluginInfo]] = (),
    warn: Callable[[str], None] = warn_stderr,
) -> Registry:
    """Load the installed plugins into a fresh plugin manager.

    :param strict: re-raise the first plugin failure instead of setting the
        plugin aside (for tests).
    :param environ: environment holding ``JARVIS_LOAD_PLUGINS`` (default:
        ``os.environ``). Unset loads every plugin; a comma-separated list of
        distribution names loads only those; set but empty loads none.
    :param entry_points: entry points to load instead of the ``jarvis`` group
        of the installed distributions.
    :param extra_plugins: modules to register in addition, with the
        distribution they stand for; skipped when an entry point already
        loaded the same module. ``JARVIS_LOAD_PLUGINS`` does not apply to them.
    :param warn: receives one message per broken plugin (default: stderr).
    :return: the categories by name, the loaded plugins and the broken ones.
    :raises PluginConflictError: when two plugins register the same category.
    """
    env = os.environ if environ is None else environ
    allowed = _allowed_distributions(env)
    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    owners: dict[str, list[PluginInfo]] = {}
    seen: set[str] = set()

    def add(load: Callable[[], object], info: PluginInfo) -> None:
        _add_plugin(pm, registry, owners, load, info, strict=strict, warn=warn)

    for entry_point in entry_points:
        info = _plugin_info(entry_point)
        seen.add(normalise_name(info.distribution))
        if allowed is not None and normalise_name(info.distribution) not in allowed:
            continue
        add(entry_point.load, info)
    for module, info in extra_plugins:
        if not pm.is_registered(module):
            add(lambda module=module: module, info)

    if allowed:
        for name in sorted(allowed - seen):
            warn(f"{LOAD_PLUGINS_ENV} names {name!r}, but no installed plugin has that distribution name")

    _check_conflicts(owners)

    registry.categories = dict(sorted(registry.categories.items()))
    registry.plugins.sort(key=lambda i: normalise_name(i.distribution))
    registry.broken.sort(key=lambda b: normalise_name(b.plugin.distribution))
    return registry


def _add_plugin(pm: pluggy.PluginManager, registry: Registry, owners: dict[str, list[PluginInfo]],
                load: Callable[[], object], info: PluginInfo, *, strict: bool,
                warn: Callable[[str], None]) -> None:
    """Load one plugin and record its categories, or set it aside as broken with a warning."""
    plugin: object = None
    registered = False
    try:
        plugin = load()
        pm.register(plugin, name=f"{info.distribution}:{info.entry_point}")
        registered = True
        _check_hooks(pm)
        categories = _collect_categories(pm, plugin, info)
    except Exception as exc:
        # Unregister only what this call registered: pm.register also
        # fails when another entry point already loaded the same module.
        if registered:
            pm.unregister(plugin)
        if strict:
            raise
        reason = f"{type(exc).__name__}: {exc}"
        registry.broken.append(BrokenPlugin(info, reason))
        label = f"{info.distribution} {info.version}".strip()
        warn(f"plugin {label!r} ({info.entry_point}) is broken and was skipped: {reason}")
        return
    registry.plugins.append(info)
    for category in categories:
        owners.setdefault(category.name, []).append(info)
        registry.categories.setdefault(category.name, category)


def _check_conflicts(owners: Mapping[str, list[PluginInfo]]) -> None:
    """Refuse a category that more than one plugin registers.

    :raises PluginConflictError: naming each such category and its plugins.
    """
    clashes = {name: infos for name, infos in owners.items() if len(infos) > 1}
    if clashes:
        lines = [
            f"category {name!r} is registered by more than one plugin: "
            + " and ".join(repr(f"{i.distribution} {i.version}".strip()) for i in infos)
            for name, infos in sorted(clashes.items())
        ]
        hint = f"uninstall one of them, or choose the plugins to load with {LOAD_PLUGINS_ENV}"
        raise PluginConflictError("; ".join(lines) + f" ({hint})")
