"""Plugin discovery and loading: entry points, broken plugins, name clashes,
JARVIS_LOAD_PLUGINS, registration by keyword arguments with either hook marker,
and the jarvis-moe plugin itself."""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata
from pathlib import Path

import pluggy
import pytest

from jarvis_moe import plugin, run
from jarvis_host import hookspecs
from jarvis_host.category import Status
from jarvis_host.config import resolve_settings
from jarvis_host.plugins import PluginConflictError, load_registry, normalise_name
from jarvis_host.runner import run_category, run_categories
from jarvis_moe.manifest import load_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]

IMPORT_ERROR_PLUGIN = """
import a_module_that_is_not_installed
"""

REGISTER_ERROR_PLUGIN = """
from jarvis_host import hookimpl

@hookimpl
def jarvis_register_categories(register):
    register(name="half_done", description="", inputs=(), outputs=(), analyse=lambda *a, **k: None)
    raise RuntimeError("manifest went missing")
"""

# The registration call of the old host API: one positional object.
WRONG_OBJECT_PLUGIN = """
from jarvis_host import hookimpl

@hookimpl
def jarvis_register_categories(register):
    register({"name": "not_a_category"})
"""

NOT_CALLABLE_PLUGIN = """
from jarvis_host import hookimpl

@hookimpl
def jarvis_register_categories(register):
    register(name="lazy_cat", description="", inputs=(), outputs=(), analyse="module:function")
"""

BAD_NAME_PLUGIN = """
from jarvis_host import hookimpl

@hookimpl
def jarvis_register_categories(register):
    register(name=" spaced ", description="", inputs=(), outputs=(), analyse=print)
"""

MISSPELT_HOOK_PLUGIN = """
from jarvis_host import hookimpl

@hookimpl
def jarvis_register_category(register):
    pass
"""


def only(*names: str) -> dict[str, str]:
    return {"JARVIS_LOAD_PLUGINS": ",".join(names)}


@pytest.mark.parametrize("marker", ["host", "own"])
def test_installed_distribution_is_discovered_through_its_entry_point(fake_site, good_plugin, marker):
    fake_site.add("fake-good", good_plugin("fake_cat", marker=marker), version="2.3")

    registry = load_registry(environ=only("fake-good"))

    category = registry.categories["fake_cat"]
    assert (category.plugin, category.version) == ("fake-good", "2.3")
    assert [p.distribution for p in registry.plugins] == ["fake-good"]
    assert registry.broken == []


def test_a_distribution_whose_metadata_has_no_name_is_named_by_its_module(fake_site, good_plugin):
    module = fake_site.add("fake-anon", good_plugin("anon_cat"), version="0.4")
    metadata_file = next(fake_site.root.glob("fake_anon-*.dist-info")) / "METADATA"
    metadata_file.write_text("Metadata-Version: 2.1\nVersion: 0.4\n", encoding="utf-8")

    registry = load_registry(entry_points=[ep for ep in metadata.entry_points(group="jarvis") if ep.value == module])

    assert [(p.distribution, p.version) for p in registry.plugins] == [(module, "0.4")]
    assert registry.categories["anon_cat"].plugin == module


def test_plugin_that_fails_to_import_is_reported_by_distribution_and_others_still_load(
        fake_site, good_plugin, warnings_seen):
    fake_site.add("fake-good", good_plugin("fake_cat"))
    fake_site.add("fake-broken", IMPORT_ERROR_PLUGIN, version="0.9")

    registry = load_registry(environ=only("fake-good", "fake-broken"), warn=warnings_seen.append)

    assert list(registry.categories) == ["fake_cat"]
    assert [b.plugin.distribution for b in registry.broken] == ["fake-broken"]
    assert "ModuleNotFoundError" in registry.broken[0].error
    assert len(warnings_seen) == 1
    assert "fake-broken 0.9" in warnings_seen[0]
    assert "a_module_that_is_not_installed" in warnings_seen[0]


def test_plugin_raising_while_registering_is_set_aside_with_nothing_registered(
        fake_site, good_plugin, warnings_seen):
    fake_site.add("fake-good", good_plugin("fake_cat"))
    fake_site.add("fake-raises", REGISTER_ERROR_PLUGIN)

    registry = load_registry(environ=only("fake-good", "fake-raises"), warn=warnings_seen.append)

    # What the plugin registered before failing is discarded, not half-used.
    assert list(registry.categories) == ["fake_cat"]
    assert registry.broken[0].plugin.distribution == "fake-raises"
    assert "manifest went missing" in registry.broken[0].error
    assert "fake-raises" in warnings_seen[0]


