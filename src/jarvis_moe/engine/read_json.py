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

MAX_JSON_BYTES = 32 << 20


def _read_json(path: Path, rel: str) -> Any:
    # A device or a pipe (a link to /dev/zero) would be read forever.
    if not path.is_file():
        raise ContractError(rel, "is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ContractError(rel, f"is {size} bytes, more than the {MAX_JSON_BYTES} accepted")
        raw = path.read_bytes()
    except OSError as exc:
        raise ContractError(rel, f"cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ContractError(rel, "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ContractError(rel, f"is not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ContractError(rel, "is not usable JSON: nested too deeply") from None


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
