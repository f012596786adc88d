"""Plugin manifests and user configs: validation, precedence, error messages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from jarvis_moe.host.config import (
    ConfigError,
    find_config,
    load_settings,
    parse_manifest,
    read_manifest,
    read_user_config,
    resolve_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL_MANIFEST = """
name = "demo"
[options]
threshold = 1.5
limit = 10
[categories.demo_cat]
description = "demo"
enabled = true
inputs = ["a.csv"]
outputs = ["b.md"]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_manifest_is_valid_and_matches_its_toml():
    manifest = read_manifest(REPO_ROOT / "plugin.toml")
    raw = tomllib.loads((REPO_ROOT / "plugin.toml").read_text(encoding="utf-8"))

    assert manifest.name == "jarvis-moe"
    assert sorted(manifest.categories) == ["moe_fused", "moe_unfused"]
    assert dict(manifest.categories["moe_fused"].options) == raw["options"]


def test_manifest_error_names_file_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "plugin.toml", MINIMAL_MANIFEST.replace("enabled = true", 'enabled = "yes"'))

    with pytest.raises(ConfigError) as caught:
        read_manifest(Path("plugin.toml"))

    assert str(caught.value) == "plugin.toml: categories.demo_cat.enabled: expected a boolean, got 'yes'"


@pytest.mark.parametrize(("change", "message"), [
    (("[options]", "colour = 'red'\n[options]"), "colour: unknown key"),
    (('description = "demo"', 'description = "demo"\nowner = "me"'),
     "categories.demo_cat.owner: unknown key"),
    (('inputs = ["a.csv"]', "inputs = [1]"), "categories.demo_cat.inputs: expected an array of strings"),
    (('outputs = ["b.md"]', ""), "categories.demo_cat.outputs: missing"),
    (('name = "demo"', ""), "name: missing"),
    (("limit = 10", "limit = {a = 1}"), "options.limit: expected a boolean, number, string"),
    (("[categories.demo_cat]", "[categories.demo_cat.options]\nlimit = 'x'\n[categories.demo_cat]"),
     "categories.demo_cat.options.limit: expected an integer like the default 10, got 'x'"),
    (('name = "demo"', 'name = "demo'), "invalid TOML"),
])
def test_manifest_problems_are_reported_with_their_key(change, message):
    text = MINIMAL_MANIFEST.replace(*change)

    with pytest.raises(ConfigError, match=re.escape(f"demo.toml: {message}")):
        parse_manifest(text, "demo.toml")


def test_category_options_override_shared_manifest_options():
    text = MINIMAL_MANIFEST + "[categories.demo_cat.options]\nthreshold = 3\nextra = true\n"

    manifest = parse_manifest(text, "demo.toml")

    assert dict(manifest.categories["demo_cat"].options) == {"threshold": 3.0, "limit": 10, "extra": True}
    assert dict(manifest.options) == {"threshold": 1.5, "limit": 10}


def test_user_config_disables_a_category_and_overrides_options(tmp_path, moe_registry):
    config = write(tmp_path / "jarvis.toml", """
[categories.moe_fused]
enabled = false
[categories.moe_unfused.options]
skew_cov = 0.4
decode_max_tokens = 512
anomaly_pct = 120
""")

    settings = resolve_settings(moe_registry.categories, read_user_config(config))

    assert settings["moe_fused"].enabled is False
    assert settings["moe_fused"].enabled_source == f"config: {config}"
    assert settings["moe_fused"].options["skew_cov"] == 0.25
    unfused = settings["moe_unfused"]
    assert (unfused.enabled, unfused.enabled_source) == (True, "default (plugin.toml)")
    assert unfused.options["skew_cov"] == 0.4
    assert unfused.options["decode_max_tokens"] == 512
    # An integer is accepted where the default is a float, and stays a float.
    assert unfused.options["anomaly_pct"] == 120.0 and isinstance(unfused.options["anomaly_pct"], float)