def test_registering_without_the_keyword_arguments_breaks_only_that_plugin(
        fake_site, good_plugin, warnings_seen):
    fake_site.add("fake-good", good_plugin("fake_cat"))
    fake_site.add("fake-wrong", WRONG_OBJECT_PLUGIN)

    registry = load_registry(environ=only("fake-good", "fake-wrong"), warn=warnings_seen.append)

    assert list(registry.categories) == ["fake_cat"]
    assert [b.plugin.distribution for b in registry.broken] == ["fake-wrong"]
    assert registry.broken[0].error.startswith("TypeError: ")
    assert "description" in registry.broken[0].error and "analyse" in registry.broken[0].error
    assert len(warnings_seen) == 1 and "fake-wrong" in warnings_seen[0]


@pytest.mark.parametrize(("source", "error"), [
    (NOT_CALLABLE_PLUGIN, "TypeError: category 'lazy_cat': analyse is not callable"),
    (BAD_NAME_PLUGIN, "ValueError: invalid category name ' spaced '"),
])
def test_registering_an_invalid_category_breaks_only_that_plugin(fake_site, warnings_seen, source, error):
    fake_site.add("fake-invalid", source)

    registry = load_registry(environ=only("fake-invalid"), warn=warnings_seen.append)

    assert registry.categories == {}
    assert registry.broken[0].error == error
    assert len(warnings_seen) == 1


def test_plugin_module_importing_nothing_from_the_host_registers_and_runs(fake_site, good_plugin, output_dir):
    module = fake_site.add("fake-own", good_plugin("own_cat", marker="own", enabled=False,
                                                   options={"limit": 3, "label": "x"}))
    source = (fake_site.root / f"{module}.py").read_text(encoding="utf-8")
    assert "jarvis_moe" not in source

    registry = load_registry(environ=only("fake-own"), strict=True)

    category = registry.categories["own_cat"]
    assert (category.plugin, category.description) == ("fake-own", "fake own_cat")
    assert (category.inputs, category.outputs) == (("in.csv",), ("out.md",))
    assert category.enabled_by_default is False
    assert dict(category.default_options) == {"limit": 3, "label": "x"}
    settings = resolve_settings(registry.categories, None)
    [outcome] = run_categories(output_dir, registry.categories, settings, run_disabled=True)
    assert outcome.result.status is Status.OK
    assert outcome.summary() == "own_cat: OK - scope=standalone options=[('label', 'x'), ('limit', 3)]"


def test_both_markers_are_the_same_hook_for_the_host(fake_site, good_plugin):
    fake_site.add("fake-host", good_plugin("host_cat", marker="host"))
    fake_site.add("fake-own", good_plugin("own_cat", marker="own"))

    registry = load_registry(environ=only("fake-host", "fake-own"), strict=True)

    assert {name: c.plugin for name, c in registry.categories.items()} == {
        "host_cat": "fake-host", "own_cat": "fake-own"}


def test_strict_mode_reraises_the_plugin_failure(fake_site):
    fake_site.add("fake-raises", REGISTER_ERROR_PLUGIN)

    with pytest.raises(RuntimeError, match="manifest went missing"):
        load_registry(environ=only("fake-raises"), strict=True)


def test_misspelt_hook_implementation_is_an_error(fake_site, warnings_seen):
    fake_site.add("fake-typo", MISSPELT_HOOK_PLUGIN)

    registry = load_registry(environ=only("fake-typo"), warn=warnings_seen.append)

    assert registry.broken[0].plugin.distribution == "fake-typo"
    assert "unknown hook jarvis_register_category" in registry.broken[0].error
    assert "jarvis_register_categories" in registry.broken[0].error
    with pytest.raises(pluggy.PluginValidationError, match="jarvis_register_category "):
        load_registry(environ=only("fake-typo"), strict=True)


def test_same_category_from_two_plugins_is_an_error_naming_both(fake_site, good_plugin):
    fake_site.add("fake-first", good_plugin("shared_cat"), version="1.0")
    fake_site.add("fake-second", good_plugin("shared_cat", "own_cat"), version="4.2")

    with pytest.raises(PluginConflictError) as caught:
        load_registry(environ=only("fake-first", "fake-second"))

    message = str(caught.value)
    assert "'shared_cat'" in message
    assert "fake-first 1.0" in message and "fake-second 4.2" in message
    assert "JARVIS_LOAD_PLUGINS" in message


