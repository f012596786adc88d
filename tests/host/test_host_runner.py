"""The runner: comparison scope, category selection, disabled categories,
analyser failures and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pytest

from jarvis_moe.host.category import Category, CategoryResult, Status
from jarvis_moe.host.config import CategorySettings, resolve_settings
from jarvis_moe.host.runner import (
    CategoryOutcome,
    UsageError,
    exit_code,
    resolve_scope,
    run_categories,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """An analyse callable that records its calls and returns a fixed result."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[Path, str, dict[str, Any]]] = []

    def __call__(self, output_dir: Path, *, scope: str, options: Mapping[str, Any]) -> Any:
        self.calls.append((output_dir, scope, dict(options)))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def category(name: str, analyse: Any, enabled: bool = True) -> Category:
    return Category(name=name, description=name, inputs=(), outputs=(f"{name}.md",),
                    analyse=analyse, enabled_by_default=enabled, default_options={"limit": 5},
                    plugin="demo-plugin", version="1.0")


def write_manifest(directory: Path, content: Any) -> None:
    (directory / "category_data").mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / "category_data" / "category_manifest.json").write_text(text, encoding="utf-8")


def test_scope_recorded_by_the_pipeline_is_used():
    directory = REPO_ROOT / "tests" / "fixtures" / "synthetic-mixtral-decode-bf16-vs-faster"

    assert resolve_scope(directory) == "comparative"


def test_explicit_scope_wins_over_the_recorded_one(tmp_path):
    write_manifest(tmp_path, {"comparison_scope": "comparative"})

    assert resolve_scope(tmp_path, "standalone") == "standalone"


def test_missing_manifest_means_standalone_without_warning(tmp_path, warnings_seen):
    assert resolve_scope(tmp_path, warn=warnings_seen.append) == "standalone"
    assert warnings_seen == []


@pytest.mark.parametrize(("content", "warning"), [
    ("{not json", "unreadable (JSONDecodeError)"),
    ({"comparison_scope": "sideways"}, "comparison_scope 'sideways' is not one of"),
    ({"comparison_scope": ["comparative"]}, "comparison_scope ['comparative'] is not one of"),
])
def test_unusable_recorded_scope_falls_back_to_standalone_with_a_warning(tmp_path, warnings_seen,
                                                                         content, warning):
    write_manifest(tmp_path, content)

    assert resolve_scope(tmp_path, warn=warnings_seen.append) == "standalone"
    assert len(warnings_seen) == 1 and warning in warnings_seen[0]


def test_manifest_without_scope_key_means_standalone(tmp_path, warnings_seen):
    write_manifest(tmp_path, [1, 2, 3])

    assert resolve_scope(tmp_path, warn=warnings_seen.append) == "standalone"
    assert warnings_seen == []


def test_every_enabled_category_runs_with_its_options_and_scope(tmp_path):
    first, second = Recorder(CategoryResult(Status.OK, "done")), Recorder(CategoryResult(Status.NO_DATA))
    categories = {"b_cat": category("b_cat", second), "a_cat": category("a_cat", first)}
    write_manifest(tmp_path, {"comparison_scope": "comparative"})

    outcomes = run_categories(tmp_path, categories, resolve_settings(categories, None))

    assert [o.name for o in outcomes] == ["a_cat", "b_cat"]
    assert first.calls == [(tmp_path, "comparative", {"limit": 5})]
    assert [o.summary() for o in outcomes] == ["a_cat: OK - done", "b_cat: NO_DATA"]
    assert exit_code(outcomes) == 0


def test_disabled_category_is_skipped_and_says_by_what(tmp_path):
    analyse = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", analyse)}
    settings = {"a_cat": CategorySettings(False, "config: /home/me/jarvis.toml", {})}

    outcomes = run_categories(tmp_path, categories, settings, names=["a_cat"])

    assert analyse.calls == []
    assert outcomes[0].summary() == "a_cat: skipped (disabled by config: /home/me/jarvis.toml)"
    assert exit_code(outcomes) == 0


def test_disabled_category_runs_when_explicitly_requested(tmp_path):
    analyse = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", analyse, enabled=False)}

    run_categories(tmp_path, categories, resolve_settings(categories, None), run_disabled=True)

    assert len(analyse.calls) == 1


def test_only_the_named_categories_run(tmp_path):
    chosen, other = Recorder(CategoryResult(Status.OK)), Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", chosen), "b_cat": category("b_cat", other)}

    outcomes = run_categories(tmp_path, categories, resolve_settings(categories, None),
                              names=["a_cat", "a_cat"])

    assert [o.name for o in outcomes] == ["a_cat"]
    assert len(chosen.calls) == 1 and other.calls == []


def test_unknown_category_is_an_error_listing_known_names(tmp_path):
    categories = {"a_cat": category("a_cat", Recorder(None)), "b_cat": category("b_cat", Recorder(None))}

    with pytest.raises(UsageError, match=r"unknown category 'c_cat' \(known: a_cat, b_cat\)"):
        run_categories(tmp_path, categories, resolve_settings(categories, None), names=["c_cat"])


def test_missing_output_directory_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        run_categories(tmp_path / "nope", {}, {})


def test_output_directory_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("", encoding="utf-8")

    with pytest.raises(UsageError, match="is not a directory"):
        run_categories(tmp_path / "file", {}, {})


def test_analyser_that_raises_becomes_an_internal_error_and_others_still_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JARVIS_DEBUG", "1")
    healthy = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", Recorder(KeyError("oops"))), "b_cat": category("b_cat", healthy)}

    outcomes = run_categories(tmp_path, categories, resolve_settings(categories, None))

    assert outcomes[0].result.internal_error
    assert outcomes[0].summary() == (
        "a_cat: ERROR (internal error) - internal error in demo-plugin 1.0: KeyError: 'oops'")
    assert len(healthy.calls) == 1
    assert exit_code(outcomes) == 1
    assert "Traceback" in capsys.readouterr().err


def test_status_line_stays_one_line_whatever_the_message(tmp_path):
    message = "bad column 'x\nmoe_unfused: OK'\r\n in ops.csv"
    categories = {"a_cat": category("a_cat", Recorder(CategoryResult(Status.ERROR, message)))}

    outcomes = run_categories(tmp_path, categories, resolve_settings(categories, None))

    assert outcomes[0].summary() == "a_cat: ERROR - bad column 'x moe_unfused: OK' in ops.csv"
    assert exit_code(outcomes) == 2


def test_analyser_returning_something_else_is_an_internal_error(tmp_path):
    categories = {"a_cat": category("a_cat", Recorder("OK"))}

    outcomes = run_categories(tmp_path, categories, resolve_settings(categories, None))

    assert outcomes[0].result.internal_error
    assert "returned str, not a CategoryResult" in outcomes[0].result.message


OK = CategoryResult(Status.OK)
NO_DATA = CategoryResult(Status.NO_DATA)
BAD_INPUT = CategoryResult(Status.ERROR, "bad csv")
BUG = CategoryResult(Status.ERROR, "bug", internal_error=True)


@pytest.mark.parametrize(("results", "expected"), [
    ([], 0),
    ([OK, NO_DATA, None], 0),
    ([OK, BAD_INPUT], 2),
    ([BAD_INPUT, BUG], 1),
    ([NO_DATA, BUG], 1),
])
def test_exit_code_is_one_for_bugs_then_two_for_bad_input_else_zero(results, expected):
    outcomes = [CategoryOutcome(f"cat{i}", result, "disabled") for i, result in enumerate(results)]

    assert exit_code(outcomes) == expected
