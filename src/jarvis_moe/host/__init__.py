"""The Jarvis host: hook markers only, so plugins import them without cycles.

A plugin writes ``from jarvis_moe.host import hookimpl`` and decorates its
``jarvis_register_categories`` implementation with it.
"""

import pluggy

PROJECT_NAME = "jarvis"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]