def test_without_config_every_category_uses_the_manifest_defaults(moe_registry):
    settings = resolve_settings(moe_registry.categories, None)

    assert {name: (s.enabled, s.enabled_source) for name, s in settings.items()} == {
        "moe_fused": (True, "default (plugin.toml)"),
        "moe_unfused": (True, "default (plugin.toml)"),
    }


@pytest.mark.parametrize(("text", "message"), [
    ("[categories.moe_fusd]\nenabled = false\n",
     "categories.moe_fusd: unknown category (known: moe_fused, moe_unfused)"),
    ("[categories.moe_fused.options]\nskew_covv = 0.3\n",
     "categories.moe_fused.options.skew_covv: unknown option (known: "),
    ("[categories.moe_fused.options]\ndecode_max_tokens = 12.5\n",
     "categories.moe_fused.options.decode_max_tokens: expected an integer like the default 256, got 12.5"),
    ("[categories.moe_fused.options]\nroofline_plot = 1\n",
     "categories.moe_fused.options.roofline_plot: expected a boolean like the default True, got 1"),
    ("[categories.moe_fused.options]\nskew_cov = true\n",
     "categories.moe_fused.options.skew_cov: expected a number like the default 0.25, got True"),
    ("[categories.moe_fused]\nenabled = 'no'\n",
     "categories.moe_fused.enabled: expected a boolean, got 'no'"),
    ("[categories.moe_fused]\nenable = false\n",
     "categories.moe_fused.enable: unknown key (known keys: enabled, options)"),
    ("[moe_fused]\nenabled = false\n", "moe_fused: unknown key (known keys: categories)"),
    ("categories = 3\n", "categories: expected a table, got 3"),
    ("[categories\n", "invalid TOML"),
])
def test_user_config_errors_name_file_and_key(tmp_path, moe_registry, text, message):
    config = write(tmp_path / "jarvis.toml", text)

    with pytest.raises(ConfigError, match=re.escape(f"{config}: {message}")):
        resolve_settings(moe_registry.categories, read_user_config(config))


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.toml: file not found"):
        read_user_config(tmp_path / "nowhere.toml")


def test_config_flag_wins_over_environment_and_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "jarvis.toml", "")
    env = {"JARVIS_CONFIG": str(tmp_path / "from-env.toml")}

    assert find_config(tmp_path / "flag.toml", env) == tmp_path / "flag.toml"


def test_environment_wins_over_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "jarvis.toml", "")

    assert find_config(None, {"JARVIS_CONFIG": "/etc/jarvis.toml"}) == Path("/etc/jarvis.toml")


def test_working_directory_config_is_used_when_present(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None

    write(tmp_path / "jarvis.toml", "")

    assert find_config(None, {"JARVIS_CONFIG": ""}) == tmp_path / "jarvis.toml"


def test_each_config_source_decides_the_enabled_state_in_precedence_order(tmp_path, monkeypatch, moe_registry):
    monkeypatch.chdir(tmp_path)
    categories = moe_registry.categories
    off = "[categories.moe_fused]\nenabled = false\n"
    on = "[categories.moe_fused]\nenabled = true\n"

    def state(flag: Path | None, environ: dict[str, str]) -> tuple[bool, str]:
        setting = load_settings(categories, flag, environ)["moe_fused"]
        return setting.enabled, setting.enabled_source

    assert state(None, {}) == (True, "default (plugin.toml)")
    cwd_config = write(tmp_path / "jarvis.toml", off)
    assert state(None, {}) == (False, f"config: {cwd_config}")
    env_config = write(tmp_path / "env.toml", on)
    assert state(None, {"JARVIS_CONFIG": str(env_config)}) == (True, f"config: {env_config}")
    flag_config = write(tmp_path / "flag.toml", off)
    assert state(flag_config, {"JARVIS_CONFIG": str(env_config)}) == (False, f"config: {flag_config}")


def test_every_manifest_option_is_documented_with_its_default():
    options = read_manifest(REPO_ROOT / "plugin.toml").options
    documented = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")

    for key, default in options.items():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"| `{key}` | {shown} |" in documented, key