def test_same_category_registered_twice_by_one_plugin_is_an_error(fake_site, good_plugin):
    fake_site.add("fake-twice", good_plugin("dup_cat", "dup_cat"), version="1.1")

    with pytest.raises(PluginConflictError, match="'dup_cat' is registered by more than one plugin"):
        load_registry(environ=only("fake-twice"))


def test_load_plugins_env_loads_only_the_named_distributions(fake_site, good_plugin):
    fake_site.add("fake-one", good_plugin("one_cat"))
    fake_site.add("fake-two", good_plugin("two_cat"))

    # Distribution names compare in normalised form, as pip compares them.
    registry = load_registry(environ=only(" Fake_One "))

    assert list(registry.categories) == ["one_cat"]


def test_empty_load_plugins_env_loads_no_plugin(fake_site, good_plugin):
    fake_site.add("fake-one", good_plugin("one_cat"))

    registry = load_registry(environ={"JARVIS_LOAD_PLUGINS": ""})

    assert registry.categories == {}
    assert registry.plugins == []


def test_unset_load_plugins_env_loads_every_installed_plugin(fake_site, good_plugin):
    fake_site.add("fake-one", good_plugin("one_cat"))
    fake_site.add("fake-two", good_plugin("two_cat"))

    registry = load_registry(environ={})

    assert {"one_cat", "two_cat"} <= set(registry.categories)


def test_load_plugins_env_naming_a_missing_distribution_warns(fake_site, good_plugin, warnings_seen):
    fake_site.add("fake-one", good_plugin("one_cat"))

    load_registry(environ=only("fake-one", "fake-none"), warn=warnings_seen.append)

    assert warnings_seen == [
        "JARVIS_LOAD_PLUGINS names 'fake-none', but no installed plugin has that distribution name"
    ]


def test_categories_are_sorted_by_name(fake_site, good_plugin):
    fake_site.add("fake-one", good_plugin("zeta_cat", "alpha_cat"))

    registry = load_registry(environ=only("fake-one"))

    assert list(registry.categories) == ["alpha_cat", "zeta_cat"]


def test_normalise_name_follows_pep_503():
    assert normalise_name("Jarvis__MoE.plugin") == "jarvis-moe-plugin"


def test_jarvis_moe_registers_both_categories_from_its_manifest():
    registered: list[dict] = []

    # The host calls register with keyword arguments only.
    plugin.jarvis_register_categories(lambda **kwargs: registered.append(kwargs))

    manifest = load_manifest()
    raw = tomllib.loads((REPO_ROOT / "plugin.toml").read_text(encoding="utf-8"))
    by_name = {c["name"]: c for c in registered}
    assert sorted(by_name) == sorted(raw["categories"]) == ["moe_fused", "moe_unfused"]
    for name, kwargs in by_name.items():
        spec = manifest.categories[name]
        assert set(kwargs) == {"name", "description", "inputs", "outputs", "analyse", "enabled", "options"}
        assert (kwargs["description"], kwargs["enabled"]) == (spec.description, spec.enabled)
        assert list(kwargs["inputs"]) == raw["categories"][name]["inputs"]
        assert list(kwargs["outputs"]) == raw["categories"][name]["outputs"]
        assert kwargs["outputs"][0] == f"category_findings/{name}_findings.md"
        assert kwargs["options"] == raw["options"]
        assert isinstance(kwargs["analyse"], plugin.LazyAnalyser) and kwargs["analyse"].category == name
    # The options added with the replay and lever findings come from plugin.toml too.
    assert {"routing_noise_pct", "sibling_gap_ratio", "lever_min_pct", "replay_below_pct"} <= set(
        by_name["moe_fused"]["options"])


def test_host_builds_the_jarvis_moe_categories_from_what_the_plugin_registers(moe_registry):
    manifest = load_manifest()

    for name, category in moe_registry.categories.items():
        spec = manifest.categories[name]
        assert (category.inputs, category.outputs) == (spec.inputs, spec.outputs)
        assert category.enabled_by_default is spec.enabled
        assert dict(category.default_options) == dict(spec.options)
        assert category.plugin == "jarvis-moe"


