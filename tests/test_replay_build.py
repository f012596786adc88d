"""The replay script is one file for the user, built from small modules: the build is exact and stable.

``jarvis_moe.replay.build`` joins the modules of ``replay/script/`` into the
script a run writes. These tests hold the build to what it promises: the
written script is the build's output byte for byte, the same on every run,
every name is defined once, and the built file behaves as the modules do.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from jarvis_moe.replay.build import ORDER, build_script
from jarvis_moe.replay.script import cli
from jarvis_moe.run import analyse
from samples import FIXTURES, GPT_OSS_DECODE

SCRIPT_DIR = resources.files("jarvis_moe.replay.script")
STDLIB = set(sys.stdlib_module_names)


def test_the_written_script_is_the_build_byte_for_byte_and_stable(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    analyse(out, category="moe_unfused", options={"roofline_plot": False})
    written = (out / "category_findings" / "moe_unfused_replay.py").read_bytes()
    assert written == build_script() == build_script()
    analyse(out, category="moe_unfused", options={"roofline_plot": False})
    assert (out / "category_findings" / "moe_unfused_replay.py").read_bytes() == written


def test_every_module_is_in_the_build_once_and_imports_only_the_standard_library_and_its_siblings():
    modules = sorted(p.name[:-3] for p in SCRIPT_DIR.iterdir() if p.name.endswith(".py") and p.name != "__init__.py")
    assert sorted(ORDER) == modules
    for name in ORDER:
        tree = ast.parse(SCRIPT_DIR.joinpath(f"{name}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in STDLIB for a in node.names), (name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] in STDLIB | {"__future__"}, (name, node.module)
            elif isinstance(node, ast.ImportFrom):
                assert ORDER.index(node.module or "") < ORDER.index(name), f"{name} imports a later module"


def test_every_top_level_name_of_the_built_script_is_defined_once():
    tree = ast.parse(build_script().decode("utf-8"))
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    names += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert not [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level]


def test_the_built_script_and_the_modules_plan_the_same(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / GPT_OSS_DECODE, out)
    analyse(out, category="moe_unfused", options={"roofline_plot": False})
    spec = out / "category_data" / "moe_unfused_replay.json"
    args = ["--dry-run", "--json", "--spec", str(spec)]
    built = subprocess.run([sys.executable, str(out / "category_findings" / "moe_unfused_replay.py"), *args],
                           capture_output=True, text=True, timeout=60, check=True)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(args) == 0
    assert json.loads(buffer.getvalue()) == json.loads(built.stdout)
    assert len(json.loads(built.stdout)["cases"]) == 2  # the fixture's two MXFP4 cases


def test_a_docstring_line_that_looks_like_code_does_not_cut_the_header():
    from jarvis_moe.replay.build import _split

    # "Usage: x" at the start of a line looks like an annotated name; the
    # header parse falls back to the whole text and finds both imports.
    text = '"""Doc.\n\nUsage: x\n"""\nimport os\nfrom .a import b\n\nX = 1\n'
    imports, body = _split(text)
    assert [type(node).__name__ for node in imports] == ["Import", "ImportFrom"]
    assert body == "X = 1"
