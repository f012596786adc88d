"""``python -m jarvis_moe``, the drop-in for the pipeline's per-category script."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jarvis_moe.__main__ import main
from jarvis_moe.manifest import default_options
from jarvis_moe.run import AnalysisResult, Status

from .helpers import tree


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch, tmp_path):
    # The drop-in adds jarvis-moe itself; other installed plugins and the
    # developer's own config stay out of these tests.
    monkeypatch.setenv("JARVIS_LOAD_PLUGINS", "")
    monkeypatch.delenv("JARVIS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_default_category_is_moe_fused_with_manifest_options(fake_engine, output_dir, capsys):
    engine = fake_engine(AnalysisResult(Status.OK, "3 findings"))

    assert main(["--output-dir", str(output_dir)]) == 0

    assert capsys.readouterr().out == "moe_fused: OK - 3 findings\n"
    call = engine.calls[0]
    assert (call["output_dir"], call["category"], call["scope"]) == (output_dir, "moe_fused", "standalone")
    assert call["options"] == default_options("moe_fused")


def test_user_config_options_reach_the_engine_and_disabled_category_still_runs(fake_engine, output_dir, tmp_path):
    engine = fake_engine(AnalysisResult(Status.NO_DATA))
    config = tmp_path / "mine.toml"
    config.write_text("[categories.moe_unfused]\nenabled = false\n"
                      "[categories.moe_unfused.options]\nrouting_noise_pct = 12.5\nreplay_below_pct = 30\n",
                      encoding="utf-8")

    code = main(["--output-dir", str(output_dir), "--category", "moe_unfused", "--config", str(config)])

    assert code == 0
    assert engine.calls[0]["category"] == "moe_unfused"
    assert engine.calls[0]["options"] == {**default_options("moe_unfused"), "routing_noise_pct": 12.5,
                                          "replay_below_pct": 30.0}


def test_scope_comes_from_the_directory_unless_given(fake_engine, fixture_copy):
    engine = fake_engine()
    output_dir = fixture_copy("synthetic-mixtral-decode-bf16-vs-faster")

    main(["--output-dir", str(output_dir)])
    main(["--output-dir", str(output_dir), "--comparison-scope", "standalone"])

    assert [call["scope"] for call in engine.calls] == ["comparative", "standalone"]


@pytest.mark.parametrize(("result", "code"), [
    (AnalysisResult(Status.OK), 0),
    (AnalysisResult(Status.NO_DATA), 0),
    (AnalysisResult(Status.ERROR, "moe_fused_ops.csv: row 3: bad number"), 2),
    (AnalysisResult(Status.ERROR, "bug", internal_error=True), 1),
    (SimpleNamespace(status="NO_DATA", message="plain object"), 0),
    (SimpleNamespace(status="ERROR", message="plain object"), 2),
    (SimpleNamespace(status="BROKEN"), 1),
    (None, 1),
    (RuntimeError("engine crashed"), 1),
])
def test_exit_code_follows_the_result(fake_engine, output_dir, capsys, result, code):
    fake_engine(result)

    assert main(["--output-dir", str(output_dir)]) == code
    out = capsys.readouterr().out
    assert out.startswith("moe_fused: ") and len(out.splitlines()) == 1
    assert ("(internal error)" in out) == (code == 1)


def test_missing_output_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["--output-dir", str(tmp_path / "nope")]) == 4
    assert "does not exist" in capsys.readouterr().err


def test_folder_that_is_not_an_output_directory_is_a_usage_error_and_creates_nothing(fake_engine, tmp_path,
                                                                                    capsys):
    engine = fake_engine()
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "trace.json").write_text("{}", encoding="utf-8")

    assert main(["--output-dir", str(folder)]) == 4

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        f"jarvis-moe: error: {str(folder)!r} has neither category_data/ nor metadata/: it is not an "
        "analysis output directory of the pipeline (check the path)")
    assert engine.calls == []
    assert tree(folder) == ["trace.json"]


def test_output_directory_with_only_metadata_is_accepted(fake_engine, tmp_path):
    engine = fake_engine(AnalysisResult(Status.NO_DATA))
    (tmp_path / "out" / "metadata").mkdir(parents=True)

    assert main(["--output-dir", str(tmp_path / "out")]) == 0
    assert len(engine.calls) == 1


def test_config_error_is_a_usage_error_naming_file_and_key(output_dir, tmp_path, capsys):
    config = tmp_path / "mine.toml"
    config.write_text("[categories.moe_fused]\nenabled = 1\n", encoding="utf-8")

    assert main(["--output-dir", str(output_dir), "--config", str(config)]) == 4
    assert f"{config}: categories.moe_fused.enabled: expected a boolean, got 1" in capsys.readouterr().err


def test_drop_in_reports_no_data_for_a_dense_model(run_python, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")

    completed = run_python(["-m", "jarvis_moe", "--output-dir", str(output_dir)], cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("moe_fused: NO_DATA")
    assert completed.stdout.splitlines()[1:] == [f"    wrote {output_dir / 'category_data' / 'moe_fused_metrics.json'}",
                                                 f"    wrote {output_dir / 'category_findings' / 'moe_fused_findings.md'}"]
    findings = (output_dir / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "No MoE operations detected in this trace." in findings


def test_drop_in_on_a_folder_that_is_not_an_output_directory_is_a_usage_error(run_python, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()

    completed = run_python(["-m", "jarvis_moe", "--output-dir", str(folder)], cwd=tmp_path)

    assert completed.returncode == 4
    assert completed.stdout == ""
    assert "has neither category_data/ nor metadata/" in completed.stderr
    assert completed.stderr.startswith("jarvis-moe: error: ")
    assert "Traceback" not in completed.stderr
    assert tree(folder) == []


def test_drop_in_without_the_host_says_how_to_install_it(run_python, tmp_path):
    # The plugin's base install has no host; only the drop-in needs one.
    code = ("import runpy, sys; sys.modules['jarvis_host'] = None; sys.argv = ['jarvis_moe', '--output-dir', '.']; "
            "runpy.run_module('jarvis_moe', run_name='__main__')")

    completed = run_python(["-c", code], cwd=tmp_path)

    assert completed.returncode == 4
    assert completed.stderr == ("python -m jarvis_moe: error: this command runs through the reference host, which "
                                "is not installed: pip install 'jarvis-moe[host]'\n")
    assert tree(tmp_path) == []
