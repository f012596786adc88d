"""The runner: comparison scope, category selection, disabled categories,
analyser failures and exit codes."""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import pytest

from jarvis_moe import run
from jarvis_host.category import Category, CategoryResult, Status
from jarvis_host.config import CategorySettings, resolve_settings
from jarvis_host.runner import (
    CategoryOutcome,
    UsageError,
    exit_code,
    check_output_dir,
    resolve_scope,
    run_categories,
)

from .helpers import make_output_dir, tree

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


def test_disabled_category_is_skipped_and_says_by_what(output_dir):
    analyse = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", analyse)}
    settings = {"a_cat": CategorySettings(False, "config: /home/me/jarvis.toml", {})}

    outcomes = run_categories(output_dir, categories, settings, names=["a_cat"])

    assert analyse.calls == []
    assert outcomes[0].summary() == "a_cat: skipped (disabled by config: /home/me/jarvis.toml)"
    assert exit_code(outcomes) == 0


def test_disabled_category_runs_when_explicitly_requested(output_dir):
    analyse = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", analyse, enabled=False)}

    run_categories(output_dir, categories, resolve_settings(categories, None), run_disabled=True)

    assert len(analyse.calls) == 1


def test_only_the_named_categories_run(output_dir):
    chosen, other = Recorder(CategoryResult(Status.OK)), Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", chosen), "b_cat": category("b_cat", other)}

    outcomes = run_categories(output_dir, categories, resolve_settings(categories, None),
                              names=["a_cat", "a_cat"])

    assert [o.name for o in outcomes] == ["a_cat"]
    assert len(chosen.calls) == 1 and other.calls == []


def test_unknown_category_is_an_error_listing_known_names(output_dir):
    categories = {"a_cat": category("a_cat", Recorder(None)), "b_cat": category("b_cat", Recorder(None))}

    with pytest.raises(UsageError, match=r"unknown category 'c_cat' \(known: a_cat, b_cat\)"):
        run_categories(output_dir, categories, resolve_settings(categories, None), names=["c_cat"])


def test_missing_output_directory_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        run_categories(tmp_path / "nope", {}, {})


def test_output_directory_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("", encoding="utf-8")

    with pytest.raises(UsageError, match="is not a directory"):
        run_categories(tmp_path / "file", {}, {})


def test_analyser_that_raises_becomes_an_internal_error_and_others_still_run(output_dir, capsys, monkeypatch):
    monkeypatch.setenv("JARVIS_DEBUG", "1")
    healthy = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", Recorder(KeyError("oops"))), "b_cat": category("b_cat", healthy)}

    outcomes = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert outcomes[0].result.internal_error
    assert outcomes[0].summary() == (
        "a_cat: ERROR (internal error) - internal error in demo-plugin 1.0: KeyError: 'oops'")
    assert len(healthy.calls) == 1
    assert exit_code(outcomes) == 1
    assert "Traceback" in capsys.readouterr().err


def test_status_line_stays_one_line_whatever_the_message(output_dir):
    message = "bad column 'x\nmoe_unfused: OK'\r\n in ops.csv"
    categories = {"a_cat": category("a_cat", Recorder(CategoryResult(Status.ERROR, message)))}

    outcomes = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert outcomes[0].summary() == "a_cat: ERROR - bad column 'x moe_unfused: OK' in ops.csv"
    assert exit_code(outcomes) == 2


class OtherStatus(enum.Enum):
    """A plugin's own status enum: only its value matters to the host."""

    NO_DATA = "NO_DATA"


@pytest.mark.parametrize(("returned", "expected"), [
    (SimpleNamespace(status="OK", message="plain"), CategoryResult(Status.OK, "plain")),
    (SimpleNamespace(status="ERROR", message="row 3", outputs=["x.md"], warnings=["w"], internal_error=False),
     CategoryResult(Status.ERROR, "row 3", (Path("x.md"),), ("w",))),
    (SimpleNamespace(status=OtherStatus.NO_DATA), CategoryResult(Status.NO_DATA)),
    (run.AnalysisResult(run.Status.ERROR, "bug", internal_error=True),
     CategoryResult(Status.ERROR, "bug", internal_error=True)),
    (CategoryResult(Status.OK, "host type"), CategoryResult(Status.OK, "host type")),
])
def test_analyser_may_return_any_object_with_a_status(output_dir, returned, expected):
    categories = {"a_cat": category("a_cat", Recorder(returned))}

    [outcome] = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert outcome.result == expected
    assert outcome.exit_code == expected.exit_code


