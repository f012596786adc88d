"""jarvis-host, the reference Jarvis host: hook markers, plugin discovery, user config, the ``jarvis`` command.

A distribution of its own: it knows plugins only through their entry points
(group ``jarvis``), so any plugin can depend on it alone. The real pipeline
can replace it without touching any plugin: a plugin implements
``jarvis_register_categories`` with its own ``pluggy.HookimplMarker("jarvis")``
(or imports :data:`hookimpl` from here, as a convenience) and needs nothing
else from this package.
"""

import sys

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "jarvis"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


def warn_stderr(message: str) -> None:
    """A host warning on standard error, prefixed with the command's name."""
    print(f"{PROJECT_NAME}: warning: {message}", file=sys.stderr)


__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec", "warn_stderr"]
