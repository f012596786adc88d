"""``python -m jarvis_moe``, the drop-in for the pipeline's per-category script."""

from __future__ import annotations

import pytest

from jarvis_moe.__main__ import main
from jarvis_moe.host.category import CategoryResult, Status


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch, tmp_path):
    # The drop-in adds jarvis-moe itself; other installed plugins and the
    # developer's own config stay out of these tests.
    monkeypatch.setenv("JARVIS_LOAD_PLUGINS", "")
    monkeypatch.delenv("JARVIS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_default_category_is_moe_fused_with_manifest_options(fake_engine, tmp_path, capsys):
    engine = fake_engine(CategoryResult(Status.OK, "3 findings"))

    assert main(["--output-dir", str(tmp_path)]) == 0

    assert capsys.readouterr().out == "moe_fused: OK - 3 findings\n"
    call = engine.calls[0]
    assert (call["category"], call["scope"]) == ("moe_fused", "standalone")
    assert call["options"]["skew_cov"] == 0.25


def test_user_config_options_reach_the_engine_and_disabled_category_still_runs(fake_engine, tmp_path):
    engine = fake_engine(CategoryResult(Status.NO_DATA))
    config = tmp_path / "mine.toml"
    config.write_text("[categories.moe_unfused]\nenabled = false\n"
                      "[categories.moe_unfused.options]\nskew_cov = 0.5\n", encoding="utf-8")

    code = main(["--output-dir", str(tmp_path), "--category", "moe_unfused", "--config", str(config)])

    assert code == 0
    assert engine.calls[0]["category"] == "moe_unfused"
    assert engine.calls[0]["options"]["skew_cov"] == 0.5


def test_scope_comes_from_the_directory_unless_given(fake_engine, fixture_copy):
    engine = fake_engine()
    output_dir = fixture_copy("synthetic-mixtral-decode-bf16-vs-faster")

    main(["--output-dir", str(output_dir)])
    main(["--output-dir", str(output_dir), "--comparison-scope", "standalone"])

    assert [call["scope"] for call in engine.calls] == ["comparative", "standalone"]


@pytest.mark.parametrize(("result", "code"), [
    (CategoryResult(Status.NO_DATA), 0),
    (CategoryResult(Status.ERROR, "moe_fused_ops.csv: row 3: bad number"), 2),
    (CategoryResult(Status.ERROR, "bug", internal_error=True), 1),
    (RuntimeError("engine crashed"), 1),
])
def test_exit_code_follows_the_result(fake_engine, tmp_path, capsys, result, code):
    fake_engine(result)

    assert main(["--output-dir", str(tmp_path)]) == code
    assert capsys.readouterr().out.startswith("moe_fused: ")


def test_missing_output_directory_exits_2(tmp_path, capsys):
    assert main(["--output-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_error_exits_2_naming_file_and_key(tmp_path, capsys):
    config = tmp_path / "mine.toml"
    config.write_text("[categories.moe_fused]\nenabled = 1\n", encoding="utf-8")

    assert main(["--output-dir", str(tmp_path), "--config", str(config)]) == 2
    assert f"{config}: categories.moe_fused.enabled: expected a boolean, got 1" in capsys.readouterr().err


def test_drop_in_reports_no_data_for_a_dense_model(run_python, fixture_copy, tmp_path):
    output_dir = fixture_copy("qwen3-8b-dense-mi300x-decode")

    completed = run_python(["-m", "jarvis_moe", "--output-dir", str(output_dir)], cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("moe_fused: NO_DATA")
    assert len(completed.stdout.splitlines()) == 1
    findings = (output_dir / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "No MoE operations detected in this trace." in findings