@pytest.mark.parametrize("returned", [
    "OK",
    None,
    {"status": "OK"},
    SimpleNamespace(message="no status"),
    SimpleNamespace(status="ok"),
    SimpleNamespace(status="DONE"),
    SimpleNamespace(status=["OK"]),
    SimpleNamespace(status="OK", outputs=5),
])
def test_analyser_returning_garbage_is_an_internal_error_and_others_still_run(output_dir, returned):
    healthy = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", Recorder(returned)), "b_cat": category("b_cat", healthy)}

    outcomes = run_categories(output_dir, categories, resolve_settings(categories, None))

    result = outcomes[0].result
    assert result.status is Status.ERROR and result.internal_error
    assert result.message.startswith("internal error in demo-plugin 1.0: ")
    assert outcomes[0].summary().startswith("a_cat: ERROR (internal error) - ")
    assert outcomes[1].result.status is Status.OK
    assert exit_code(outcomes) == 1


def test_garbage_result_message_names_the_returned_type(output_dir):
    categories = {"a_cat": category("a_cat", Recorder("OK"))}

    [outcome] = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert "returned str without a status of OK, NO_DATA, ERROR" in outcome.result.message


def test_analyser_raising_type_error_is_reported_like_any_other_exception(output_dir, capsys, monkeypatch):
    # A TypeError inside the analyser is a bug like any other: its type is
    # named and JARVIS_DEBUG prints its traceback.
    monkeypatch.setenv("JARVIS_DEBUG", "1")
    categories = {"a_cat": category("a_cat", Recorder(TypeError("unsupported operand")))}

    [outcome] = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert outcome.result.internal_error
    assert outcome.result.message == "internal error in demo-plugin 1.0: TypeError: unsupported operand"
    assert "Traceback" in capsys.readouterr().err


def test_analyser_exception_prints_no_traceback_without_jarvis_debug(output_dir, capsys, monkeypatch):
    monkeypatch.delenv("JARVIS_DEBUG", raising=False)
    categories = {"a_cat": category("a_cat", Recorder(KeyError("oops")))}

    [outcome] = run_categories(output_dir, categories, resolve_settings(categories, None))

    assert outcome.result.internal_error
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("subdirs", [("category_data",), ("metadata",), ("category_data", "metadata")])
def test_output_directory_needs_category_data_or_metadata(tmp_path, subdirs):
    directory = make_output_dir(tmp_path / "out", *subdirs)

    assert check_output_dir(directory) == directory


def test_folder_that_is_not_an_output_directory_is_refused_and_left_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "category_findings").mkdir()
    analyse = Recorder(CategoryResult(Status.OK))
    categories = {"a_cat": category("a_cat", analyse)}

    with pytest.raises(UsageError, match=r"has neither category_data/ nor metadata/.*check the path"):
        run_categories(tmp_path, categories, resolve_settings(categories, None))

    assert analyse.calls == []
    assert tree(tmp_path) == ["category_findings", "notes.txt"]


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


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.symlink_to("/dev/zero"), lambda p: p.mkdir()])
def test_a_category_manifest_that_is_not_a_regular_file_is_never_read(tmp_path, warnings_seen, make):
    (tmp_path / "category_data").mkdir()
    make(tmp_path / "category_data" / "category_manifest.json")

    assert resolve_scope(tmp_path, warn=warnings_seen.append) == "standalone"
    assert len(warnings_seen) == 1 and "is not a regular file" in warnings_seen[0]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"comparison_scope": ' + "1" * 5000 + "}"])
def test_a_category_manifest_too_deep_or_with_huge_numbers_is_unreadable(tmp_path, warnings_seen, text):
    write_manifest(tmp_path, text)

    assert resolve_scope(tmp_path, warn=warnings_seen.append) == "standalone"
    assert len(warnings_seen) == 1 and "unreadable" in warnings_seen[0]
