"""The host's user config (jarvis.toml): validation, precedence, error messages.

The plugin's own manifest (plugin.toml) is tested in tests/test_manifest.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jarvis_host import tomlcheck
from jarvis_host.category import Category
from jarvis_host.config import (
    DEFAULT_SOURCE,
    ConfigError,
    ConfigLocation,
    locate_config,
    load_settings,
    read_user_config,
    resolve_settings,
)
from jarvis_moe.manifest import load_manifest

# The plugin's defaults, as its manifest gives them (not copied here).
FUSED_DEFAULTS = dict(load_manifest().categories["moe_fused"].options)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_user_config_disables_a_category_and_overrides_options(tmp_path, moe_registry):
    config = write(tmp_path / "jarvis.toml", """
[categories.moe_fused]
enabled = false
[categories.moe_unfused.options]
routing_noise_pct = 12.5
decode_max_tokens = 512
anomaly_pct = 120
""")

    settings = resolve_settings(moe_registry.categories, read_user_config(config))

    assert settings["moe_fused"].enabled is False
    assert settings["moe_fused"].enabled_source == f"config: {config}"
    assert settings["moe_fused"].options == FUSED_DEFAULTS
    unfused = settings["moe_unfused"]
    assert (unfused.enabled, unfused.enabled_source) == (True, DEFAULT_SOURCE)
    assert unfused.options["routing_noise_pct"] == 12.5
    assert unfused.options["decode_max_tokens"] == 512
    # An integer is accepted where the default is a float, and stays a float.
    assert unfused.options["anomaly_pct"] == 120.0 and isinstance(unfused.options["anomaly_pct"], float)


def test_without_config_every_category_uses_the_manifest_defaults(moe_registry):
    settings = resolve_settings(moe_registry.categories, None)
    manifest = load_manifest()

    assert DEFAULT_SOURCE == "default (plugin)"
    assert {name: (s.enabled, s.enabled_source) for name, s in settings.items()} == {
        "moe_fused": (True, DEFAULT_SOURCE),
        "moe_unfused": (True, DEFAULT_SOURCE),
    }
    for name, setting in settings.items():
        assert setting.options == dict(manifest.categories[name].options)


def fake_category(name: str, enabled: bool = True, **options: object) -> Category:
    """A category as the host builds it from any plugin's register() call."""
    return Category(name=name, description="", inputs=(), outputs=(), analyse=print,
                    enabled_by_default=enabled, default_options=options, plugin="other", version="1")


def test_user_config_applies_to_the_defaults_any_plugin_registered(tmp_path):
    categories = {"a_cat": fake_category("a_cat", enabled=False, limit=5, label="x"),
                  "b_cat": fake_category("b_cat")}
    config = write(tmp_path / "jarvis.toml", "[categories.a_cat]\nenabled = true\n"
                                             "[categories.a_cat.options]\nlimit = 7\n")

    settings = resolve_settings(categories, read_user_config(config))
    defaults = resolve_settings(categories, None)

    assert (defaults["a_cat"].enabled, defaults["a_cat"].enabled_source) == (False, DEFAULT_SOURCE)
    assert (settings["a_cat"].enabled, settings["a_cat"].enabled_source) == (True, f"config: {config}")
    assert settings["a_cat"].options == {"limit": 7, "label": "x"}
    assert (settings["b_cat"].enabled, settings["b_cat"].options) == (True, {})
    # The category's own defaults are not changed by the overrides.
    assert dict(categories["a_cat"].default_options) == {"limit": 5, "label": "x"}


def test_option_of_a_category_without_options_is_unknown(tmp_path):
    config = write(tmp_path / "jarvis.toml", "[categories.b_cat.options]\nlimit = 1\n")

    message = "categories.b_cat.options.limit: unknown option (known: none)"
    with pytest.raises(ConfigError, match=re.escape(f"{config}: {message}")):
        resolve_settings({"b_cat": fake_category("b_cat")}, read_user_config(config))


def test_config_error_is_the_shared_toml_check_error():
    assert ConfigError is tomlcheck.ConfigError


