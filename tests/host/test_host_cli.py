"""The ``jarvis`` command end to end, in a subprocess as a user runs it.

These tests need the project installed (``pip install -e .``): the
jarvis-moe categories are found through its ``jarvis`` entry point.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from jarvis_moe import __version__
from jarvis_moe.host.cli import describe_categories, format_listing, main
from jarvis_moe.host.config import resolve_settings

LISTING_KEYS = {"name", "plugin", "version", "enabled", "enabled_source", "description",
                "inputs", "output", "outputs", "options"}

BROKEN_PLUGIN = "raise ImportError('needs a newer host')\n"


def test_version_flag_prints_the_version(run_jarvis):
    completed = run_jarvis("--version")

    assert completed.returncode == 0
    assert completed.stdout.strip() == f"jarvis {__version__}"


@pytest.mark.parametrize("command", [[], ["categories"], ["run"]])
def test_every_command_has_help(run_jarvis, command):
    completed = run_jarvis(*command, "--help")

    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: jarvis")


def test_command_is_required(run_jarvis):
    completed = run_jarvis()

    assert completed.returncode == 2
    assert "required: COMMAND" in completed.stderr


def test_categories_json_lists_both_moe_categories(run_jarvis, tmp_path):
    completed = run_jarvis("categories", "--json", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    listing = json.loads(completed.stdout)
    moe = [entry for entry in listing if entry["plugin"] == "jarvis-moe"]
    assert [entry["name"] for entry in moe] == ["moe_fused", "moe_unfused"]
    for entry in moe:
        assert set(entry) == LISTING_KEYS
        assert entry["version"] == __version__
        assert entry["enabled"] is True
        assert entry["enabled_source"] == "default (plugin.toml)"
        assert entry["output"] == f"category_findings/{entry['name']}_findings.md"
        assert entry["outputs"][1] == f"category_data/{entry['name']}_metrics.json"
        assert entry["options"]["decode_max_tokens"] == 256


def test_categories_text_shows_plugin_state_and_files(run_jarvis, tmp_path):
    completed = run_jarvis("categories", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert f"moe_fused  (jarvis-moe {__version__})  enabled, default (plugin.toml)" in completed.stdout
    assert "outputs: category_findings/moe_unfused_findings.md" in completed.stdout
    assert completed.stdout.index("moe_fused") < completed.stdout.index("moe_unfused")


def test_categories_shows_state_from_the_config_in_the_working_directory(run_jarvis, tmp_path):
    (tmp_path / "jarvis.toml").write_text("[categories.moe_unfused]\nenabled = false\n", encoding="utf-8")

    completed = run_jarvis("categories", "--json", cwd=tmp_path)

    entry = next(e for e in json.loads(completed.stdout) if e["name"] == "moe_unfused")
    assert entry["enabled"] is False
    assert entry["enabled_source"] == f"config: {tmp_path / 'jarvis.toml'}"


def test_listing_imports_neither_polars_nor_pydantic(run_python, tmp_path):
    completed = run_python(["-X", "importtime", "-m", "jarvis_moe.host.cli", "categories", "--json"],
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

    assert completed.returncode == 2
    assert "'moe_fused' is registered by more than one plugin" in completed.stderr
    assert f"'jarvis-moe {__version__}'" in completed.stderr and "'fake-rival 9.9'" in completed.stderr
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


def test_config_error_exits_2_naming_file_and_key(run_jarvis, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[categories.moe_fused.options]\nskew_cov = 'high'\n", encoding="utf-8")

    completed = run_jarvis("categories", "--config", str(config), cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"jarvis: error: {config}: categories.moe_fused.options.skew_cov: "
        "expected a number like the default 0.25, got 'high'")


def test_config_from_environment_variable_is_read(run_jarvis, tmp_path):
    env = {"JARVIS_CONFIG": str(tmp_path / "missing.toml")}
    completed = run_jarvis("categories", cwd=tmp_path, env={**os.environ, **env})

    assert completed.returncode == 2
    assert "missing.toml: file not found" in completed.stderr


def test_run_on_a_dense_model_reports_no_data_for_both_categories(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")

    completed = run_jarvis("run", str(output_dir), "--category", "moe_fused",
                           "--category", "moe_unfused", cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert [line.split(" ")[:2] for line in lines] == [["moe_fused:", "NO_DATA"], ["moe_unfused:", "NO_DATA"]]
    findings = (output_dir / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "No MoE operations detected in this trace." in findings


def test_run_skips_a_category_disabled_in_the_config(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")
    config = tmp_path / "jarvis.toml"
    config.write_text("[categories.moe_fused]\nenabled = false\n", encoding="utf-8")

    completed = run_jarvis("run", str(output_dir), "--category", "moe_fused", "--config", str(config),
                           cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"moe_fused: skipped (disabled by config: {config})\n"
    assert not (output_dir / "category_findings").exists()


def test_run_on_a_missing_directory_exits_2_without_traceback(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path / "nope"), cwd=tmp_path)

    assert completed.returncode == 2
    assert "does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_run_with_an_unknown_category_exits_2_listing_known_ones(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path), "--category", "moe_fuzed", cwd=tmp_path)

    assert completed.returncode == 2
    assert "unknown category 'moe_fuzed'" in completed.stderr
    assert "moe_fused" in completed.stderr and "moe_unfused" in completed.stderr


def test_run_rejects_an_unknown_scope(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path), "--comparison-scope", "both", cwd=tmp_path)

    assert completed.returncode == 2
    assert "invalid choice: 'both'" in completed.stderr


def test_listing_function_and_command_agree(moe_registry, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JARVIS_CONFIG", raising=False)
    monkeypatch.setenv("JARVIS_LOAD_PLUGINS", "jarvis-moe")
    listing = describe_categories(moe_registry, resolve_settings(moe_registry.categories, None))

    assert main(["categories", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing
    assert format_listing(listing, moe_registry).count("enabled, default (plugin.toml)") == 2


def test_listing_says_so_when_no_plugin_is_loaded(run_jarvis, tmp_path):
    completed = run_jarvis("categories", cwd=tmp_path, env={**os.environ, "JARVIS_LOAD_PLUGINS": ""})

    assert completed.returncode == 0
    assert "No categories registered" in completed.stdout


def test_run_without_categories_prints_nothing_and_succeeds(run_jarvis, tmp_path):
    completed = run_jarvis("run", str(tmp_path), cwd=tmp_path, env={**os.environ, "JARVIS_LOAD_PLUGINS": ""})

    assert (completed.returncode, completed.stdout) == (0, "")
