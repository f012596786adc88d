"""The ``jarvis`` command end to end, in a subprocess as a user runs it.

These tests need the project installed (``pip install -e .``): the
jarvis-moe categories are found through its ``jarvis`` entry point.
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata

import pytest

from jarvis_host import __version__
from jarvis_host.cli import describe_categories, format_listing, main
from jarvis_host.config import DEFAULT_SOURCE, resolve_settings
from jarvis_host.plugins import load_registry
from jarvis_moe.manifest import load_manifest

from .helpers import tree

# The host labels a plugin with the version of its installed distribution.
INSTALLED_VERSION = metadata.version("jarvis-moe")

LISTING_KEYS = {"name", "plugin", "version", "enabled", "enabled_source", "description",
                "inputs", "output", "outputs", "options"}

BROKEN_PLUGIN = "raise ImportError('needs a newer host')\n"

# The first line of ``jarvis run`` when no config is in use (the tests run in
# an empty temporary directory, without --config or $JARVIS_CONFIG).
NO_CONFIG = "config: none (no --config, $JARVIS_CONFIG or ./jarvis.toml): plugin defaults\n"


def test_version_flag_prints_the_hosts_version(run_jarvis):
    completed = run_jarvis("--version")

    assert completed.returncode == 0
    assert completed.stdout.strip() == f"jarvis {__version__}"
    # The host's own distribution, not the plugin's.
    assert __version__ == metadata.version("jarvis-host")


@pytest.mark.parametrize("command", [[], ["categories"], ["run"]])
def test_every_command_has_help(run_jarvis, command):
    completed = run_jarvis(*command, "--help")

    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: jarvis")


def test_bare_command_prints_help_and_succeeds(run_jarvis):
    completed = run_jarvis()

    assert completed.returncode == 0
    assert completed.stdout == run_jarvis("--help").stdout
    assert completed.stderr == ""


def test_categories_json_lists_both_moe_categories(run_jarvis, tmp_path):
    completed = run_jarvis("categories", "--json", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    listing = json.loads(completed.stdout)
    moe = [entry for entry in listing if entry["plugin"] == "jarvis-moe"]
    manifest = load_manifest()
    assert [entry["name"] for entry in moe] == sorted(manifest.categories) == ["moe_fused", "moe_unfused"]
    for entry in moe:
        spec = manifest.categories[entry["name"]]
        assert set(entry) == LISTING_KEYS
        assert entry["version"] == INSTALLED_VERSION
        assert entry["enabled"] is spec.enabled is True
        assert entry["enabled_source"] == DEFAULT_SOURCE
        assert entry["description"] == spec.description
        assert entry["inputs"] == list(spec.inputs)
        assert entry["outputs"] == list(spec.outputs)
        assert entry["output"] == spec.outputs[0] == f"category_findings/{entry['name']}_findings.md"
        assert entry["options"] == dict(spec.options)


def test_categories_text_shows_plugin_state_and_files(run_jarvis, tmp_path):
    completed = run_jarvis("categories", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert f"moe_fused  (jarvis-moe {INSTALLED_VERSION})  enabled, {DEFAULT_SOURCE}" in completed.stdout
    unfused = load_manifest().categories["moe_unfused"]
    assert f"    outputs: {', '.join(unfused.outputs)}\n" in completed.stdout
    assert f"    inputs:  {', '.join(unfused.inputs)}\n" in completed.stdout
    assert completed.stdout.index("moe_fused") < completed.stdout.index("moe_unfused")


def test_categories_shows_state_from_the_config_in_the_working_directory(run_jarvis, tmp_path):
    (tmp_path / "jarvis.toml").write_text("[categories.moe_unfused]\nenabled = false\n", encoding="utf-8")

    completed = run_jarvis("categories", "--json", cwd=tmp_path)

    entry = next(e for e in json.loads(completed.stdout) if e["name"] == "moe_unfused")
    assert entry["enabled"] is False
    assert entry["enabled_source"] == f"config: {tmp_path / 'jarvis.toml'}"


def test_listing_imports_neither_polars_nor_pydantic(run_python, tmp_path):
    completed = run_python(["-X", "importtime", "-m", "jarvis_host.cli", "categories", "--json"],
                           cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines()
                if line.startswith("import time:")}
    # The listing holds the plugin's categories, so the plugin was loaded.
    assert "moe_fused" in {entry["name"] for entry in json.loads(completed.stdout)}
    assert not {name for name in imported if name.split(".")[0] in ("polars", "pydantic")}
    assert "jarvis_moe.run" not in imported


def test_broken_plugin_does_not_break_listing(run_jarvis, fake_site, tmp_path):
    fake_site.add("fake-broken", BROKEN_PLUGIN, version="0.3")

    text = run_jarvis("categories", env=fake_site.env(), cwd=tmp_path)
    as_json = run_jarvis("categories", "--json", env=fake_site.env(), cwd=tmp_path)

    assert text.returncode == 0 and as_json.returncode == 0
    assert "moe_fused  (jarvis-moe" in text.stdout
    assert re.search(r"Broken plugins \(skipped\):\n +fake-broken 0\.3 .*needs a newer host", text.stdout)
    assert {e["name"] for e in json.loads(as_json.stdout)} >= {"moe_fused", "moe_unfused"}
    for completed in (text, as_json):
        assert "plugin 'fake-broken 0.3'" in completed.stderr
        assert "Traceback" not in completed.stderr


def test_two_plugins_claiming_a_category_fail_naming_both(run_jarvis, fake_site, good_plugin, tmp_path):
    fake_site.add("fake-rival", good_plugin("moe_fused"), version="9.9")

    completed = run_jarvis("categories", env=fake_site.env(), cwd=tmp_path)

    assert completed.returncode == 4
    assert "'moe_fused' is registered by more than one plugin" in completed.stderr
    assert f"'jarvis-moe {INSTALLED_VERSION}'" in completed.stderr and "'fake-rival 9.9'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_load_plugins_env_hides_unlisted_plugins_from_the_listing(run_jarvis, fake_site, good_plugin, tmp_path):
    fake_site.add("fake-extra", good_plugin("extra_cat"))

    everything = run_jarvis("categories", "--json", env=fake_site.env(), cwd=tmp_path)
    restricted = run_jarvis("categories", "--json", cwd=tmp_path,
                            env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-extra"))
    nothing = run_jarvis("categories", "--json", cwd=tmp_path, env=fake_site.env(JARVIS_LOAD_PLUGINS=""))

    assert {"extra_cat", "moe_fused"} <= {e["name"] for e in json.loads(everything.stdout)}
    assert [e["name"] for e in json.loads(restricted.stdout)] == ["extra_cat"]
    assert json.loads(nothing.stdout) == []


def test_config_error_is_a_usage_error_naming_file_and_key(run_jarvis, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[categories.moe_fused.options]\nrouting_noise_pct = 'high'\n", encoding="utf-8")

    completed = run_jarvis("categories", "--config", str(config), cwd=tmp_path)

    default = load_manifest().categories["moe_fused"].options["routing_noise_pct"]
    assert completed.returncode == 4
    assert completed.stderr.strip() == (
        f"jarvis: error: {config}: categories.moe_fused.options.routing_noise_pct: "
        f"expected a number like the default {default}, got 'high'")


def test_config_from_environment_variable_is_read(run_jarvis, tmp_path):
    env = {"JARVIS_CONFIG": str(tmp_path / "missing.toml")}
    completed = run_jarvis("categories", cwd=tmp_path, env={**os.environ, **env})

    assert completed.returncode == 4
    assert "missing.toml: file not found" in completed.stderr


def test_run_on_a_dense_model_reports_no_data_for_both_categories(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")

    completed = run_jarvis("run", str(output_dir), "--category", "moe_fused",
                           "--category", "moe_unfused", cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines()[1:] if not line.startswith("    wrote ")]
    assert [line.split(" ")[:2] for line in lines] == [["moe_fused:", "NO_DATA"], ["moe_unfused:", "NO_DATA"]]
    findings = (output_dir / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "No MoE operations detected in this trace." in findings


def test_run_skips_a_category_disabled_in_the_config(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")
    config = tmp_path / "jarvis.toml"
    config.write_text("[categories.moe_fused]\nenabled = false\n", encoding="utf-8")

    completed = run_jarvis("run", str(output_dir), "--config", str(config), cwd=tmp_path,
                           env={**os.environ, "JARVIS_LOAD_PLUGINS": "jarvis-moe"})

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[:2] == [f"config: {config} (--config)",
                                                 f"moe_fused: skipped (disabled by config: {config})"]
    assert not (output_dir / "category_findings" / "moe_fused_findings.md").exists()


def test_run_runs_a_category_the_config_disables_when_named_and_says_so(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")
    config = tmp_path / "jarvis.toml"
    config.write_text("[categories.moe_fused]\nenabled = false\n", encoding="utf-8")

    completed = run_jarvis("run", str(output_dir), "--category", "moe_fused", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[:2] == [f"config: {config} (./jarvis.toml)",
                                                 "moe_fused: NO_DATA - no MoE operations in this trace"]
    assert completed.stderr == (f"jarvis: note: moe_fused: disabled by config: {config}, "
                                "run because it was named\n")
    assert (output_dir / "category_findings" / "moe_fused_findings.md").is_file()


def test_run_on_a_missing_directory_is_a_usage_error_without_traceback(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path / "nope"), cwd=tmp_path)

    assert completed.returncode == 4
    assert "does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_run_on_a_folder_that_is_not_an_output_directory_is_a_usage_error(run_jarvis, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"")

    completed = run_jarvis("run", str(folder), cwd=tmp_path)

    assert completed.returncode == 4
    assert completed.stdout == ""
    assert completed.stderr.strip() == (
        f"jarvis: error: {str(folder)!r} has neither category_data/ nor metadata/: it is not an "
        "analysis output directory of the pipeline (check the path)")
    assert tree(folder) == ["cat.jpg"]


def test_run_with_an_unknown_category_is_a_usage_error_listing_known_ones(run_jarvis, output_dir, tmp_path):
    completed = run_jarvis("run", str(output_dir), "--category", "moe_fuzed", cwd=tmp_path)

    assert completed.returncode == 4
    assert "unknown category 'moe_fuzed'" in completed.stderr
    assert "moe_fused" in completed.stderr and "moe_unfused" in completed.stderr


def test_run_rejects_an_unknown_scope(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path), "--comparison-scope", "both", cwd=tmp_path)

    assert completed.returncode == 4
    assert "invalid choice: 'both'" in completed.stderr


def test_listing_function_and_command_agree(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JARVIS_CONFIG", raising=False)
    monkeypatch.setenv("JARVIS_LOAD_PLUGINS", "jarvis-moe")
    registry = load_registry(strict=True)
    listing = describe_categories(registry, resolve_settings(registry.categories, None))

    assert main(["categories", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing
    assert format_listing(listing, registry).count(f"enabled, {DEFAULT_SOURCE}") == 2


def test_listing_says_so_when_no_plugin_is_loaded(run_jarvis, tmp_path):
    completed = run_jarvis("categories", cwd=tmp_path, env={**os.environ, "JARVIS_LOAD_PLUGINS": ""})

    assert completed.returncode == 0
    assert "No categories registered" in completed.stdout


def test_run_without_categories_prints_only_the_config_and_succeeds(run_jarvis, output_dir, tmp_path):
    completed = run_jarvis("run", str(output_dir), cwd=tmp_path, env={**os.environ, "JARVIS_LOAD_PLUGINS": ""})

    assert (completed.returncode, completed.stdout) == (0, NO_CONFIG)


def test_categories_lists_a_plugin_that_imports_nothing_from_the_host(run_jarvis, fake_site, good_plugin,
                                                                      tmp_path):
    fake_site.add("fake-own", good_plugin("own_cat", marker="own", enabled=False, options={"limit": 3}),
                  version="0.7")

    completed = run_jarvis("categories", "--json", cwd=tmp_path, env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert completed.returncode == 0, completed.stderr
    [entry] = json.loads(completed.stdout)
    assert entry == {
        "name": "own_cat", "plugin": "fake-own", "version": "0.7", "enabled": False,
        "enabled_source": DEFAULT_SOURCE, "description": "fake own_cat", "inputs": ["in.csv"],
        "output": "out.md", "outputs": ["out.md"], "options": {"limit": 3},
    }


@pytest.mark.parametrize("marker", ["host", "own"])
def test_run_passes_config_options_to_a_third_party_plugin(run_jarvis, fake_site, good_plugin, output_dir,
                                                           tmp_path, marker):
    fake_site.add("fake-own", good_plugin("own_cat", marker=marker, options={"limit": 3}))
    config = tmp_path / "jarvis.toml"
    config.write_text("[categories.own_cat.options]\nlimit = 4\n", encoding="utf-8")

    completed = run_jarvis("run", str(output_dir), "--comparison-scope", "comparative", cwd=tmp_path,
                           env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (f"config: {config} (./jarvis.toml)\n"
                                "own_cat: OK - scope=comparative options=[('limit', 4)]\n")


@pytest.mark.parametrize(("result", "code", "line"), [
    ("SimpleNamespace(status='NO_DATA', message='nothing here')", 0, "own_cat: NO_DATA - nothing here"),
    ("SimpleNamespace(status='ERROR', message='bad row 3', warnings=['row 4 too'])", 2,
     "own_cat: ERROR - bad row 3"),
    ("SimpleNamespace(status='ERROR', message='oops', internal_error=True)", 1,
     "own_cat: ERROR (internal error) - oops"),
    ("'OK'", 1, "own_cat: ERROR (internal error) - internal error in fake-own 1.0: analyser returned str"),
    ("1 / 0", 1, "own_cat: ERROR (internal error) - internal error in fake-own 1.0: ZeroDivisionError"),
])
def test_run_exit_code_follows_what_a_plain_analyser_returns(run_jarvis, fake_site, good_plugin, output_dir,
                                                             tmp_path, result, code, line):
    fake_site.add("fake-own", good_plugin("own_cat", marker="own", result=result))

    completed = run_jarvis("run", str(output_dir), cwd=tmp_path,
                           env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert completed.returncode == code, completed.stderr
    assert completed.stdout.startswith(NO_CONFIG + line)
    assert len(completed.stdout.splitlines()) == 2
    assert "Traceback" not in completed.stderr
    # A bug is the one outcome whose stderr tells how to get the traceback.
    assert ("JARVIS_DEBUG=1" in completed.stderr) == (code == 1)


def test_run_prints_analyser_warnings_on_stderr(run_jarvis, fake_site, good_plugin, output_dir, tmp_path):
    result = "SimpleNamespace(status='OK', warnings=['row 4\\nskipped'])"
    fake_site.add("fake-own", good_plugin("own_cat", marker="own", result=result))

    completed = run_jarvis("run", str(output_dir), cwd=tmp_path,
                           env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert (completed.returncode, completed.stdout) == (0, NO_CONFIG + "own_cat: OK\n")
    assert completed.stderr == "jarvis: warning: own_cat: row 4 skipped\n"
