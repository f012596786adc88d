"""Hook specifications of the Jarvis host (pluggy project name ``jarvis``)."""

from __future__ import annotations

from typing import Callable

from jarvis_host import hookspec


@hookspec
def jarvis_register_categories(register: Callable[..., None]) -> None:
    """Register the analysis categories this plugin provides.

    :param register: call it once per category with keyword arguments:
        ``name`` (str), ``description`` (str), ``inputs`` and ``outputs``
        (paths relative to the output directory), ``analyse`` (a callable
        ``(output_dir, *, scope, options)`` returning an object with
        ``status`` ("OK", "NO_DATA" or "ERROR"), ``message``, ``outputs``,
        ``warnings`` and ``internal_error``), and optionally ``enabled``
        (bool, default True) and ``options`` (the default options). A plugin
        needs no import from the host to do this. The host records which
        distribution registered the category and rejects a name that another
        plugin already claimed.
    :return: nothing; results go through ``register``.
    """
