"""The metrics JSON has a published schema, generated from its models, that every output meets.

The schema ships in the package (``jarvis_moe/schema/metrics.schema.json``)
and in ``docs/``; downstream tools validate metrics files with it. The
validator here is an independent JSON Schema implementation, not pydantic.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from jarvis_moe.metrics import json_schema
from jarvis_moe.run import analyse
from samples import FIXTURES

DOCS = Path(__file__).parents[1] / "docs" / "metrics.schema.json"
SHIPPED = json.loads(resources.files("jarvis_moe").joinpath("schema/metrics.schema.json").read_text("utf-8"))
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "metadata").is_dir())


def test_the_shipped_schema_is_generated_from_the_models():
    regenerate = "regenerate with: python -m jarvis_moe.metrics > src/jarvis_moe/schema/metrics.schema.json"
    assert SHIPPED == json_schema(), regenerate
    assert json.loads(DOCS.read_text(encoding="utf-8")) == SHIPPED, "copy the schema to docs/ too"
    jsonschema.Draft202012Validator.check_schema(SHIPPED)


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("category", ["moe_fused", "moe_unfused"])
def test_every_fixture_metrics_file_meets_the_schema(tmp_path, folder, category):
    out = tmp_path / folder
    shutil.copytree(FIXTURES / folder, out)
    scope = "comparative" if folder.endswith("vs-faster") and category == "moe_fused" else "standalone"
    analyse(out, category=category, scope=scope, options={"roofline_plot": False})
    data = json.loads((out / "category_data" / f"{category}_metrics.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, SHIPPED, cls=jsonschema.Draft202012Validator)
    has_rows = (FIXTURES / folder / "category_data" / f"{category}_ops.csv").is_file()
    assert data["status"] == ("OK" if has_rows else "NO_DATA")


def test_an_error_metrics_file_meets_the_schema(tmp_path):
    out = tmp_path / "broken"
    shutil.copytree(FIXTURES / "synthetic-mixtral-decode-bf16", out)
    (out / "metadata" / "moe_fused_metadata.json").write_text("{", encoding="utf-8")
    analyse(out, category="moe_fused")
    data = json.loads((out / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    assert data["status"] == "ERROR"
    jsonschema.validate(data, SHIPPED, cls=jsonschema.Draft202012Validator)


def test_the_schema_rejects_a_renamed_field(tmp_path):
    out = tmp_path / "x"
    shutil.copytree(FIXTURES / "synthetic-mixtral-decode-bf16", out)
    analyse(out, category="moe_fused", options={"roofline_plot": False})
    data = json.loads((out / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    data["operations"][0]["efficiency"]["efficiency_pct"] = data["operations"][0]["efficiency"].pop(
        "efficiency_percent")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SHIPPED, cls=jsonschema.Draft202012Validator)
