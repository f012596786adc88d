"""Hook specifications of the Jarvis host (pluggy project name ``jarvis``)."""

from __future__ import annotations

from typing import Callable

from jarvis_moe.host import hookspec
from jarvis_moe.host.category import Category


@hookspec
def jarvis_register_categories(register: Callable[[Category], None]) -> None:
    """Register the analysis categories this plugin provides.

    :param register: call it once per category with a
        :class:`~jarvis_moe.host.category.Category`. The host records which
        distribution registered it and rejects a name that another plugin
        already claimed.
    :return: nothing; results go through ``register``.
    """
