"""The shape of the package: layers, no cycles, small modules, no dead code.

The flow is host → (entry point) → plugin → run → engine → metrics → findings
→ output. The host (``jarvis_host``, a distribution of its own under
``host/``) is checked with the plugin's package. Read statically from the
source, so nothing here depends on what a test happened to import; only the
check of the pydantic models' modules imports the package, to find them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = {ROOT / "src": "jarvis_moe", ROOT / "host" / "src": "jarvis_host"}
# Programs copied verbatim next to the outputs, not modules of the package
# (none: the replay script is built from ordinary modules, jarvis_moe.replay.build).
ARTIFACTS: set[str] = set()
MAX_LINES = 400


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p, src): p for src, package in PACKAGES.items() for p in (src / package).rglob("*.py")}


def imports(name: str) -> set[str]:
    """Modules of the package that ``name`` imports, at any depth of its code."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports(name) for name in MODULES}


def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in GRAPH[node]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_there_is_no_import_cycle():
    cycles = [name for name in MODULES if reaches(name, name)]
    assert cycles == []


def test_the_plugin_needs_no_host():
    assert not any(dep.startswith("jarvis_host") for dep in GRAPH["jarvis_moe.plugin"])
    assert not reaches("jarvis_moe.plugin", "jarvis_host")


def test_the_host_imports_nothing_of_the_plugin():
    # It reaches plugins only through their entry points; another plugin can
    # depend on the host alone.
    host = [name for name in MODULES if name.startswith("jarvis_host")]
    assert "jarvis_host.cli" in host
    for name in host:
        assert not any(dep.startswith("jarvis_moe") for dep in GRAPH[name]), name


def test_the_engine_knows_nothing_of_pages_files_or_hosts():
    for name in MODULES:
        if name.startswith("jarvis_moe.engine"):
            assert not any(dep.startswith(("jarvis_moe.findings", "jarvis_moe.output", "jarvis_host",
                                           "jarvis_moe.run", "jarvis_moe.replay")) for dep in GRAPH[name]), name


def test_the_findings_render_metrics_and_compute_no_figures():
    allowed_engine = {"jarvis_moe.engine.dtypes"}  # labels of the one dtype table
    for name in MODULES:
        if name.startswith("jarvis_moe.findings"):
            engine = {d for d in GRAPH[name] if d.startswith("jarvis_moe.engine")}
            assert engine <= allowed_engine, (name, engine)


def test_no_module_is_over_400_lines_and_each_says_its_job():
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if name not in ARTIFACTS:
            assert len(text.splitlines()) <= MAX_LINES, f"{name} has {len(text.splitlines())} lines"
        doc = ast.get_docstring(ast.parse(text))
        assert doc and len(doc) > 20, f"{name} has no opening comment saying its job"


def used_names(tree: ast.AST) -> set[str]:
    """Names code reads: bare names and attributes (a docstring, a comment or ``__all__`` is no use)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def test_no_function_is_dead():
    """Every top-level function or class is used in code somewhere in the package.

    Entry points the outside calls by name (console scripts, hooks, the
    analyser, the drop-in) are listed; anything else only a test calls is dead.
    Read from the syntax tree, so a mention in a docstring, a comment or
    ``__all__`` does not count as a use.
    """
    entry_points = {"main", "jarvis_register_categories", "analyse", "json_schema", "build_parser"}
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()
             if name not in ARTIFACTS}
    used = set().union(*(used_names(tree) for tree in trees.values()))
    dead = [f"{name}.{node.name}" for name, tree in trees.items() for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name not in entry_points
            and node.name not in used]
    assert dead == []


def test_a_name_only_in_a_docstring_or_all_is_not_a_use():
    tree = ast.parse('"""See helper()."""\n__all__ = ["helper"]\n# helper\nx = other.helper_two\n')
    assert used_names(tree) == {"other", "helper_two"}


def test_modules_that_define_models_give_pydantic_real_annotations():
    # With ``from __future__ import annotations`` every field's annotation is a
    # string that pydantic evaluates when the class is made: 10 ms of each run
    # over the package's forty models (43 ms against 33 ms).
    import importlib

    import pydantic

    for name in MODULES:
        if not name.startswith("jarvis_moe.replay.script"):
            importlib.import_module(name)
    models, todo = set(), [pydantic.BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__ in MODULES:
                models.add(sub.__module__)
    assert {"jarvis_moe.metrics", "jarvis_moe.engine.contract", "jarvis_moe.options"} <= models
    future = [name for name in sorted(models)
              if any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                     for n in ast.parse(MODULES[name].read_text(encoding="utf-8")).body)]
    assert not future, f"drop 'from __future__ import annotations' from {future}"
