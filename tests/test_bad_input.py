"""Every kind of bad input ends in its documented outcome (docs/bad-input.md).

Each case starts from a copy of the synthetic fixture, breaks one thing and
runs the category. Whatever the input, the run must:

- end in the expected status and exit code, with a message that names the
  file (and the row/column or JSON path) for an ERROR, or a warning that
  does for an input that is still usable;
- change nothing on disk but the category's outputs (every other file's
  bytes and mtime, and the directory listing, are compared before and
  after), leave no temporary file, and write outputs that agree with each
  other and pass the findings-format checker.

A subset also runs as ``python -m jarvis_moe`` to prove the exit code and
that no traceback reaches stderr.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import GPT_OSS_DECODE, SYNTHETIC, read_metrics
from samples import conformance_problems
from jarvis_moe.run import analyse

CAT = "moe_fused"
CSV = f"category_data/{CAT}_ops.csv"
META = f"metadata/{CAT}_metadata.json"
TREE = f"category_data/{CAT}_tree_data.json"
METRICS = f"category_data/{CAT}_metrics.json"
FINDINGS = f"category_findings/{CAT}_findings.md"
PLOT = f"category_findings/{CAT}_roofline.svg"
TIME = "Kernel Time (µs)_sum"
# The matrix runs without the roofline chart;
# the command-line cases run with the plugin's defaults, plot included.
NO_PLOT = {"roofline_plot": False}
MARKER = "jarvis-literal-was-executed"


# --- building the inputs ------------------------------------------------------


def category_of(out: Path) -> str:
    """The MoE category of a fixture copy (the gpt-oss ones are unfused)."""
    return "moe_unfused" if out.name == GPT_OSS_DECODE else CAT


def at(out: Path, rel: str) -> Path:
    """``rel`` (written for moe_fused) inside ``out``, for the copy's category."""
    return out / rel.replace(CAT, category_of(out))


