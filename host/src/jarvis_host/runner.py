"""Running categories over one analysis output directory.

The runner decides the comparison scope, runs every selected and enabled
category, and turns their results into one exit code (see
:mod:`~jarvis_host.exits`):

- 1 when any category failed internally (a bug: the result says so),
- else 2 when any category reported bad input (``ERROR``),
- else 0 (every category ``OK``, ``NO_DATA`` or skipped).

A bug outranks bad input because it is the one the user cannot fix. A
request the runner cannot carry out (:class:`UsageError`) is exit code 4.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from jarvis_host import exits, warn_stderr
from jarvis_host.category import SCOPES, Category, CategoryResult, Status
from jarvis_host.config import CategorySettings
from jarvis_host.tomlcheck import NotRegularFile, read_regular

CATEGORY_MANIFEST = Path("category_data") / "category_manifest.json"
DEFAULT_SCOPE = "standalone"
DEBUG_ENV = "JARVIS_DEBUG"
# The pipeline's manifest is a few kilobytes; anything far larger is not one.
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class UsageError(ValueError):
    """A request the runner cannot carry out as given (exit code 4)."""


class CategoryOutcome(NamedTuple):
    """One category's line of a run: its result, or why it did not run."""

    name: str
    result: CategoryResult | None
    skipped_reason: str = ""
    note: str = ""

    @property
    def exit_code(self) -> int:
        return exits.OK if self.result is None else self.result.exit_code

    def as_json(self) -> dict[str, object]:
        """This outcome as plain data for ``jarvis run --json``."""
        result = self.result
        return {
            "name": self.name,
            "status": "SKIPPED" if result is None else result.status.value,
            "message": self.skipped_reason if result is None else " ".join(result.message.split()),
            "internal_error": result is not None and result.internal_error,
            "exit_code": self.exit_code,
            "outputs": [] if result is None else [str(path) for path in result.outputs],
            "warnings": [] if result is None else [" ".join(w.split()) for w in result.warnings],
            "note": self.note,
        }

    def summary(self) -> str:
        """One human-readable line: ``moe_fused: NO_DATA - <message>``."""
        if self.result is None:
            return f"{self.name}: skipped ({self.skipped_reason})"
        text = f"{self.name}: {self.result.status.value}"
        if self.result.internal_error:
            text += " (internal error)"
        # Messages may quote input text; one category must stay one line.
        message = " ".join(self.result.message.split())
        return f"{text} - {message}" if message else text


def resolve_scope(output_dir: Path, explicit: str | None = None,
                  warn: Callable[[str], None] = warn_stderr) -> str:
    """Decide whether the run is standalone or comparative.

    :param output_dir: the analysis output directory.
    :param explicit: the scope asked for on the command line, if any.
    :param warn: receives a message when the recorded scope is unusable.
    :return: ``explicit`` when given; else ``comparison_scope`` from
        ``category_data/category_manifest.json``; else ``"standalone"``.
    :raises UsageError: when ``explicit`` is not a known scope.
    """
    if explicit is not None:
        if explicit not in SCOPES:
            raise UsageError(f"unknown comparison scope {explicit!r} (choose {' or '.join(SCOPES)})")
        return explicit
    path = Path(output_dir) / CATEGORY_MANIFEST
    # The manifest belongs to the pipeline, not to us: when it is absent or
    # unreadable the run still goes ahead with the default scope.
    try:
        data = json.loads(read_regular(path, _MAX_MANIFEST_BYTES).decode("utf-8-sig"))
    except FileNotFoundError:
        return DEFAULT_SCOPE
    except NotRegularFile as exc:
        warn(f"{path}: {exc}; using {DEFAULT_SCOPE} scope")
        return DEFAULT_SCOPE
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        warn(f"{path}: unreadable ({type(exc).__name__}); using {DEFAULT_SCOPE} scope")
        return DEFAULT_SCOPE
    if not isinstance(data, dict) or "comparison_scope" not in data:
        return DEFAULT_SCOPE
    scope = data["comparison_scope"]
    if scope not in SCOPES:
        shown = repr(scope)[:60]
        warn(f"{path}: comparison_scope {shown} is not one of {', '.join(SCOPES)}; "
             f"using {DEFAULT_SCOPE} scope")
        return DEFAULT_SCOPE
    return scope