def test_jarvis_moe_plugin_imports_nothing_from_the_host(run_python):
    code = ("import sys, jarvis_moe.plugin as p; p.jarvis_register_categories(lambda **kw: None); "
            "print(sorted(m for m in sys.modules if m.startswith('jarvis_host')))")

    completed = run_python(["-c", code])

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_installed_jarvis_moe_is_found_through_its_entry_point(clean_env):
    # Needs the project installed (pip install -e .), as every user has it.
    registry = load_registry(environ=only("jarvis-moe"), strict=True)

    assert sorted(registry.categories) == ["moe_fused", "moe_unfused"]
    assert {(c.plugin, c.version) for c in registry.categories.values()} == {
        ("jarvis-moe", metadata.version("jarvis-moe"))
    }


def test_analyser_imports_the_engine_only_when_called(fake_engine):
    engine = fake_engine(run.AnalysisResult(run.Status.NO_DATA, "nothing"))
    analyse = plugin.LazyAnalyser("moe_unfused")

    result = analyse(Path("/data/out"), scope="comparative", options={"routing_noise_pct": 12.5})

    assert result == run.AnalysisResult(run.Status.NO_DATA, "nothing")
    assert engine.calls == [{"output_dir": Path("/data/out"), "category": "moe_unfused",
                             "scope": "comparative", "options": {"routing_noise_pct": 12.5}}]


def test_host_reads_the_plugin_result_type(fake_engine, moe_registry, tmp_path):
    fake_engine(run.AnalysisResult(run.Status.OK, "2 findings", (tmp_path / "a.md",), ("odd row",)))

    result = run_category(moe_registry.categories["moe_fused"], tmp_path, "standalone", {})

    assert result.status is Status.OK
    assert (result.message, result.outputs, result.warnings) == ("2 findings", (tmp_path / "a.md",), ("odd row",))
    assert result.exit_code == 0


def test_engine_exception_becomes_an_internal_error_in_the_host(fake_engine, moe_registry, capsys, monkeypatch,
                                                               tmp_path):
    monkeypatch.delenv("JARVIS_DEBUG", raising=False)
    fake_engine(ZeroDivisionError("peak is zero"))

    result = run_category(moe_registry.categories["moe_fused"], tmp_path, "standalone", {})

    assert result.status is Status.ERROR and result.internal_error and result.exit_code == 1
    assert "ZeroDivisionError: peak is zero" in result.message
    assert capsys.readouterr().err == ""


def test_jarvis_debug_prints_the_traceback_of_an_engine_exception(fake_engine, moe_registry, capsys,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("JARVIS_DEBUG", "1")
    fake_engine(ZeroDivisionError("peak is zero"))

    run_category(moe_registry.categories["moe_fused"], tmp_path, "standalone", {})

    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: peak is zero" in err


def test_plugin_module_imports_no_analysis_engine(run_python):
    code = ("import sys, jarvis_moe.plugin as p; p.jarvis_register_categories(lambda **kw: None); "
            "print(sorted(m for m in ('polars', 'pydantic', 'jarvis_moe.run') if m in sys.modules))")

    completed = run_python(["-c", code])

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_every_hook_is_documented_in_the_host_protocol():
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("jarvis_")]
    protocol = (REPO_ROOT / "docs" / "host-protocol.md").read_text(encoding="utf-8")

    assert hooks == ["jarvis_register_categories"]
    assert all(f"`{hook}(" in protocol for hook in hooks)



def test_the_host_is_a_distribution_of_its_own_that_owns_the_command():
    # Another plugin can depend on the host alone: it needs pluggy, not jarvis-moe.
    assert metadata.requires("jarvis-host") == ["pluggy>=1.5"]
    scripts = {dist: {ep.name for ep in metadata.distribution(dist).entry_points if ep.group == "console_scripts"}
               for dist in ("jarvis-host", "jarvis-moe")}
    assert scripts == {"jarvis-host": {"jarvis"}, "jarvis-moe": set()}
    # jarvis-moe needs the host only for its drop-in and its tests (extras).
    moe_requires = metadata.requires("jarvis-moe") or []
    assert [r.replace("'", '"') for r in moe_requires if r.startswith("jarvis-host")] == [
        'jarvis-host>=0.1; extra == "host"', 'jarvis-host>=0.1; extra == "test"']
