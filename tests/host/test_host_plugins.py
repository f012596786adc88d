"""Plugin discovery and loading: entry points, broken plugins, name clashes,
JARVIS_LOAD_PLUGINS, and the jarvis-moe plugin itself."""

from __future__ import annotations

import inspect
from importlib import metadata
from pathlib import Path

import pluggy
import pytest

from jarvis_moe import plugin
from jarvis_moe.host import hookspecs
from jarvis_moe.host.category import Category, CategoryResult, Status
from jarvis_moe.host.plugins import PluginConflictError, load_registry, normalise_name

REPO_ROOT = Path(__file__).resolve().parents[2]

IMPORT_ERROR_PLUGIN = """
import a_module_that_is_not_installed
"""

REGISTER_ERROR_PLUGIN = """
from jarvis_moe.host import hookimpl
from jarvis_moe.host.category import Category

@hookimpl
def jarvis_register_categories(register):
    register(Category(name="half_done", description="", inputs=(), outputs=(),
                      analyse=lambda *a, **k: None))
    raise RuntimeError("manifest went missing")
"""

WRONG_OBJECT_PLUGIN = """
from jarvis_moe.host import hookimpl

@hookimpl
def jarvis_register_categories(register):
    register({"name": "not_a_category"})
"""

MISSPELT_HOOK_PLUGIN = """
from jarvis_moe.host import hookimpl

@hookimpl
def jarvis_register_category(register):
    pass
"""


def only(*names: str) -> dict[str, str]:
    return {"JARVIS_LOAD_PLUGINS": ",".join(names)}


def test_installed_distribution_is_discovered_through_its_entry_point(fake_site, good_plugin):
    fake_site.add("fake-good", good_plugin("fake_cat"), version="2.3")

    registry = load_registry(environ=only("fake-good"))

    category = registry.categories["fake_cat"]
    assert (category.plugin, category.version) == ("fake-good", "2.3")
    assert [p.distribution for p in registry.plugins] == ["fake-good"]
    assert registry.broken == []


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


def test_registering_something_that_is_not_a_category_breaks_only_that_plugin(fake_site, warnings_seen):
    fake_site.add("fake-wrong", WRONG_OBJECT_PLUGIN)

    registry = load_registry(environ=only("fake-wrong"), warn=warnings_seen.append)

    assert registry.categories == {}
    assert "expects a Category, got dict" in registry.broken[0].error


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
    registered: list[Category] = []

    plugin.jarvis_register_categories(registered.append)

    by_name = {c.name: c for c in registered}
    assert sorted(by_name) == ["moe_fused", "moe_unfused"]
    fused = by_name["moe_fused"]
    assert fused.enabled_by_default is True
    assert fused.outputs[0] == "category_findings/moe_fused_findings.md"
    assert "category_data/moe_fused_ops.csv" in fused.inputs
    assert fused.default_options["anomaly_pct"] == 110.0
    assert fused.default_options["decode_max_tokens"] == 256


def test_default_options_are_a_fresh_copy_of_the_manifest_defaults():
    options = plugin.default_options("moe_unfused")
    options["skew_cov"] = 9.0

    assert plugin.default_options("moe_unfused")["skew_cov"] == 0.25
    with pytest.raises(KeyError, match="moe_fusd"):
        plugin.default_options("moe_fusd")


def test_installed_jarvis_moe_is_found_through_its_entry_point(clean_env):
    # Needs the project installed (pip install -e .), as every user has it.
    registry = load_registry(environ=only("jarvis-moe"), strict=True)

    assert sorted(registry.categories) == ["moe_fused", "moe_unfused"]
    assert {(c.plugin, c.version) for c in registry.categories.values()} == {
        ("jarvis-moe", metadata.version("jarvis-moe"))
    }


def test_analyser_imports_the_engine_only_when_called(fake_engine):
    engine = fake_engine(CategoryResult(Status.NO_DATA, "nothing"))
    analyse = plugin.LazyAnalyser("moe_unfused")

    result = analyse(Path("/data/out"), scope="comparative", options={"skew_cov": 0.5})

    assert result == CategoryResult(Status.NO_DATA, "nothing")
    assert engine.calls == [{"output_dir": Path("/data/out"), "category": "moe_unfused",
                             "scope": "comparative", "options": {"skew_cov": 0.5}}]


def test_analyser_turns_an_engine_exception_into_an_internal_error(fake_engine, capsys, monkeypatch):
    monkeypatch.delenv("JARVIS_DEBUG", raising=False)
    fake_engine(ZeroDivisionError("peak is zero"))

    result = plugin.LazyAnalyser("moe_fused")(Path("."), scope="standalone", options={})

    assert result.status is Status.ERROR and result.internal_error
    assert "ZeroDivisionError: peak is zero" in result.message
    assert capsys.readouterr().err == ""


def test_jarvis_debug_prints_the_traceback_of_an_engine_exception(fake_engine, capsys, monkeypatch):
    monkeypatch.setenv("JARVIS_DEBUG", "1")
    fake_engine(ZeroDivisionError("peak is zero"))

    plugin.LazyAnalyser("moe_fused")(Path("."), scope="standalone", options={})

    assert "Traceback" in capsys.readouterr().err


def test_plugin_module_imports_no_analysis_engine(run_python):
    code = ("import sys, jarvis_moe.plugin as p; p.jarvis_register_categories(lambda c: None); "
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

