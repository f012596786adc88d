"""The plugin's manifest (plugin.toml), read by the plugin itself: validation,
merged options, error messages, and agreement with the documentation.

The host never reads it; the host's user config is tested in host/tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from jarvis_moe.manifest import (
    MANIFEST_NAME,
    CategorySpec,
    Manifest,
    default_options,
    load_manifest,
    parse_manifest,
    read_manifest,
)
from jarvis_moe.run import analyse
from jarvis_moe.tomlcheck import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]

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
    manifest = read_manifest(REPO_ROOT / MANIFEST_NAME)
    raw = tomllib.loads((REPO_ROOT / MANIFEST_NAME).read_text(encoding="utf-8"))

    assert isinstance(manifest, Manifest)
    assert manifest.name == "jarvis-moe"
    assert sorted(manifest.categories) == sorted(raw["categories"]) == ["moe_fused", "moe_unfused"]
    assert dict(manifest.options) == raw["options"]
    for name, spec in manifest.categories.items():
        table = raw["categories"][name]
        assert isinstance(spec, CategorySpec) and spec.name == name
        assert (spec.description, spec.enabled) == (table["description"], table.get("enabled", True))
        assert (list(spec.inputs), list(spec.outputs)) == (table["inputs"], table["outputs"])
        assert dict(spec.options) == {**raw["options"], **table.get("options", {})}


def test_load_manifest_reads_the_manifest_of_this_checkout_or_wheel():
    loaded = load_manifest()

    assert loaded.name == "jarvis-moe"
    assert loaded.categories == read_manifest(REPO_ROOT / MANIFEST_NAME).categories


def test_manifest_error_names_file_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "plugin.toml", MINIMAL_MANIFEST.replace("enabled = true", 'enabled = "yes"'))

    with pytest.raises(ConfigError) as caught:
        read_manifest(Path("plugin.toml"))

    assert str(caught.value) == "plugin.toml: categories.demo_cat.enabled: expected a boolean, got 'yes'"


def test_unreadable_manifest_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'plugin.toml'}: cannot read")):
        read_manifest(tmp_path / "plugin.toml")


@pytest.mark.parametrize(("change", "message"), [
    (("[options]", "colour = 'red'\n[options]"), "colour: unknown key"),
    (('description = "demo"', 'description = "demo"\nowner = "me"'),
     "categories.demo_cat.owner: unknown key"),
    (('inputs = ["a.csv"]', "inputs = [1]"), "categories.demo_cat.inputs: expected an array of strings"),
    (('outputs = ["b.md"]', ""), "categories.demo_cat.outputs: missing"),
    (('description = "demo"', ""), "categories.demo_cat.description: missing"),
    (('name = "demo"', ""), "name: missing"),
    (('name = "demo"', "name = 3"), "name: expected a string, got 3"),
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


def test_category_is_enabled_unless_the_manifest_says_otherwise():
    manifest = parse_manifest(MINIMAL_MANIFEST.replace("enabled = true\n", ""), "demo.toml")

    assert manifest.categories["demo_cat"].enabled is True


def test_default_options_are_a_fresh_copy_of_the_manifest_defaults():
    expected = dict(load_manifest().categories["moe_unfused"].options)
    options = default_options("moe_unfused")
    options["routing_noise_pct"] = 9.0

    assert default_options("moe_unfused") == expected
    with pytest.raises(KeyError, match="moe_fusd"):
        default_options("moe_fusd")


def test_reading_the_manifest_imports_neither_the_host_nor_the_engine():
    code = ("import sys, jarvis_moe.manifest as m; m.load_manifest(); "
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('polars', 'pydantic') "
            "or n.startswith('jarvis_host')))")
    env = {k: v for k, v in os.environ.items() if k not in ("JARVIS_LOAD_PLUGINS", "JARVIS_CONFIG")}

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                               timeout=120)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_every_manifest_option_is_documented_with_its_default():
    options = read_manifest(REPO_ROOT / MANIFEST_NAME).options
    documented = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")

    missing = []
    for key, default in options.items():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if f"| `{key}` | {shown} |" not in documented:
            missing.append(f"{key} = {shown}")
    assert not missing, f"options of plugin.toml missing from docs/configuration.md: {', '.join(missing)}"


@pytest.mark.parametrize("folder", ["real-h200-mixtral-sglang-mixed-routing", "gpt-oss-20b-mi300x-decode-bs32"])
def test_every_file_a_run_writes_is_a_declared_output(tmp_path, folder):
    out = tmp_path / folder
    shutil.copytree(REPO_ROOT / "tests" / "fixtures" / folder, out)
    before = {p for p in out.rglob("*") if p.is_file()}
    declared: set[Path] = set()
    for name, spec in load_manifest().categories.items():
        analyse(out, category=name)
        declared |= {out / rel for rel in spec.outputs}
    written = {p for p in out.rglob("*") if p.is_file()} - before
    assert written, "the run wrote nothing"
    assert written <= declared, sorted(str(p.relative_to(out)) for p in written - declared)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: os.mkfifo(p), "is not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),
    (lambda p: p.write_text("# x\n" * 400_000, encoding="utf-8"), "is 1600000 bytes, more than the 1048576 accepted"),
    (lambda p: p.write_text('name = "demo"\nx = ' + "[" * 2000 + "]" * 2000, encoding="utf-8"),
     "invalid TOML: tables or arrays nested too deeply"),
    (lambda p: p.write_text('name = "demo"\nx = ' + "9" * 5000, encoding="utf-8"),
     "invalid TOML: Exceeds the limit (4300 digits)"),
    (lambda p: p.write_bytes('name = "demo"\n'.encode("utf-16")), "is UTF-16 (little-endian) text, not UTF-8"),
])
def test_a_manifest_that_is_not_a_small_regular_utf8_file_is_refused_unread(tmp_path, make, message):
    path = tmp_path / "plugin.toml"
    make(path)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        read_manifest(path)
