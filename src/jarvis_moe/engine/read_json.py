"""Read and validate the two JSON inputs: the metadata and the optional tree data.

A broken metadata file is a ``ContractError`` naming the file and the JSON
path; broken tree data is only a warning, because the file is optional and
the same structure can come from the call stacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jarvis_moe.engine.contract import CategoryPaths, Metadata, TreeEntry, describe_validation_error
from jarvis_moe.errors import ContractError
from jarvis_moe.infile import InputFileError, not_utf8, read_regular

MAX_JSON_BYTES = 32 << 20


def _read_json(path: Path, rel: str) -> Any:
    # Judged on the open file: a device or a pipe (a link to /dev/zero) is never read.
    try:
        raw = read_regular(path, MAX_JSON_BYTES)
    except InputFileError as exc:
        raise ContractError(rel, str(exc)) from None
    except OSError as exc:
        raise ContractError(rel, f"cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ContractError(rel, not_utf8(raw)) from None
    except json.JSONDecodeError as exc:
        raise ContractError(rel, f"is not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ContractError(rel, "is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ContractError(rel, f"is not usable JSON: {str(exc).split(':')[0]}") from None


def load_metadata(paths: CategoryPaths) -> Metadata:
    rel = paths.rel(paths.metadata)
    if paths.metadata.exists() and not paths.metadata.is_file():
        raise ContractError(rel, "is not a regular file")
    if not paths.metadata.is_file():
        raise ContractError(
            rel, "is missing: the ops CSV has rows, so its metadata file is required"
        )
    data = _read_json(paths.metadata, rel)
    if not isinstance(data, dict):
        raise ContractError(rel, f"must hold a JSON object, got {type(data).__name__}")
    try:
        return Metadata.model_validate(data)
    except ValidationError as exc:
        where, problem = describe_validation_error(exc)
        raise ContractError(rel, problem, where) from None


def load_tree(paths: CategoryPaths, warnings: list[str]) -> dict[str, TreeEntry] | None:
    """The optional tree data; a broken file is a warning, never an error."""
    path = paths.tree_data
    if not path.exists() and not path.is_symlink():
        return None
    rel = paths.rel(path)
    try:
        data = _read_json(path, rel)
    except ContractError as exc:
        warnings.append(f"{exc} — tree data ignored (it is optional)")
        return None
    if not isinstance(data, dict):
        warnings.append(f"{rel}: expected a JSON object keyed by event id, got {type(data).__name__}; tree data ignored")
        return None
    tree: dict[str, TreeEntry] = {}
    skipped = 0
    for key, value in data.items():
        try:
            tree[str(key)] = TreeEntry.model_validate(value)
        except ValidationError:
            skipped += 1
    if skipped:
        warnings.append(f"{rel}: {skipped} entr{'y' if skipped == 1 else 'ies'} of the wrong shape ignored")
    return tree


def recorded_ops(paths: CategoryPaths) -> str | None:
    """What the pipeline recorded elsewhere of this category's ops, when it says there are some.

    The category manifest's entry (``ops_count``, ``gpu_kernel_time_ms``) and
    the metadata's ``time_breakdown.gpu_kernel_time_ms``; a file that is
    missing or unreadable records nothing.
    """
    for path, find in ((paths.category_manifest, _manifest_entry), (paths.metadata, _metadata_time)):
        try:
            data = json.loads(read_regular(path, MAX_JSON_BYTES).decode("utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            continue
        said = find(data, paths.category) if isinstance(data, dict) else None
        if said:
            return f"{paths.rel(path)} {said}"
    return None


def _positive(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    return float(value) if ok else None


def _manifest_entry(data: dict, category: str) -> str | None:
    entries = data.get("categories")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == category:
            count, ms = _positive(entry.get("ops_count")), _positive(entry.get("gpu_kernel_time_ms"))
            if count or ms:
                parts = [f"{count:g} op signature(s)" if count else "", f"{ms:g} ms of GPU kernel time" if ms else ""]
                return f"records {' and '.join(p for p in parts if p)} for {category}"
    return None


def _metadata_time(data: dict, category: str) -> str | None:
    breakdown = data.get("time_breakdown")
    ms = _positive(breakdown.get("gpu_kernel_time_ms")) if isinstance(breakdown, dict) else None
    return f"records {ms:g} ms of GPU kernel time for {category}" if ms else None
