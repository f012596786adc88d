"""The replay script as the user gets it: one file, built from the modules of ``replay/script/``.

The script must run alone on a GPU machine (Python and the standard library
until a case runs), so it cannot import this package. Its source is kept in
small modules; this builder joins them in a fixed order into one text: a
shebang, the package docstring as the script's docstring, the standard
library imports of every module merged and sorted, then each module's body
(everything after its imports) in ``ORDER``. Imports between the modules
(``from .x import y``) are dropped, since every name then lives in the one
file. The result depends only on the module sources, so it is byte-identical
from run to run.
"""

from __future__ import annotations

import ast
import re
from importlib import resources

# Dependency order: a module's body only uses names of the modules before it
# at call time, and the command line comes last.
ORDER = ("casespec", "plan", "tiles", "routing", "backends", "weights", "libraries", "kernels", "timing", "compare",
         "report", "cli")


# The first top-level line that is neither the docstring nor an import: the
# modules keep their imports above it, so only the text before it is parsed.
_FIRST_DEFINITION = re.compile(r"^(?:def |class |async def |@|[A-Za-z_][A-Za-z0-9_]*\s*[:=(\[])", re.M)


def _split(text: str) -> tuple[list[ast.stmt], str]:
    """(the top-level import statements, the body after them) of one module's source."""
    first = _FIRST_DEFINITION.search(text)
    try:
        tree = ast.parse(text[: first.start()] if first else text)
    except SyntaxError:  # the match fell inside the docstring: parse it all
        tree = ast.parse(text)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    end = max(node.end_lineno or node.lineno for node in imports) if imports else 1
    body = "\n".join(text.splitlines()[end:]).strip("\n")
    return imports, body


def _import_lines(nodes: list[ast.stmt]) -> list[str]:
    """One ``import x`` per module and one merged ``from x import a, b`` per package, sorted."""
    plain: set[str] = set()
    named: dict[str, set[str]] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            plain |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            named.setdefault(node.module or "", set()).update(alias.name for alias in node.names)
    return [f"import {name}" for name in sorted(plain)] + [
        f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(named.items())]


def build_script() -> bytes:
    """The one-file replay script, from the modules in ``ORDER``."""
    package = resources.files("jarvis_moe.replay.script")
    doc = ast.get_docstring(ast.parse(package.joinpath("__init__.py").read_text(encoding="utf-8")), clean=False)
    imports: list[ast.stmt] = []
    bodies = []
    for name in ORDER:
        nodes, body = _split(package.joinpath(f"{name}.py").read_text(encoding="utf-8"))
        imports += nodes
        bodies.append(f"# --- {name} " + "-" * (74 - len(name)) + "\n\n\n" + body)
    head = f'#!/usr/bin/env python3\n"""{doc}"""\n\nfrom __future__ import annotations\n\n'
    text = head + "\n".join(_import_lines(imports)) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
    return text.encode("utf-8")
