"""Exit codes of the host's commands, and ending quietly on a closed pipe or Ctrl-C.

The codes follow the conventions of the tools around the host (pytest for
usage errors, the shell for signals):

====  =====================================================================
0     every category that ran is ``OK`` or ``NO_DATA`` (or was skipped)
1     a category failed internally: a bug (``JARVIS_DEBUG=1`` shows it)
2     a category's input data breaks the contract (``ERROR``)
4     the command was used wrongly: bad arguments, a bad config, a missing
      or wrong output directory, an unknown or disabled category
130   interrupted with Ctrl-C (128 + SIGINT)
141   standard output was closed early, e.g. by ``| head`` (128 + SIGPIPE)
====  =====================================================================
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Callable, NoReturn

OK = 0
INTERNAL_ERROR = 1
BAD_INPUT = 2
USAGE_ERROR = 4
INTERRUPTED = 130
BROKEN_PIPE = 141


def run_quietly(command: Callable[[], int], prog: str) -> int:
    """Run a command, ending without a traceback on Ctrl-C or a closed stdout.

    :param command: the command's body; returns its exit code.
    :param prog: the program name that prefixes the interruption notice.
    :return: the command's exit code, :data:`INTERRUPTED` after Ctrl-C, or
        :data:`BROKEN_PIPE` when the reader of standard output went away.
    """
    try:
        code = command()
        # Flush here: output still buffered at interpreter exit would raise
        # outside this function, where nothing can catch it.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush of what
        # is left in the buffer does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE


def run_process(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` as the whole of a short process and exit with its code.

    A command's objects are mostly the modules its plugins import (polars,
    pydantic and the like), and they live until the process ends. The cyclic
    collector would walk them again and again while they are imported, and
    once more while the interpreter shuts down: about a fifth of a default
    ``jarvis run``. A run makes next to no cyclic garbage (about two thousand
    objects at 100 000 signatures, whatever the row count; reference
    counting frees the rest), so the collector is off for the command and
    what is left is frozen before the interpreter exits, which then skips it.
    Objects in reference cycles are then never finalised: a buffered file
    left open in one would not be flushed, so a command closes the files it
    writes (standard output and error are flushed by the interpreter
    regardless).

    :param main: the command, reading its arguments from ``sys.argv``.
    """
    gc.disable()
    try:
        code = main()
    finally:
        gc.freeze()
    sys.exit(code)