def _rows(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with at(out, CSV).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(out: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with at(out, CSV).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _many(out: Path, n: int) -> tuple[list[str], list[dict[str, str]]]:
    """The fixture's row repeated as ``n`` distinct signatures."""
    header, rows = _rows(out)
    base = rows[0]
    many = []
    for i in range(n):
        row = dict(base)
        row["Input Dims"] = base["Input Dims"].replace("(16, 4096)", f"({16 + i}, 4096)", 1)
        row["ex_UID"] = str(1000 + i)
        row[TIME] = f"{100.0 + i:.3f}"
        many.append(row)
    return header, many


def edit(**cells: str) -> Callable[[Path], None]:
    """Set cells of the first (only) data row."""
    def build(out: Path) -> None:
        header, rows = _rows(out)
        rows[0].update(cells)
        _write_rows(out, header, rows)
    return build


def edit_row(n_rows: int, row: int, **cells: str) -> Callable[[Path], None]:
    """Among ``n_rows`` signatures, set cells of data row ``row`` (1-based)."""
    def build(out: Path) -> None:
        header, rows = _many(out, n_rows)
        rows[row - 1].update(cells)
        _write_rows(out, header, rows)
    return build


def rename_column(old: str, new: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        text = at(out, CSV).read_text(encoding="utf-8")
        head, rest = text.split("\n", 1)
        at(out, CSV).write_text(head.replace(old, new) + "\n" + rest, encoding="utf-8")
    return build


def drop_column(name: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        header, rows = _rows(out)
        header.remove(name)
        _write_rows(out, header, [{k: v for k, v in r.items() if k != name} for r in rows])
    return build


def add_columns(**cells: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        header, rows = _rows(out)
        for row in rows:
            row.update(cells)
        _write_rows(out, header + list(cells), rows)
    return build


def raw_csv(transform: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        path = at(out, CSV)
        path.write_bytes(transform(path.read_bytes()))
    return build


def _header_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0] + b"\n"


def _data_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[1]


def cut_in_unread_quoted_cell(out: Path) -> None:
    """The file ends inside the quoted ``trunc_kernel_details`` cell of its last row, a column
    the analysis does not read: the cells it reads are whole."""
    path = at(out, CSV)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    col = rows[0].index("trunc_kernel_details")
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerows(rows[:-1] + [rows[-1][:col]])
    path.write_text(head.getvalue().rstrip("\n") + ',"' + rows[-1][col][:10], encoding="utf-8")


def duplicate_header_column(out: Path) -> None:
    text = at(out, CSV).read_text(encoding="utf-8")
    head, body = text.split("\n", 1)
    lines = [line + ",999" for line in body.splitlines()]
    at(out, CSV).write_text(head + ",GFLOPS\n" + "\n".join(lines) + "\n", encoding="utf-8")


def remove(rel: str) -> Callable[[Path], None]:
    return lambda out: at(out, rel).unlink()


def make_dir_at(rel: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        path = at(out, rel)
        if path.exists():
            path.unlink()
        path.mkdir(parents=True)
    return build


def link(rel: str, target: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        at(out, rel).unlink()
        at(out, rel).symlink_to(target)
    return build


def fifo(rel: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        at(out, rel).unlink()
        os.mkfifo(at(out, rel))
    return build


def write_file(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        path = at(out, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return build


def metadata(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        data = json.loads(at(out, META).read_text(encoding="utf-8"))
        change(data)
        at(out, META).write_text(json.dumps(data), encoding="utf-8")
    return build


def unrecorded(out: Path) -> None:
    """The pipeline records no op of the category: no manifest entry, no kernel time in the metadata."""
    manifest = out / "category_data" / "category_manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["categories"] = [c for c in data["categories"] if c.get("name") != category_of(out)]
    manifest.write_text(json.dumps(data), encoding="utf-8")
    if at(out, META).exists():
        metadata(lambda m: m.pop("time_breakdown", None))(out)


def manifest_entry_removed(out: Path) -> None:
    """Only the metadata's time breakdown still records the category's kernel time."""
    manifest = out / "category_data" / "category_manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["categories"] = [c for c in data["categories"] if c.get("name") != category_of(out)]
    manifest.write_text(json.dumps(data), encoding="utf-8")


def both(*builds: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        for step in builds:
            step(out)
    return build


# --- the matrix ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input and its documented outcome.

    ``file``/``where``/``says`` must appear in the message of an ERROR, or in
    one warning of an OK run; ``warns=False`` asks for no warning at all.
    """

    id: str
    build: Callable[[Path], None]
    status: str
    file: str | None = None
    where: str | None = None
    says: str = ""
    warns: bool | None = None
    cli: bool = False
    check: Callable[[Path, dict], None] | None = field(default=None, compare=False)


def _time_is_unchanged(out: Path, metrics: dict) -> None:
    assert metrics["total_time_ms"] == pytest.approx(34.932, abs=1e-3)
    assert metrics["operations"][0]["name"] == "pseudo_op::moe_aiter_fused_1stage"


def _name_kept(name: str) -> Callable[[Path, dict], None]:
    def verify(out: Path, metrics: dict) -> None:
        assert metrics["operations"][0]["name"] == name
    return verify


def _all_50_rows_counted(out: Path, metrics: dict) -> None:
    # The row with the bad GFLOPS cell is still listed and its time counted.
    assert metrics["operations_total"] == 50
    assert metrics["total_time_ms"] == pytest.approx(sum(100.0 + i for i in range(50)) / 1000, abs=1e-3)
    assert any(op["Input Dims"].startswith("((52, 4096)") for op in metrics["operations"])


def _name_cut(out: Path, metrics: dict) -> None:
    name = metrics["operations"][0]["name"]
    assert name.startswith("pseudo_op::moe_yyy") and len(name) < 1100 and "… [#" in name


ACTING = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _platform_is_plain(out: Path, metrics: dict) -> None:
    # ESC, BEL and the override removed, the line break a space: nothing left acts on a terminal.
    assert metrics["platform"] == "MI300X]0;pwned - forged line"
    assert ACTING.findall(at(out, FINDINGS).read_text(encoding="utf-8")) == []
    replay = at(out, f"category_data/{CAT}_replay.json")
    if replay.exists():
        assert json.loads(replay.read_text(encoding="utf-8"))["platform"]["name"] == metrics["platform"]


def _display_name_is_plain(out: Path, metrics: dict) -> None:
    assert metrics["operations"][0]["display_name"] == "pseudo_op::moe_[31mevil.py"
    assert ACTING.findall(at(out, FINDINGS).read_text(encoding="utf-8")) == []


def blank_lines_between_rows(n_rows: int, row: int, **cells: str) -> Callable[[Path], None]:
    """``n_rows`` signatures with a blank line after every record (and two at the end)."""
    def build(out: Path) -> None:
        edit_row(n_rows, row, **cells)(out)
        data = at(out, CSV).read_bytes()
        at(out, CSV).write_bytes(data.replace(b"\n", b"\n\n") + b"\r\n \n")
    return build


def _shape_unknown(out: Path, metrics: dict) -> None:
    # An implausible size leaves the op without an MoE shape: no figure or replay case is built from it.
    assert metrics["operations"][0].get("moe") is None

    def numbers(node):
        if isinstance(node, dict):
            return [x for v in node.values() for x in numbers(v)]
        if isinstance(node, list):
            return [x for v in node for x in numbers(v)]
        return [node] if isinstance(node, (int, float)) and not isinstance(node, bool) else []

    # The raw 'Input Dims' text keeps the numbers as written; no figure is built from them.
    assert max(abs(x) for x in numbers(metrics)) < 1e15
    assert not at(out, f"category_data/{CAT}_replay.json").exists()


def implausible(**sizes: int) -> Callable[[Path], None]:
    """perf_params and Input Dims both giving the sizes (M, K, N, E, k) with some made implausible."""
    def build(out: Path) -> None:
        m, k, n, e, top = (sizes.get(x, d) for x, d in (("M", 16), ("K", 4096), ("N", 14336), ("E", 8), ("k", 2)))
        params = {"num_tokens": m, "hidden_dim": k, "inter_dim": n, "num_experts": e, "topk": top, "gated": True,
                  "input_dtype": "c10::BFloat16", "weight_dtype": "c10::BFloat16"}
        dims = ((m, k), (e, 2 * n, k), (e, k, n), (m, top), (m, top))
        edit(perf_params=repr(params), **{"Input Dims": repr(dims)})(out)
    return build


def _count_from_mean(out: Path, metrics: dict) -> None:
    # operation_count 0 is refused; the count is then the time sum over the mean time.
    _, rows = _rows(out)
    expected = round(float(rows[0][TIME]) / float(rows[0]["Kernel Time (µs)_mean"]))
    assert metrics["operations"][0]["count"] == expected > 1


def _no_negative_zero(out: Path, metrics: dict) -> None:
    assert metrics["total_time_ms"] == 0
    text = at(out, FINDINGS).read_text(encoding="utf-8") + at(out, METRICS).read_text(encoding="utf-8")
    assert re.search(r"-0(\.0+)?\b", text) is None


LONG = "x" * 5_000_000
DEEP_TUPLE = "(" * 10_000 + ")" * 10_000
DEEP_LIST = "[" * 10_000 + "]" * 10_000
CODE = f"__import__('os').system('touch {MARKER}')"
BASE_META = {"platform": "MI300X", "peak_hbm_bw_tbs": 5.3, "max_achievable_tflops": {"matrix_bf16": 708},
             "gpu_utilization": {"total_time_ms": 39.43}}

CASES = [
    # The category is absent: not an error, unless the pipeline recorded ops of it.
    Case("csv-missing", both(remove(CSV), unrecorded), "NO_DATA", cli=True),
    Case("csv-zero-byte", both(write_file(CSV, b""), unrecorded), "NO_DATA"),
    Case("csv-blank-lines", both(write_file(CSV, b"\n\r\n \n"), unrecorded), "NO_DATA"),
    Case("csv-header-only", both(raw_csv(_header_line), unrecorded), "NO_DATA"),
    Case("csv-header-only-bom-crlf", both(raw_csv(lambda d: b"\xef\xbb\xbf" + _header_line(d)[:-1] + b"\r\n"),
                                          unrecorded), "NO_DATA"),
    Case("csv-header-then-blank-lines", both(raw_csv(lambda d: _header_line(d) + b"\n\n"), unrecorded), "NO_DATA"),
    Case("csv-header-only-no-metadata", both(unrecorded, raw_csv(_header_line), remove(META)), "NO_DATA"),
    Case("csv-missing-but-in-the-manifest", remove(CSV), "ERROR", CSV,
         says="is missing, but category_data/category_manifest.json records", cli=True),
    Case("csv-missing-but-metadata-has-moe-time", both(remove(CSV), manifest_entry_removed), "ERROR", CSV,
         says="is missing, but metadata/"),
    Case("csv-header-only-but-in-the-manifest", raw_csv(_header_line), "ERROR", CSV,
         says="has no data rows, but category_data/category_manifest.json records"),
    Case("csv-zero-byte-but-in-the-manifest", write_file(CSV, b""), "ERROR", CSV, says="has no data rows, but"),
    # The CSV is not one.
    Case("csv-binary", write_file(CSV, bytes(range(256)) * 64), "ERROR", CSV, says="binary data", cli=True),
    Case("csv-no-line-break", write_file(CSV, b"a" * (2 << 20)), "ERROR", CSV, says="no line break in its first MiB"),
    Case("csv-header-cell-200k", raw_csv(lambda d: b"x" * 200_000 + b"," + d), "ERROR", CSV, "header",
         "header row is not valid CSV"),
    Case("csv-one-line-garbage", write_file(CSV, "garbage"), "ERROR", CSV, "header",
         "missing required column 'name'"),
    Case("csv-one-line-garbage-with-line-end", both(write_file(CSV, "hello world\n"), unrecorded), "ERROR", CSV,
         "header", "missing required column 'name'"),
    Case("csv-plain-text", write_file(CSV, "hello\nnot, a, category csv\n"), "ERROR", CSV, "header",
         "missing required column 'name', 'Kernel Time (µs)_sum'"),
    Case("csv-latin1-header", raw_csv(lambda d: d.decode("utf-8").encode("latin-1", "replace")), "ERROR", CSV,
         "header", "not UTF-8 text (it reads as Windows-1252 or Latin-1)"),
    Case("csv-directory", make_dir_at(CSV), "ERROR", CSV, says="is not a regular file"),
    Case("csv-fifo", fifo(CSV), "ERROR", CSV, says="is not a regular file", cli=True),
    Case("csv-utf16", raw_csv(lambda d: d.decode("utf-8").encode("utf-16")), "ERROR", CSV,
         says="is UTF-16 (little-endian) text, not UTF-8"),
    Case("csv-utf16-big-endian-no-bom", raw_csv(lambda d: d.decode("utf-8").encode("utf-16-be")), "ERROR", CSV,
         says="is UTF-16 (big-endian) text, not UTF-8"),
    Case("csv-link-to-dev-zero", link(CSV, "/dev/zero"), "ERROR", CSV, says="is not a regular file"),
    Case("csv-dangling-link", link(CSV, "/nonexistent/ops.csv"), "ERROR", CSV, says="is not a regular file"),
    Case("csv-semicolons", raw_csv(lambda d: d.replace(b",", b";")), "ERROR", CSV, "header",
         "missing required column 'name'"),
    Case("csv-two-files-concatenated", raw_csv(lambda d: d + d), "ERROR", CSV, f"row 2, column '{TIME}'",
         "got 'Kernel Time (µs)_sum'"),
    Case("csv-truncated-in-quoted-cell", raw_csv(lambda d: d[:-200]), "ERROR", CSV, says="looks truncated",
         cli=True),
    Case("csv-truncated-in-unread-quoted-cell", cut_in_unread_quoted_cell, "OK", CSV, "row 1",
         "looks truncated"),
    Case("csv-truncated-mid-row", raw_csv(lambda d: _header_line(d) + _data_line(d)[:300]), "ERROR", CSV,
         f"row 1, column '{TIME}'", "got ''"),
    Case("csv-ragged-long-row", raw_csv(lambda d: d + _data_line(d).rstrip(b"\n") + b",extra\n"), "ERROR", CSV,
         "row 2", "more cells than the 54 of the header"),
    Case("csv-ragged-short-row", raw_csv(lambda d: d + b"pseudo_op::moe_x,MoE_fused,python3\n"), "ERROR", CSV,
         f"row 2, column '{TIME}'", "got ''"),
    # Missing required columns.
    Case("csv-no-name-column", drop_column("name"), "ERROR", CSV, "header", "missing required column 'name'"),
    Case("csv-no-time-column", drop_column(TIME), "ERROR", CSV, "header", f"missing required column '{TIME}'"),
    # The time sum: every share of time depends on it, so any bad cell fails the run.
    Case("time-text", edit(**{TIME: "fast"}), "ERROR", CSV, f"row 1, column '{TIME}'", "got 'fast'", cli=True),
    Case("time-empty", edit(**{TIME: ""}), "ERROR", CSV, f"row 1, column '{TIME}'", "got ''"),
    Case("time-nan", edit(**{TIME: "nan"}), "ERROR", CSV, f"row 1, column '{TIME}'", "got 'nan'"),
    Case("time-inf", edit(**{TIME: "inf"}), "ERROR", CSV, f"row 1, column '{TIME}'", "got 'inf'"),
    Case("time-negative", edit(**{TIME: "-5"}), "ERROR", CSV, f"row 1, column '{TIME}'", "non-negative"),
    Case("time-text-in-one-row-of-50", edit_row(50, 37, **{TIME: "n/a"}), "ERROR", CSV,
         f"row 37, column '{TIME}'", "got 'n/a'"),
    Case("time-beyond-1e15", edit(**{TIME: "1e16"}), "ERROR", CSV, f"row 1, column '{TIME}'", "at most 1e+15"),
    Case("name-empty", edit(name="  "), "ERROR", CSV, "row 1, column 'name'", "op name is empty"),
    Case("name-control-characters-only", edit(name="\x08\x07 "), "ERROR", CSV, "row 1, column 'name'",
         "op name is empty (or only control characters)"),
    Case("name-c1-and-bidi-controls-only", edit(name="\x80\u202e\u2066 \x9b"), "ERROR", CSV,
         "row 1, column 'name'", "op name is empty (or only control characters)"),
    # Other number columns: the cell is missing for that row, with a warning.
    Case("gflops-text", edit(GFLOPS="n/a"), "OK", CSV, "row 1", "'GFLOPS' are not usable numbers"),
    Case("gflops-nan", edit(GFLOPS="nan"), "OK", CSV, "row 1", "'GFLOPS' are not usable numbers"),
    Case("gflops-inf", edit(GFLOPS="inf"), "OK", CSV, "row 1", "'GFLOPS' are not usable numbers"),
    Case("gflops-negative", edit(GFLOPS="-1.5"), "OK", CSV, "row 1", "'GFLOPS' are not usable numbers"),
    Case("gflops-1e300", edit(GFLOPS="1e300"), "OK", CSV, "row 1", "'GFLOPS' are not usable numbers"),
    Case("csv-trailing-blank-line", raw_csv(lambda d: d + b"\n"), "OK", warns=False, check=_time_is_unchanged),
    Case("csv-trailing-blank-lines-crlf", raw_csv(lambda d: (d + b"\n\n").replace(b"\n", b"\r\n")), "OK",
         warns=False, check=_time_is_unchanged),
    Case("csv-blank-lines-between-50-rows", blank_lines_between_rows(50, 37, GFLOPS="n/a"), "OK", CSV, "row 37",
         "1 cell(s) of 'GFLOPS'", check=_all_50_rows_counted),
    Case("csv-blank-lines-between-rows-bad-time", blank_lines_between_rows(50, 37, **{TIME: "n/a"}), "ERROR", CSV,
         f"row 37, column '{TIME}'", "got 'n/a'"),
    Case("count-zero", edit(operation_count="0"), "OK", CSV, "row 1", "'operation_count' are not usable",
         check=_count_from_mean),
    Case("time-negative-zero", edit(**{TIME: "-0", "Kernel Time (µs)_mean": "-0"}), "OK", check=_no_negative_zero),
    Case("shape-m-1e9", implausible(M=10**9), "OK", check=_shape_unknown),
    Case("shape-e-2-to-52", implausible(E=2**52), "OK", check=_shape_unknown),
    Case("shape-k-and-n-1e12", implausible(K=10**12, N=10**12), "OK", check=_shape_unknown),
    Case("shape-topk-2-to-40", implausible(E=2**41, k=2**40), "OK", check=_shape_unknown),
    Case("count-text", edit(operation_count="many"), "OK", CSV, "row 1", "'operation_count' are not usable"),
    # Zero means and rooflines make 0/0 figures: unknown, not NaN.
    Case("zero-figures", edit(**{"Kernel Time (µs)_mean": "0", "Roofline Time (µs)_first": "0", "GFLOPS": "0",
                                 "Data Moved (MB)": "0", "Pct Roofline_mean": "", "TFLOPS/s_mean": "",
                                 "TB/s_mean": "", "FLOPS/Byte": ""}), "OK"),
    Case("blank-kernel-name", edit(call_stack_full="[['nn.Module: MoEModel'], ['']]", kernel_details_summary=""),
         "OK", warns=False),
    Case("gflops-text-in-one-row-of-50", edit_row(50, 37, GFLOPS="n/a"), "OK", CSV, "row 37",
         "1 cell(s) of 'GFLOPS'", cli=True, check=_all_50_rows_counted),
    # Shapes of a good file that must keep working.
    Case("duplicate-rows", raw_csv(lambda d: d + _data_line(d)), "OK", where="(rows 2)",
         says="repeat an earlier row exactly and were ignored", check=_time_is_unchanged),
    Case("unknown-columns", add_columns(**{"my extra": "1", "zzz": "<!--"}), "OK", warns=False,
         check=_time_is_unchanged),
    Case("duplicate-column", duplicate_header_column, "OK", CSV, says="'GFLOPS' appears more than once",
         check=_time_is_unchanged),
    Case("bom", raw_csv(lambda d: b"\xef\xbb\xbf" + d), "OK", warns=False, check=_time_is_unchanged),
    Case("crlf", raw_csv(lambda d: d.replace(b"\n", b"\r\n")), "OK", warns=False, check=_time_is_unchanged),
    Case("cr-only-line-ends", raw_csv(lambda d: d.replace(b"\n", b"\r")), "OK", warns=False,
         check=_time_is_unchanged),
    Case("greek-mu", rename_column("(µs)", "(μs)"), "OK", warns=False, check=_time_is_unchanged),
    Case("us-spelling", rename_column("(µs)", "(us)"), "OK", warns=False, check=_time_is_unchanged),
    Case("old-count-column", rename_column("operation_count", "count"), "OK", warns=False,
         check=_time_is_unchanged),
    Case("name-terminal-and-bidi-controls", edit(name="pseudo_op::moe_\x1b[31m\u202eevil\u202c.py\x07"), "OK",
         warns=False, check=_display_name_is_plain),
    Case("non-ascii-name", edit(name="pseudo_op::moe_ünïcødé_名前_🚀"), "OK", warns=False,
         check=_name_kept("pseudo_op::moe_ünïcødé_名前_🚀")),
    # Cells far beyond any real size, literals nested beyond any real depth.
    Case("call-stack-5mb", edit(call_stack_full=f"['{LONG}']"), "OK", CSV, "row 1",
         "'call_stack_full' are longer than 64 KiB"),
    Case("input-dims-5mb", edit(**{"Input Dims": f"(({LONG}),)"}), "OK", CSV, "row 1",
         "'Input Dims' are longer than 64 KiB"),
    Case("name-200k-chars", edit(name="pseudo_op::moe_" + "y" * 200_000), "OK", CSV, "row 1",
         "'name' are longer than 1000 characters", check=_name_cut),
    Case("literals-nested-10k", edit(**{"Input Dims": DEEP_TUPLE, "call_stack_full": DEEP_LIST,
                                        "perf_params": "{" * 10_000 + "}" * 10_000}), "OK", warns=False),
    Case("code-in-literals", edit(**{"Input Dims": CODE, "Input type": CODE, "perf_params": CODE,
                                     "kernel_details_summary": f"[{CODE}]", "call_stack_full": f"['a', {CODE}]"}),
         "OK", warns=False, cli=True),
    # Metadata: required when the CSV has rows, never guessed.
    Case("metadata-missing", remove(META), "ERROR", META, says="is missing", cli=True),
    Case("metadata-directory", make_dir_at(META), "ERROR", META, says="is not a regular file"),
    Case("metadata-link-to-dev-zero", link(META, "/dev/zero"), "ERROR", META, says="is not a regular file"),
    Case("metadata-fifo", fifo(META), "ERROR", META, says="is not a regular file", cli=True),
    Case("metadata-utf16", write_file(META, json.dumps(BASE_META).encode("utf-16")), "ERROR", META,
         says="is UTF-16 (little-endian) text, not UTF-8"),
    Case("metadata-5000-digit-number", write_file(META, json.dumps(BASE_META).replace("5.3", "1" * 5000)),
         "ERROR", META, says="is not usable JSON: Exceeds the limit (4300 digits)"),
    Case("metadata-zero-byte", write_file(META, b""), "ERROR", META, "line 1, column 1", "not valid JSON"),
    Case("metadata-truncated", write_file(META, '{"platform": "MI300X", "peak_hbm'), "ERROR", META,
         "line 1", "not valid JSON"),
    Case("metadata-array", write_file(META, "[708, 5.3]"), "ERROR", META, says="must hold a JSON object, got list"),
    Case("metadata-over-32mib", write_file(META, b'{"x": "' + b"a" * (33 << 20) + b'"}'), "ERROR", META,
         says="more than the 33554432 accepted"),
    Case("metadata-not-utf8", write_file(META, '{"platform": "MI300X\xb5"}'.encode("latin-1")), "ERROR", META,
         says="not UTF-8"),
    Case("metadata-nested-deep", write_file(META, "[" * 100_000 + "]" * 100_000), "ERROR", META,
         says="nested too deeply"),
    Case("metadata-bandwidth-text", metadata(lambda m: m.update(peak_hbm_bw_tbs="fast")), "ERROR", META,
         "peak_hbm_bw_tbs", "valid number"),
    Case("metadata-bandwidth-zero", metadata(lambda m: m.update(peak_hbm_bw_tbs=0)), "ERROR", META,
         "peak_hbm_bw_tbs", "greater than 0"),
    Case("metadata-bandwidth-missing", metadata(lambda m: m.pop("peak_hbm_bw_tbs")), "ERROR", META,
         "peak_hbm_bw_tbs", "required key is missing"),
    Case("metadata-bandwidth-nan", write_file(META, json.dumps(BASE_META).replace("5.3", "NaN")), "ERROR", META,
         "peak_hbm_bw_tbs", "finite"),
    Case("metadata-peak-text", metadata(lambda m: m["max_achievable_tflops"].update(matrix_bf16="708")),
         "ERROR", META, "max_achievable_tflops.matrix_bf16", "valid number"),
    Case("metadata-zero-peaks", metadata(lambda m: m.update(
        max_achievable_tflops={k: 0 for k in m["max_achievable_tflops"]})), "ERROR", META, "top level",
        "no compute peak"),
    Case("metadata-total-time-text", metadata(lambda m: m["gpu_utilization"].update(total_time_ms="x")),
         "ERROR", META, "gpu_utilization.total_time_ms", "valid number"),
    Case("metadata-total-time-denormal", metadata(lambda m: m["gpu_utilization"].update(total_time_ms=2.2e-308)),
         "ERROR", META, "gpu_utilization.total_time_ms", "must be 0 or between 1e-06 and 1e+12"),
    Case("metadata-bandwidth-1e300", metadata(lambda m: m.update(peak_hbm_bw_tbs=1e300)), "ERROR", META,
         "peak_hbm_bw_tbs", "must be 0 or between"),
    Case("metadata-total-time-zero", metadata(lambda m: m["gpu_utilization"].update(total_time_ms=0)),
         "OK", META, "gpu_utilization.total_time_ms", "is missing or 0"),
    Case("metadata-platform-terminal-controls",
         metadata(lambda m: m.update(platform="MI300X\x1b]0;pwned\x07\n- forged\u202e line")), "OK",
         warns=False, cli=True, check=_platform_is_plain),
    Case("metadata-platform-1mb", metadata(lambda m: m.update(platform="P" * (1 << 20))), "OK", warns=False,
         check=lambda out, m: len(m["platform"]) == 200 or pytest.fail(len(m["platform"]))),
    Case("metadata-bom", write_file(META, b"\xef\xbb\xbf" + json.dumps(BASE_META).encode()), "OK", warns=False),
    Case("metadata-older-era", write_file(META, json.dumps({"peak_hbm_bw_tbs": 5.3, "peak_bf16_maf_tflops": 708,
                                                            "gpu_utilization": {"total_time_ms": 39.43}})),
         "OK", warns=False),
    # Tree data is optional: a broken file is a warning and is ignored.
    Case("tree-not-json", write_file(TREE, "{nope"), "OK", TREE, "line 1", "tree data ignored", cli=True),
    Case("tree-list", write_file(TREE, "[1, 2]"), "OK", TREE, says="expected a JSON object keyed by event id"),
    Case("tree-entries-wrong-shape", write_file(TREE, json.dumps({"324": {"parent_chain": "A"}, "5": 7})), "OK",
         TREE, says="2 entries of the wrong shape ignored"),
    Case("tree-binary", write_file(TREE, bytes(range(256))), "OK", TREE, says="not UTF-8"),
    Case("tree-nested-deep", write_file(TREE, "[" * 100_000 + "]" * 100_000), "OK", TREE, says="nested too deeply"),
    Case("tree-directory", make_dir_at(TREE), "OK", TREE, says="tree data ignored"),
    Case("tree-link-to-dev-zero", link(TREE, "/dev/zero"), "OK", TREE, says="is not a regular file"),
    Case("tree-fifo", fifo(TREE), "OK", TREE, says="is not a regular file"),
]

MARKUP_NAMES = [
    "pseudo_op::moe|fused|op",
    "pseudo_op::moe <!-- hidden",
    "pseudo_op::moe --> closed",
    "pseudo_op::moe\nsecond line",
    "pseudo_op::moe\r\n### P9: forged card",
    "### P9: pseudo_op::moe",
    "pseudo_op::moe<script>alert(1)</script>",
    "pseudo_op::moe <!-- impact-begin kind=p_item low=1 mid=2 high=3 -->",
    "pseudo_op::moe ## Recommendations",
    "pseudo_op::moe $\\frac{a}{b}$ ünïcødé",
]


def _cases() -> list:
    params = [pytest.param(case, id=case.id) for case in CASES]
    for i, name in enumerate(MARKUP_NAMES):
        case = Case(f"markup-in-name-{i}", edit(name=name, kernel_details_summary=(
            f"[{{'name': {name!r}, 'stream': 7}}]"), entry_point=name), "OK", warns=False,
            cli=(i == len(MARKUP_NAMES) - 1))
        params.append(pytest.param(case, id=case.id))
    return params


# --- running a case and checking what it left ---------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: kind, and for files their hash and mtime."""
    seen: dict[str, tuple] = {}
    for base, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(base) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[rel] = ("dir",)
            elif not path.is_file():
                seen[rel] = ("special", path.stat().st_mtime_ns)
            else:
                st = path.stat()
                seen[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return seen


def changed_paths(before: dict, after: dict) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def allowed_changes(status: str, plot: bool) -> set[str]:
    allowed = {METRICS, FINDINGS, "category_findings", "category_data"}
    if status == "OK" and plot:
        allowed.add(PLOT)
    if status == "OK":
        # The replay artifact of slow ops: declared outputs of the category.
        allowed |= {f"category_data/{CAT}_replay.json", f"category_findings/{CAT}_replay.py"}
    return allowed


def assert_outputs_agree(out: Path, status: str) -> dict:
    metrics = read_metrics(out, CAT)
    assert metrics["status"] == status
    assert conformance_problems(out, CAT) == []
    findings = (out / FINDINGS).read_text(encoding="utf-8")
    if status == "ERROR":
        assert "Status: ERROR" in findings
        assert metrics["category_findings"] == [] and metrics["operations"] == []
    return metrics


def _names(text: str, wanted: str) -> bool:
    # The findings escape markdown: compare without the backslashes.
    return wanted in text.replace("\\", "")


def run_in_process(out: Path, case: Case) -> None:
    before = snapshot(out)
    result = analyse(out, category=CAT, options=NO_PLOT)
    after = snapshot(out)
    assert changed_paths(before, after) <= allowed_changes(case.status, plot=False)
    assert not [p for p in after if p.rsplit("/", 1)[-1].endswith(".tmp")]

    assert result.status.value == case.status, result.message
    assert result.exit_code == (2 if case.status == "ERROR" else 0)
    assert not result.internal_error
    metrics = assert_outputs_agree(out, case.status)
    if case.status == "ERROR":
        assert result.message.startswith(case.file)
        assert metrics["file"] == case.file
        assert case.says in result.message and case.says in metrics["message"]
        if case.where:
            assert case.where in (metrics["location"] or "")
            assert f"({case.where}" in result.message
        findings = (out / FINDINGS).read_text(encoding="utf-8")
        assert _names(findings, case.file)
    if case.status == "OK":
        warnings = list(result.warnings)
        assert warnings == [w for w in metrics["warnings"] if w in warnings]
        if case.warns is False:
            assert warnings == []
        if case.says:
            hits = [w for w in warnings if case.says in w]
            assert hits, warnings
            if case.file:
                assert any(w.startswith(case.file) for w in hits)
            if case.where:
                assert any(case.where in w for w in hits)
    if case.check:
        case.check(out, metrics)


@pytest.mark.parametrize("case", _cases())
def test_bad_input_gets_its_documented_outcome(fixture_copy, case: Case):
    out = fixture_copy(SYNTHETIC)
    case.build(out)
    run_in_process(out, case)
    assert not (out / MARKER).exists() and not Path(MARKER).exists()


@pytest.mark.parametrize("case", _cases())
def test_same_outcome_on_a_real_unfused_trace(fixture_copy, case: Case):
    """Every case again on the gpt-oss decode directory (moe_unfused, two ops,
    its own warnings): the same status and file, nothing else touched."""
    out = fixture_copy(GPT_OSS_DECODE)
    cat = category_of(out)
    case.build(out)
    before = snapshot(out)
    result = analyse(out, category=cat, options=NO_PLOT)
    after = snapshot(out)
    allowed = {p.replace(CAT, cat) for p in allowed_changes(case.status, plot=False)}
    assert changed_paths(before, after) <= allowed
    assert result.status.value == case.status, result.message
    assert result.exit_code == (2 if case.status == "ERROR" else 0) and not result.internal_error
    metrics = read_metrics(out, cat)
    assert metrics["status"] == case.status
    assert conformance_problems(out, cat) == []
    if case.status == "ERROR":
        assert result.message.startswith(case.file.replace(CAT, cat))
        assert "Status: ERROR" in at(out, FINDINGS).read_text(encoding="utf-8")
    if case.status == "OK" and case.says:
        assert any(case.says in w for w in result.warnings), result.warnings


def run_cli(out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JARVIS_CONFIG", "JARVIS_DEBUG")}
    return subprocess.run(
        [sys.executable, "-m", "jarvis_moe", "--output-dir", str(out), "--category", CAT],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("case", [p for p in _cases() if p.values[0].cli])
def test_command_line_exit_code_and_no_traceback(fixture_copy, tmp_path, case: Case):
    out = fixture_copy(SYNTHETIC)
    case.build(out)
    before = snapshot(out)
    done = run_cli(out, tmp_path)
    after = snapshot(out)
    assert done.returncode == (2 if case.status == "ERROR" else 0), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert done.stdout.startswith(f"{CAT}: {case.status}")
    if case.status == "ERROR":
        assert case.file in done.stdout
    assert changed_paths(before, after) <= allowed_changes(case.status, plot=True)
    assert_outputs_agree(out, case.status)
    assert not (out / MARKER).exists() and not (tmp_path / MARKER).exists()


# --- the output directory -----------------------------------------------------


def _assert_blocked(out: Path, before: dict, result, names: str) -> None:
    assert result.status.value == "ERROR" and result.exit_code == 2 and not result.internal_error
    assert names in result.message
    assert snapshot(out) == before


def test_missing_output_directory_is_an_error_and_is_not_created(tmp_path):
    out = tmp_path / "nowhere"
    result = analyse(out, category=CAT, options=NO_PLOT)
    assert result.status.value == "ERROR" and result.exit_code == 2
    assert str(out) in result.message and "does not exist" in result.message
    assert not out.exists()


def test_missing_output_directory_from_the_command_line(tmp_path):
    done = run_cli(tmp_path / "nowhere", tmp_path)
    # A wrong path is a usage error (exit 4), kept apart from bad input data (exit 2).
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_category_findings_that_is_a_file_blocks_the_run_and_stays(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "category_findings").write_text("not a directory", encoding="utf-8")
    before = snapshot(out)
    result = analyse(out, category=CAT, options=NO_PLOT)
    _assert_blocked(out, before, result, "category_findings exists but is not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_category_data_blocks_the_run(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "category_data").chmod(0o555)
    try:
        before = snapshot(out)
        result = analyse(out, category=CAT, options=NO_PLOT)
        _assert_blocked(out, before, result, "category_data")
        assert "not writable" in result.message
    finally:
        (out / "category_data").chmod(0o755)


def test_category_data_that_is_a_file_blocks_the_run(fixture_copy):
    # Stands in for a read-only directory when the tests run as root.
    out = fixture_copy(SYNTHETIC)
    for path in sorted((out / "category_data").iterdir()):
        path.unlink()
    (out / "category_data").rmdir()
    (out / "category_data").write_text("not a directory", encoding="utf-8")
    before = snapshot(out)
    result = analyse(out, category=CAT, options=NO_PLOT)
    _assert_blocked(out, before, result, "category_data exists but is not a directory")


def test_findings_path_that_is_a_directory_blocks_the_run(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / FINDINGS).mkdir(parents=True)
    result = analyse(out, category=CAT, options=NO_PLOT)
    assert result.status.value == "ERROR" and result.exit_code == 2
    assert "is a directory" in result.message
    assert (out / FINDINGS).is_dir() and not (out / METRICS).exists()


@pytest.mark.parametrize("rel", [FINDINGS, METRICS])
def test_output_symlink_is_replaced_and_its_target_untouched(fixture_copy, tmp_path, rel):
    out = fixture_copy(SYNTHETIC)
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone else's file", encoding="utf-8")
    stat = target.stat()
    (out / rel).parent.mkdir(exist_ok=True)
    (out / rel).symlink_to(target)
    result = analyse(out, category=CAT, options=NO_PLOT)
    assert result.status.value == "OK", result.message
    assert not (out / rel).is_symlink() and (out / rel).is_file()
    assert target.read_text(encoding="utf-8") == "someone else's file"
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    assert_outputs_agree(out, "OK")


def test_rerun_on_fixed_input_replaces_both_error_files(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    good = at(out, META).read_bytes()
    at(out, META).write_text("{broken", encoding="utf-8")
    assert analyse(out, category=CAT, options=NO_PLOT).status.value == "ERROR"
    assert read_metrics(out, CAT)["status"] == "ERROR"
    at(out, META).write_bytes(good)
    before = snapshot(out)
    result = analyse(out, category=CAT, options=NO_PLOT)
    assert result.status.value == "OK", result.message
    assert {METRICS, FINDINGS} <= changed_paths(before, snapshot(out))
    assert "Status: ERROR" not in (out / FINDINGS).read_text(encoding="utf-8")
    assert_outputs_agree(out, "OK")


# --- markup from the trace stays inert ----------------------------------------


@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_trace_text_cannot_forge_markup(fixture_copy, name):
    out = fixture_copy(SYNTHETIC)
    edit(name=name, entry_point=name, kernel_details_summary=f"[{{'name': {name!r}, 'stream': 7}}]")(out)
    assert analyse(out, category=CAT, options=NO_PLOT).status.value == "OK"
    text = (out / FINDINGS).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert "<script>" not in text
    assert text.count("<!--") == text.count("-->")
    # One finding: one card, and no heading the name could have opened.
    cards = [line for line in lines if line.startswith("### ")]
    assert len(cards) == 1 and cards[0].startswith("### P1:")
    assert [line for line in lines if line.startswith("## ")].count("## Recommendations") == 1
    assert [line for line in lines if line.startswith("## ")].count("## Detailed Analysis") == 1
