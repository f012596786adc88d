"""The two ways a category run can fail, kept apart because they exit differently.

``ContractError`` is bad input (exit 2): the message names the file, where in
it, and what was expected. ``OutputError`` is an output directory the run
cannot write into (also exit 2: the user has to fix the directory). Anything
else that escapes the engine is a bug (exit 1).
"""

from __future__ import annotations


class ContractError(Exception):
    """Input that breaks the category's input contract.

    :param file: the file, relative to the output directory when possible.
    :param problem: what is wrong, in plain words.
    :param location: row and column, or a JSON path, when known.
    """

    def __init__(self, file: str, problem: str, location: str | None = None) -> None:
        self.file = file
        self.problem = problem
        self.location = location
        where = f" ({location})" if location else ""
        super().__init__(f"{file}{where}: {problem}")


class OutputError(Exception):
    """The output directory cannot take the category's outputs."""
