"""What a plugin hands the host: a category, and what running it returns.

Kept free of heavy imports: the host builds its listing from these objects
without loading any analysis engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Protocol

SCOPES = ("standalone", "comparative")


class Status(str, enum.Enum):
    """Outcome of one category run, as written to its metrics JSON."""

    OK = "OK"
    NO_DATA = "NO_DATA"
    ERROR = "ERROR"


class CategoryResult(NamedTuple):
    """What an analyser returns for one output directory.

    ``internal_error`` separates a bug in the analyser (exit 1) from input
    that breaks the contract (exit 2); both carry ``Status.ERROR``.
    """

    status: Status
    message: str = ""
    outputs: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    internal_error: bool = False

    @property
    def exit_code(self) -> int:
        if self.status is not Status.ERROR:
            return 0
        return 1 if self.internal_error else 2

    @classmethod
    def from_returned(cls, returned: Any) -> "CategoryResult":
        """The host's record of what an analyser returned.

        Plugins return their own plain object (they import nothing from the
        host): anything with a ``status`` of ``OK``/``NO_DATA``/``ERROR``
        (or an enum whose value is one), and optionally ``message``,
        ``outputs``, ``warnings`` and ``internal_error``.

        :raises TypeError: when ``returned`` has no usable status.
        """
        if isinstance(returned, cls):
            return returned
        status = getattr(returned, "status", None)
        status = getattr(status, "value", status)
        try:
            parsed = Status(status)
        except ValueError:
            raise TypeError(f"analyser returned {type(returned).__name__} without a status of "
                            f"{', '.join(s.value for s in Status)}") from None
        return cls(
            parsed, str(getattr(returned, "message", "") or ""),
            tuple(Path(p) for p in getattr(returned, "outputs", ()) or ()),
            tuple(str(w) for w in getattr(returned, "warnings", ()) or ()),
            bool(getattr(returned, "internal_error", False)),
        )


class Analyser(Protocol):
    """The callable a category provides.

    :param output_dir: the analysis output directory the host pipeline wrote.
    :param scope: ``"standalone"`` or ``"comparative"``.
    :param options: the category's options after plugin defaults and user
        config were merged.
    :return: the run's status and the files it wrote.
    """

    def __call__(
        self, output_dir: Path, *, scope: str, options: Mapping[str, Any]
    ) -> CategoryResult: ...


@dataclass(frozen=True)
class Category:
    """One analysis category a plugin provides.

    ``inputs`` and ``outputs`` are paths relative to the output directory.
    ``plugin`` and ``version`` are filled in by the host from the
    distribution that registered the category.
    """

    name: str
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    analyse: Analyser
    enabled_by_default: bool = True
    default_options: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""
    version: str = ""
