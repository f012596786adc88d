"""The ``jarvis`` command keeps the conventions of the tools around it.

What the run says (the config in use, each category's files, a JSON summary),
the exit codes (usage errors apart from bad data), and a quiet end when the
reader of its output goes away or the user presses Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from jarvis_host import exits
from jarvis_host.cli import EXIT_CODES_HELP

# The unfused-only fixture: gpt-oss-20b decode, whose MoE layers run as
# separate up/down kernels (moe_unfused_ops.csv) and which has no fused MoE
# kernels (no moe_fused_ops.csv).
UNFUSED_ONLY = "gpt-oss-20b-mi300x-decode-bs32"


def test_no_fused_ops_is_not_called_no_moe_when_the_unfused_category_has_them(run_jarvis, fixture_copy,
                                                                                tmp_path):
    output_dir = fixture_copy(UNFUSED_ONLY)

    completed = run_jarvis("run", str(output_dir), cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    fused = lines.index("moe_fused: NO_DATA - no fused MoE operations; the MoE layers are in moe_unfused")
    assert "no MoE operations" not in completed.stdout
    assert lines[fused + 1:fused + 3] == [f"    wrote {output_dir / 'category_data' / 'moe_fused_metrics.json'}",
                                          f"    wrote {output_dir / 'category_findings' / 'moe_fused_findings.md'}"]
    metrics = json.loads((output_dir / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    assert (metrics["status"], metrics["sibling_category"]) == ("NO_DATA", "moe_unfused")
    assert metrics["message"] == "No fused MoE operations in this trace; its MoE layers are in moe_unfused."


def test_run_lists_every_file_it_wrote_and_each_exists(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy(UNFUSED_ONLY)

    completed = run_jarvis("run", str(output_dir), "--category", "moe_unfused", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    written = [line.removeprefix("    wrote ") for line in completed.stdout.splitlines() if line.startswith("    ")]
    assert f"{output_dir / 'category_findings' / 'moe_unfused_findings.md'}" in written
    assert f"{output_dir / 'category_data' / 'moe_unfused_metrics.json'}" in written
    assert all(os.path.isfile(path) for path in written)


def test_run_json_summary(run_jarvis, fixture_copy, tmp_path):
    output_dir = fixture_copy(UNFUSED_ONLY)

    completed = run_jarvis("run", str(output_dir), "--json", cwd=tmp_path,
                           env={**os.environ, "JARVIS_LOAD_PLUGINS": "jarvis-moe"})

    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["config"] == {"path": None, "origin": "none"}
    # The fixture's category_manifest.json records "comparison_scope": "standalone".
    assert (summary["output_dir"], summary["comparison_scope"], summary["exit_code"]) == (
        str(output_dir), "standalone", 0)
    fused, unfused = summary["categories"]
    assert fused == {
        "name": "moe_fused", "status": "NO_DATA", "internal_error": False, "exit_code": 0, "note": "",
        "message": "no fused MoE operations; the MoE layers are in moe_unfused", "warnings": [],
        "outputs": [str(output_dir / "category_data" / "moe_fused_metrics.json"),
                    str(output_dir / "category_findings" / "moe_fused_findings.md")],
    }
    assert (unfused["name"], unfused["status"]) == ("moe_unfused", "OK")
    assert str(output_dir / "category_findings" / "moe_unfused_findings.md") in unfused["outputs"]
    assert all(os.path.isfile(path) for path in unfused["outputs"])


def test_run_json_reports_bad_input_with_its_exit_code(run_jarvis, fake_site, good_plugin, output_dir, tmp_path):
    result = "SimpleNamespace(status='ERROR', message='row 3: no name', warnings=['row 4 too'])"
    fake_site.add("fake-own", good_plugin("own_cat", marker="own", result=result))

    completed = run_jarvis("run", str(output_dir), "--json", cwd=tmp_path,
                           env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert completed.returncode == 2
    [entry] = json.loads(completed.stdout)["categories"]
    assert (entry["status"], entry["message"], entry["exit_code"]) == ("ERROR", "row 3: no name", 2)
    assert entry["warnings"] == ["row 4 too"]
    # stderr tells the same as in text mode.
    assert completed.stderr == "jarvis: warning: own_cat: row 4 too\n"


def test_run_json_still_points_a_bug_at_jarvis_debug(run_jarvis, fake_site, good_plugin, output_dir, tmp_path):
    fake_site.add("fake-own", good_plugin("own_cat", marker="own", result="1 / 0"))

    completed = run_jarvis("run", str(output_dir), "--json", cwd=tmp_path,
                           env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-own"))

    assert completed.returncode == 1
    assert json.loads(completed.stdout)["categories"][0]["internal_error"] is True
    assert "rerun with JARVIS_DEBUG=1" in completed.stderr and "Traceback" not in completed.stderr


def test_config_named_by_the_environment_is_said(run_jarvis, output_dir, tmp_path):
    config = tmp_path / "team.toml"
    config.write_text("", encoding="utf-8")

    completed = run_jarvis("run", str(output_dir), cwd=tmp_path,
                           env={**os.environ, "JARVIS_CONFIG": str(config), "JARVIS_LOAD_PLUGINS": ""})

    assert (completed.returncode, completed.stdout) == (0, f"config: {config} ($JARVIS_CONFIG)\n")


def test_categories_listing_says_which_config_it_used(run_jarvis, tmp_path):
    (tmp_path / "jarvis.toml").write_text("", encoding="utf-8")

    completed = run_jarvis("categories", cwd=tmp_path, env={**os.environ, "JARVIS_LOAD_PLUGINS": ""})

    assert completed.stdout.splitlines()[0] == f"config: {tmp_path / 'jarvis.toml'} (./jarvis.toml)"


def test_bad_arguments_are_a_usage_error_apart_from_bad_data(run_jarvis, tmp_path):
    completed = run_jarvis("run", cwd=tmp_path)

    assert completed.returncode == exits.USAGE_ERROR == 4
    assert exits.BAD_INPUT == 2
    assert completed.stderr.startswith("usage: jarvis run")
    assert "jarvis run: error: the following arguments are required: OUTPUT_DIR" in completed.stderr


def test_every_exit_code_is_documented_in_the_help(run_jarvis):
    completed = run_jarvis("--help")

    assert EXIT_CODES_HELP in completed.stdout
    for code in (exits.OK, exits.INTERNAL_ERROR, exits.BAD_INPUT, exits.USAGE_ERROR, exits.INTERRUPTED,
                 exits.BROKEN_PIPE):
        assert f"\n  {code} " in EXIT_CODES_HELP


def test_output_closed_before_anything_is_read_ends_quietly_with_141(tmp_path):
    # `jarvis categories --json | head -1`, made deterministic: the reading
    # end is closed before the command writes anything.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = subprocess.run([sys.executable, "-m", "jarvis_host.cli", "categories", "--json"],
                                   stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                   timeout=120)
    finally:
        os.close(write_end)

    assert (completed.returncode, completed.stderr) == (exits.BROKEN_PIPE, "")


def test_listing_piped_into_head_prints_no_traceback(tmp_path):
    command = f"set -o pipefail; {sys.executable} -m jarvis_host.cli categories --json | head -1"

    completed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path,
                               timeout=120)

    assert completed.stdout == "[\n"
    assert completed.returncode in (exits.OK, exits.BROKEN_PIPE)
    assert completed.stderr == ""


def test_ctrl_c_during_a_run_ends_quietly_with_130(fake_site, good_plugin, output_dir, tmp_path):
    # The analyser marks that it started, then waits long enough to be interrupted.
    result = "(__import__('pathlib').Path(output_dir, 'started').touch(), __import__('time').sleep(60))"
    fake_site.add("fake-slow", good_plugin("slow_cat", marker="own", result=result))
    process = subprocess.Popen([sys.executable, "-m", "jarvis_host.cli", "run", str(output_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env=fake_site.env(JARVIS_LOAD_PLUGINS="fake-slow"))
    deadline = time.monotonic() + 60
    while not (output_dir / "started").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert (output_dir / "started").exists()
    assert process.returncode == exits.INTERRUPTED == 130
    assert stderr == "\njarvis: interrupted\n"
