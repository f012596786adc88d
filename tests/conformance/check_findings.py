#!/usr/bin/env python3
# Copy of the shared findings-contract checker (tools/check_findings.py in the
# shared workspace of the Jarvis pipeline), kept verbatim apart from this
# header so the tests run from a plain clone. Standard library only. Update it
# by copying the shared file again; do not edit it here.
"""Check a category findings file against its metrics JSON.

usage: check_findings.py OUTPUT_DIR [CATEGORY] [--scope standalone|comparative]

Reads OUTPUT_DIR/category_findings/<cat>_findings.md and
OUTPUT_DIR/category_data/<cat>_metrics.json and checks them against
docs/findings-format.md. Prints every violation; exits 0 when there is none,
1 when there are some, 2 when the files cannot be read. Standard library only.
"""
import json
import re
import sys
from pathlib import Path

STANDALONE_COLS = ("Operation", "Args", "Kernel Path", "Kernel Name", "Time (ms)", "%E2E",
                   "Count", "FLOPS/Byte", "Efficiency", "Bound")
COMPARATIVE_COLS = ("Operation", "Args (T1)", "Kernel Path", "Kernel Name", "Trace 1 Time (ms)",
                    "Trace 2 Time (ms)", "Count (T1/T2)", "Difference (ms)", "FLOPS/Byte (T1)", "Bound (T1)")
DETAIL_LABELS = ("**Identification:**", "**Data:**", "**Reasoning for Slowdown:**",
                 "**Resolution:**", "**Impact estimate:**")
P_ITEM_RE = re.compile(r"^### .*?P(\d+)\s*:", re.MULTILINE)
CANDIDATE_RE = re.compile(r"<!-- reasoning-candidate\s+tier=(\w+)\s+rank=(\d+)\s*-->")
BEGIN_RE = re.compile(r"<!--\s*impact-begin\s+([^>]*?)-->", re.DOTALL)
END_RE = re.compile(r"<!--\s*impact-end\s*-->")
ATTR_RE = re.compile(r"\b(\w+)=([^\s]+)")
TOL = 0.005