def check_output_dir(output_dir: Path) -> Path:
    """Make sure the output directory exists and is one the pipeline wrote.

    :param output_dir: the directory given by the user.
    :return: the same path.
    :raises UsageError: when it does not exist, is not a directory, or has
        neither ``category_data/`` nor ``metadata/`` (a wrong path: running
        there would report every category missing and create folders in it).
    """
    path = Path(output_dir)
    if not path.exists():
        raise UsageError(f"output directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise UsageError(f"output directory {str(path)!r} is not a directory")
    if not (path / "category_data").is_dir() and not (path / "metadata").is_dir():
        raise UsageError(f"{str(path)!r} has neither category_data/ nor metadata/: it is not an analysis "
                         "output directory of the pipeline (check the path)")
    return path


def select_categories(categories: Mapping[str, Category], names: Sequence[str] | None) -> list[str]:
    """Check the requested category names.

    :param categories: the registered categories by name.
    :param names: the names asked for; empty or ``None`` means all of them.
    :return: the names to consider, sorted, without duplicates.
    :raises UsageError: naming the unknown names and listing the known ones.
    """
    if not names:
        return sorted(categories)
    unknown = [name for name in dict.fromkeys(names) if name not in categories]
    if unknown:
        known = ", ".join(sorted(categories)) or "none (no plugin registered a category)"
        raise UsageError(f"unknown category {', '.join(map(repr, unknown))} (known: {known})")
    return sorted(set(names))


def run_category(category: Category, output_dir: Path, scope: str,
                 options: Mapping[str, object]) -> CategoryResult:
    """Run one category's analyser; never raises for an analyser failure.

    :param category: the category to run.
    :param output_dir: the analysis output directory.
    :param scope: ``"standalone"`` or ``"comparative"``.
    :param options: the category's merged options.
    :return: the analyser's result, or an internal ``ERROR`` result when the
        analyser raised or returned something that is not a result.
    """
    owner = f"{category.plugin} {category.version}".strip() or "unknown plugin"
    try:
        returned = category.analyse(output_dir, scope=scope, options=dict(options))
    except Exception as exc:
        # A plugin bug must not take the other categories down with it.
        # JARVIS_DEBUG asks for the traceback a bug report needs.
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc(file=sys.stderr)
        return CategoryResult(Status.ERROR, f"internal error in {owner}: {type(exc).__name__}: {exc}",
                              internal_error=True)
    try:
        return CategoryResult.from_returned(returned)
    except Exception as exc:
        # It ran, but returned nothing the host can read: a plugin bug too.
        # Kept apart from the call above so that a TypeError raised inside
        # the analyser is still named and traced like any other exception.
        detail = str(exc) if isinstance(exc, TypeError) else f"{type(exc).__name__}: {exc}"
        return CategoryResult(Status.ERROR, f"internal error in {owner}: {detail}", internal_error=True)


def run_categories(
    output_dir: Path,
    categories: Mapping[str, Category],
    settings: Mapping[str, CategorySettings],
    *,
    names: Sequence[str] | None = None,
    scope: str | None = None,
    run_disabled: bool = False,
    warn: Callable[[str], None] = warn_stderr,
) -> list[CategoryOutcome]:
    """Run the selected categories over one output directory.

    :param output_dir: the analysis output directory; must exist.
    :param categories: the registered categories by name.
    :param settings: their resolved settings (see ``config.resolve_settings``).
    :param names: categories to run; empty or ``None`` means all.
    :param scope: the comparison scope; ``None`` reads it from the directory.
    :param run_disabled: run selected categories even when disabled (an
        explicit request, as from ``--category``); their outcome notes it.
    :param warn: receives warnings about the directory's manifest.
    :return: one outcome per selected category, sorted by name.
    :raises UsageError: for a missing directory, an unknown category or scope.
    """
    output_dir = check_output_dir(output_dir)
    selected = select_categories(categories, names)
    resolved_scope = resolve_scope(output_dir, scope, warn)
    outcomes: list[CategoryOutcome] = []
    for name in selected:
        setting = settings[name]
        if not setting.enabled and not run_disabled:
            outcomes.append(CategoryOutcome(name, None, f"disabled by {setting.enabled_source}"))
            continue
        note = "" if setting.enabled else f"disabled by {setting.enabled_source}, run because it was named"
        result = run_category(categories[name], output_dir, resolved_scope, setting.options)
        outcomes.append(CategoryOutcome(name, result, note=note))
    return outcomes


def exit_code(outcomes: Iterable[CategoryOutcome]) -> int:
    """The process exit code of a run.

    :param outcomes: the outcomes of :func:`run_categories`.
    :return: 1 if any category failed internally, else 2 if any reported bad
        input, else 0.
    """
    codes = {outcome.exit_code for outcome in outcomes}
    if exits.INTERNAL_ERROR in codes:
        return exits.INTERNAL_ERROR
    return exits.BAD_INPUT if exits.BAD_INPUT in codes else exits.OK


def report(outcomes: Sequence[CategoryOutcome], prog: str = "jarvis", *, as_json: bool = False) -> int:
    """Print a run on stdout, and its notes and warnings on stderr.

    :param outcomes: the outcomes of :func:`run_categories`.
    :param prog: program name that prefixes notes and warnings.
    :param as_json: print nothing on stdout (the caller prints a JSON summary);
        stderr gets the same lines either way.
    :return: the exit code of the run (see :func:`exit_code`).
    """
    for outcome in outcomes:
        if not as_json:
            print(outcome.summary())
            for path in outcome.result.outputs if outcome.result is not None else ():
                print(f"    wrote {path}")
        if outcome.note:
            print(f"{prog}: note: {outcome.name}: {outcome.note}", file=sys.stderr)
        for warning in outcome.result.warnings if outcome.result is not None else ():
            print(f"{prog}: warning: {outcome.name}: {' '.join(warning.split())}", file=sys.stderr)
    code = exit_code(outcomes)
    if code == exits.INTERNAL_ERROR and not os.environ.get(DEBUG_ENV):
        print(f"{prog}: a category failed with an internal error (a bug, not your data); "
              f"rerun with {DEBUG_ENV}=1 to print its traceback for a bug report", file=sys.stderr)
    return code