@pytest.mark.parametrize(("text", "message"), [
    ("[categories.moe_fusd]\nenabled = false\n",
     "categories.moe_fusd: unknown category (known: moe_fused, moe_unfused)"),
    ("[categories.moe_fused.options]\nrouting_noise_pctt = 3.0\n",
     "categories.moe_fused.options.routing_noise_pctt: unknown option (did you mean routing_noise_pct?)"),
    ("[categories.moe_fused.options]\nanomaly_pct = 1" + "0" * 400 + "\n",
     # describe() keeps 57 characters of the value and adds "..."
     "categories.moe_fused.options.anomaly_pct: 1" + "0" * 56 + "... is too large for a number"),
    ("[categories.moe_fused.options]\ndecode_max_tokens = 12.5\n",
     "categories.moe_fused.options.decode_max_tokens: expected an integer like the default "
     f"{FUSED_DEFAULTS['decode_max_tokens']}, got 12.5"),
    ("[categories.moe_fused.options]\nroofline_plot = 1\n",
     "categories.moe_fused.options.roofline_plot: expected a boolean like the default "
     f"{FUSED_DEFAULTS['roofline_plot']}, got 1"),
    ("[categories.moe_fused.options]\nrouting_noise_pct = true\n",
     "categories.moe_fused.options.routing_noise_pct: expected a number like the default "
     f"{FUSED_DEFAULTS['routing_noise_pct']}, got True"),
    ("[categories.moe_fused.options]\nreplay_below_pct = '50'\n",
     "categories.moe_fused.options.replay_below_pct: expected a number like the default "
     f"{FUSED_DEFAULTS['replay_below_pct']}, got '50'"),
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

    assert locate_config(tmp_path / "flag.toml", env) == ConfigLocation(tmp_path / "flag.toml", "--config")


def test_environment_wins_over_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "jarvis.toml", "")

    assert locate_config(None, {"JARVIS_CONFIG": "/etc/jarvis.toml"}) == ConfigLocation(Path("/etc/jarvis.toml"),
                                                                              "$JARVIS_CONFIG")


def test_working_directory_config_is_used_when_present(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locate_config(None, {}) == ConfigLocation(None, "none")

    write(tmp_path / "jarvis.toml", "")

    assert locate_config(None, {"JARVIS_CONFIG": ""}) == ConfigLocation(tmp_path / "jarvis.toml", "./jarvis.toml")


def test_each_config_origin_is_said_in_one_line(tmp_path):
    assert ConfigLocation(None, "none").describe() == (
        "config: none (no --config, $JARVIS_CONFIG or ./jarvis.toml): plugin defaults")
    assert ConfigLocation(tmp_path / "j.toml", "$JARVIS_CONFIG").describe() == (
        f"config: {tmp_path / 'j.toml'} ($JARVIS_CONFIG)")


def test_each_config_source_decides_the_enabled_state_in_precedence_order(tmp_path, monkeypatch, moe_registry):
    monkeypatch.chdir(tmp_path)
    categories = moe_registry.categories
    off = "[categories.moe_fused]\nenabled = false\n"
    on = "[categories.moe_fused]\nenabled = true\n"

    def state(flag: Path | None, environ: dict[str, str]) -> tuple[bool, str]:
        setting = load_settings(categories, flag, environ)["moe_fused"]
        return setting.enabled, setting.enabled_source

    assert state(None, {}) == (True, DEFAULT_SOURCE)
    cwd_config = write(tmp_path / "jarvis.toml", off)
    assert state(None, {}) == (False, f"config: {cwd_config}")
    env_config = write(tmp_path / "env.toml", on)
    assert state(None, {"JARVIS_CONFIG": str(env_config)}) == (True, f"config: {env_config}")
    flag_config = write(tmp_path / "flag.toml", off)
    assert state(flag_config, {"JARVIS_CONFIG": str(env_config)}) == (False, f"config: {flag_config}")


# --- config files that are not files, or not small ones -----------------------

import os  # noqa: E402


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(("make", "message"), [
    (_fifo, "is not a regular file"),
    (_dir, "is not a regular file"),
    (lambda p: (p.symlink_to("/dev/zero"), p)[1], "is not a regular file"),
    (lambda p: write(p, "# padding\n" * 200_000), "is 2000000 bytes, more than the 1048576 accepted"),
    (lambda p: write(p, "a = " + "[" * 2000 + "]" * 2000), "invalid TOML: tables or arrays nested too deeply"),
    (lambda p: write(p, "a = {" + "b = {" * 2000 + "}" * 2001), "invalid TOML: tables or arrays nested too deeply"),
    (lambda p: write(p, "a = " + "1" * 5000), "invalid TOML: Exceeds the limit (4300 digits)"),
    (lambda p: (p.write_bytes("[categories]\n".encode("utf-16")), p)[1], "is not UTF-8 text"),
])
def test_a_config_that_is_not_a_small_regular_file_is_refused_without_reading_it(tmp_path, make, message):
    path = make(tmp_path / "jarvis.toml")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        read_user_config(path)


@pytest.mark.parametrize("how", ["--config", "JARVIS_CONFIG"])
@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_jarvis_never_blocks_on_a_fifo_or_device_config(tmp_path, run_jarvis, how, target):
    path = tmp_path / "jarvis.toml"
    if target == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(target)
    env = {k: v for k, v in os.environ.items() if k not in ("JARVIS_LOAD_PLUGINS", "JARVIS_CONFIG")}
    args = ["categories"]
    if how == "--config":
        args += ["--config", str(path)]
    else:
        env["JARVIS_CONFIG"] = str(path)
    done = run_jarvis(*args, env=env)  # times out (and fails) after 120 s if it blocks
    assert done.returncode != 0 and "is not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