def split_row(line):
    """Cells of a markdown table row, honouring backslash-escaped pipes."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def tables(lines):
    """Yield (header_index, header_cells, [(line_index, cells)]) for each table."""
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            header = split_row(lines[i])
            rows, j = [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append((j, split_row(lines[j])))
                j += 1
            yield i, header, rows
            i = j
        else:
            i += 1


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def check(out_dir, cat, scope_arg=None):
    md_path = out_dir / "category_findings" / f"{cat}_findings.md"
    js_path = out_dir / "category_data" / f"{cat}_metrics.json"
    try:
        text = md_path.read_text(encoding="utf-8")
        metrics = json.loads(js_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, [f"cannot read outputs: {e}"]
    errs = []
    status = metrics.get("status")
    if status not in ("OK", "NO_DATA", "ERROR"):
        errs.append(f"metrics status is {status!r}, expected OK, NO_DATA or ERROR")
    scope = scope_arg or metrics.get("comparison_scope") or "standalone"

    rec, da = text.find("## Recommendations"), text.find("## Detailed Analysis")
    if rec < 0 or da < 0:
        errs.append("missing '## Recommendations' or '## Detailed Analysis'")
    elif rec > da:
        errs.append("'## Recommendations' must come before '## Detailed Analysis'")
    rec_text = text[rec:da] if 0 <= rec < da else ""
    da_text = text[da:] if da >= 0 else ""

    lines = text.splitlines()
    for hi, header, rows in tables(lines):
        for li, cells in rows:
            if len(cells) != len(header):
                errs.append(f"line {li + 1}: table row has {len(cells)} cells, header has {len(header)} (unescaped '|'?)")

    begins, n_end = BEGIN_RE.findall(text), len(END_RE.findall(text))
    if len(begins) != n_end:
        errs.append(f"marker pairing: {len(begins)} impact-begin vs {n_end} impact-end")
    if text.count("<!--") != text.count("-->"):
        errs.append("unbalanced HTML comments: trace text may have opened or closed a comment")

    findings = metrics.get("category_findings") or []
    p_items = P_ITEM_RE.findall(rec_text)
    candidates = CANDIDATE_RE.findall(da_text)

    if status in ("NO_DATA", "ERROR") or not findings:
        if p_items or candidates or begins:
            errs.append(f"status {status} with {len(findings)} findings must have empty Recommendations and Detailed Analysis")
        if status == "NO_DATA" and "No MoE operations detected in this trace." not in text:
            errs.append("NO_DATA findings must say 'No MoE operations detected in this trace.'")
        if status == "ERROR" and "Status: ERROR" not in text:
            errs.append("ERROR findings must state 'Status: ERROR'")
        return metrics, errs

    if [int(p) for p in p_items] != list(range(1, len(findings) + 1)):
        errs.append(f"P-items {p_items} should be P1..P{len(findings)} (one per category_findings entry)")
    if [int(r) for _, r in candidates] != list(range(1, len(findings) + 1)):
        errs.append(f"reasoning-candidate ranks {[r for _, r in candidates]} should be 1..{len(findings)}")
    if any(t != "compute" for t, _ in candidates):
        errs.append("reasoning-candidate tier must be compute")

    by_rank = {f.get("rank"): f for f in findings}
    cards = re.split(r"(?m)^(?=### .*?P\d+\s*:)", rec_text)[1:]
    for card in cards:
        rank = int(P_ITEM_RE.search(card).group(1))
        f = by_rank.get(rank)
        if f is None:
            errs.append(f"P{rank} has no category_findings entry")
            continue
        for label in ("**Insight**", "**Action**", "**Impact**"):
            if label not in card:
                errs.append(f"P{rank}: missing {label}")
        lib = f.get("library")
        title = card.splitlines()[0]
        if lib and lib != "Unknown" and f"({lib})" not in title:
            errs.append(f"P{rank}: title should end with ({lib})")
        marks = [dict(ATTR_RE.findall(b)) for b in BEGIN_RE.findall(card)]
        pm = [m for m in marks if m.get("kind") == "p_item"]
        if len(pm) != 1:
            errs.append(f"P{rank}: expected one kind=p_item marker, found {len(pm)}")
        else:
            for attr, key in (("low", "impact_score_low"), ("mid", "impact_score"), ("high", "impact_score_high")):
                a, b = num(pm[0].get(attr)), num(f.get(key))
                if a is None or b is None or abs(a - b) > TOL:
                    errs.append(f"P{rank}: marker {attr}={pm[0].get(attr)} but metrics {key}={f.get(key)}")
        if f.get("estimate_method") == "heuristic" and "Warning — estimated" not in card:
            errs.append(f"P{rank}: heuristic finding needs the 'Warning — estimated' line")

    ops = metrics.get("operations") or []
    valid = {
        "Args": {o.get("args") for o in ops if o.get("args")} | {"—"},
        "Kernel Path": {o.get("launcher_path") for o in ops if o.get("launcher_path")} | {"—"},
        "Kernel Name": {o.get("kernel_name_trunc") for o in ops if o.get("kernel_name_trunc")} | {"—"},
    }
    cols = COMPARATIVE_COLS if scope == "comparative" else STANDALONE_COLS
    blocks = re.split(r"(?=<!-- reasoning-candidate)", da_text)[1:]
    for block in blocks:
        rank = int(CANDIDATE_RE.search(block).group(2))
        f = by_rank.get(rank, {})
        pos = [block.find(lbl) for lbl in DETAIL_LABELS]
        if min(pos) < 0:
            errs.append(f"block {rank}: missing one of {DETAIL_LABELS}")
        elif pos != sorted(pos):
            errs.append(f"block {rank}: labels out of order")
        blines = block.splitlines()
        if "**Data:**" not in [l.strip() for l in blines]:
            errs.append(f"block {rank}: '**Data:**' must stand alone on its line")
        tabs = list(tables(blines))
        if not tabs:
            errs.append(f"block {rank}: no Data table")
        else:
            _, header, rows = tabs[0]
            if tuple(header[: len(cols)]) != cols:
                errs.append(f"block {rank}: Data table header {header} should start with {list(cols)}")
            else:
                names = {m.get("operation") for m in f.get("members", [])}
                for li, cells in rows:
                    for c, col in ((1, "Args"), (2, "Kernel Path"), (3, "Kernel Name")):
                        cell = cells[c].replace("\\|", "|") if c < len(cells) else ""
                        if cell and cell not in valid[col]:
                            errs.append(f"block {rank}: {col} cell {cell[:60]!r} is not verbatim from operations[]")
                    if names and cells and cells[0].replace("\\|", "|") not in names:
                        errs.append(f"block {rank}: row operation {cells[0][:60]!r} is not a member of finding {rank}")
        marks = [dict(ATTR_RE.findall(b)) for b in BEGIN_RE.findall(block)]
        dm = [m for m in marks if m.get("kind") == "detail_estimate"]
        if len(dm) != 1:
            errs.append(f"block {rank}: expected one kind=detail_estimate marker, found {len(dm)}")
        else:
            for attr, key in (("low", "impact_score_low"), ("high", "impact_score_high")):
                a, b = num(dm[0].get(attr)), num(f.get(key))
                if a is None or b is None or abs(a - b) > TOL:
                    errs.append(f"block {rank}: detail marker {attr}={dm[0].get(attr)} but metrics {key}={f.get(key)}")
    if len(begins) != 2 * len(findings):
        errs.append(f"{len(begins)} impact markers for {len(findings)} findings (expected {2 * len(findings)})")
    return metrics, errs


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    scope = argv[argv.index("--scope") + 1] if "--scope" in argv else None
    if scope:
        args.remove(scope)
    if not args:
        print(__doc__.strip())
        return 2
    out_dir = Path(args[0])
    cat = args[1] if len(args) > 1 else "moe_fused"
    metrics, errs = check(out_dir, cat, scope)
    if metrics is None:
        print(errs[0])
        return 2
    for e in errs:
        print(f"FAIL {cat}: {e}")
    print(f"{cat}: {len(errs)} violation(s), status {metrics.get('status')}, "
          f"{len(metrics.get('category_findings') or [])} finding(s)")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
