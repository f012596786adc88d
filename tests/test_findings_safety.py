"""Trace text cannot change the structure of the findings file.

Op, kernel and module names come from the trace. Whatever they hold, the
shared checker must pass, markdown-it must see only the headings and HTML
the writer emits, and a reader must see the name's characters unchanged.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

from jarvis_moe.findings import render
from jarvis_moe.findings.check import verify_findings
from jarvis_moe.findings.text import safe_cell
from samples import DISPLAY_KEYS, VERBATIM_RULES, hostile, to_json_data, write_and_check

HOSTILE = [
    "a|b|c",
    "x --> y",
    "<!-- impact-begin kind=p_item low=0 mid=0 high=0 -->",
    "<!-- impact-end -->",
    "<!-- reasoning-candidate tier=compute rank=9 -->",
    "name\n### P9: forged card",
    "name\r\n## Recommendations\n",
    "## Recommendations",
    "## Detailed Analysis",
    "### P9: forged",
    "<script>alert(1)</script>",
    "**bold** _em_ `code` [link](http://example.com) ![img](x.png) ~~gone~~",
    "trailing backslash \\",
    "a\\|b",
    "&lt;!-- entity --&gt; &amp;",
    "\u2028### P9: line separator",
    "tab\there\x0bvertical\x0cform\x1cfile",
    "|",
    "- list\n> quote\n1. item\n===",
    "> **Warning — estimated:** forged",
    # The detail labels: a Data cell is verbatim, so the label reads as one there.
    "**Resolution:**",
    "**Identification:**",
    "**Data:**",
    "$x^2$ and \\(math\\)",
    "x" * 500,
]

ALLOWED_HEADINGS = re.compile(
    r"(h1:MoE Analysis Summary|h2:(Overview|Operations|Routing and Load Balance|MoE Layer Structure|"
    r"Warnings|Optimisation Paths|What This Trace Cannot Show|Recommendations|"
    r"Detailed Analysis)|h3:P\d+: .*|h4:P\d+: .*)"
)
MARKER = re.compile(r"<!-- (impact-begin kind=(p_item|detail_estimate) low=\S+ (mid=\S+ )?high=\S+|"
                    r"impact-end|reasoning-candidate tier=compute rank=\d+) -->")


def structure_problems(text: str) -> list[str]:
    """An independent token walk: only the writer's headings and HTML."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    problems = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            label = f"{tok.tag}:{tokens[i + 1].content}"
            if not ALLOWED_HEADINGS.fullmatch(label):
                problems.append(f"heading {label!r}")
        if tok.type == "html_block" and not MARKER.fullmatch(tok.content.strip()):
            problems.append(f"html block {tok.content!r}")
        for child in tok.children or []:
            if child.type == "html_inline" and child.content != "<br>":
                problems.append(f"inline html {child.content!r}")
    return problems


def one_line(raw: str) -> str:
    """What a reader should see for a raw trace string."""
    text = re.sub(r"[\r\n\t\v\f\x1c-\x1e\u0085\u2028\u2029]+", " ", raw)
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", "", text).strip()


def _shared_problems(tmp_path, metrics) -> list[str]:
    problems = write_and_check(tmp_path, metrics)
    strings = [str(getattr(op, key)) for op in metrics.operations for key in DISPLAY_KEYS]
    if any(safe_cell(s) != s for s in strings):
        problems = [p for p in problems if not any(rule in p for rule in VERBATIM_RULES)]
    return problems


def assert_safe(tmp_path, metrics) -> str:
    text = render(metrics)
    assert structure_problems(text) == []
    assert verify_findings(text, to_json_data(metrics)) == []
    assert _shared_problems(tmp_path, metrics) == []
    return text


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("form", ["standalone", "comparative", "heuristic"])
def test_hostile_names_cannot_change_structure(tmp_path, name, form):
    metrics = hostile(name, comparative=form == "comparative", heuristic=form == "heuristic")
    text = assert_safe(tmp_path, metrics)
    expected = 1 if metrics.category_findings else 0
    assert expected == 1
    assert len(re.findall(r"(?m)^### P\d+", text)) == expected
    # Per card: p_item begin and end, reasoning-candidate, detail begin and end.
    assert text.count("<!--") == text.count("-->") == 5 * expected


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_kernel_path_and_args_cannot_change_structure(tmp_path, name):
    metrics = hostile("pseudo_op::moe", kernel=name, path=name, args=name, warning=name)
    assert_safe(tmp_path, metrics)


@pytest.mark.parametrize("name", [n for n in HOSTILE if n.strip() and len(n) < 100])
def test_readers_see_the_same_characters(name):
    """Rendered HTML holds the name as text, in the reader tables and sentences."""
    metrics = hostile(name)
    html = MarkdownIt("commonmark").enable("table").render(render(metrics))
    shown = escapeHtml(one_line(name))
    # Operations table cell, routing paragraph, Data table cell.
    assert html.count(shown) >= 3


def test_data_cells_escape_only_the_pipe():
    metrics = hostile("op|with*stars_and_`ticks`", kernel="k|n", path="a > b", args="x*y")
    text = render(metrics)
    assert "| op\\|with*stars_and_`ticks` | (16,4096) x*y<br>" in text
    assert "| a > b | k\\|n |" in text  # data, not markup: kept as the trace wrote it


def test_markup_in_a_data_cell_is_escaped_and_plain_text_is_not():
    assert safe_cell("void ck::kernel_moe_gemm<ck::GridwiseMoeGemm<int, 1>>") == (
        "void ck::kernel_moe_gemm<ck::GridwiseMoeGemm<int, 1>>")
    assert safe_cell("(16,4096) bf16<br>(8,2) fp32") == "(16,4096) bf16<br>(8,2) fp32"
    assert safe_cell("k<bf16>") == "k&lt;bf16&gt;"
    assert safe_cell("a<br><!-- impact-end -->") == "a<br>&lt;!-- impact-end --&gt;"
    assert safe_cell("x --> y & &amp;") == "x --&gt; y &amp; &amp;amp;"


def test_titles_are_one_line_and_escaped():
    metrics = hostile("evil\n### P9: x *y*", heuristic=True)
    text = render(metrics)
    title = next(line for line in text.splitlines() if line.startswith("### P1"))
    assert title.startswith("### P1: MoE op evil \\#\\#\\# P9: x \\*y\\* without a roofline figure at ")
    assert sum(1 for line in text.splitlines() if line.startswith("### ")) == 1


def test_identifiers_read_as_code_spans():
    metrics = hostile("pseudo_op::moe_aiter_fused_1stage")
    text = render(metrics)
    assert "`pseudo_op::moe_aiter_fused_1stage`" in text
    assert "pseudo\\_op" not in text


def test_raw_strings_stay_unaltered_in_the_metrics(tmp_path):
    import json

    name = "a|b\t<!-- x -->"
    metrics = hostile(name)
    write_and_check(tmp_path, metrics)
    saved = json.loads((tmp_path / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    assert saved["operations"][0]["name"] == name
    assert saved["operations"][0]["call_chain"] == [f"nn.Module: {name}", "nn.Module: DecoderLayer", name, name]
    # Display fields are one line, never HTML-escaped: escaping belongs to the page.
    assert "<!-- x -->" in saved["operations"][0]["display_name"]
    assert "<!-- x -->" in saved["operations"][0]["kernel_name_trunc"]
    assert "&lt;" not in json.dumps(saved)


# Plain random text, and text built from the pieces markdown and the markers
# are made of, which random text rarely hits.
PIECES = list("|\\<>!-#*_`[]()&;:\n\r \t~=+.1P$\u2028\x85") + [
    "<!--", "-->", "### P9:", "&lt;", "\\|", "## Recommendations", "<br>"]
names = st.one_of(st.text(max_size=80), st.lists(st.sampled_from(PIECES), max_size=25).map("".join)).filter(
    lambda n: one_line(n) and "\x00" not in n)  # a name that shows as nothing is bad input


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, kernel=names, path=names, args=names,
       form=st.sampled_from(["standalone", "comparative", "heuristic"]))
def test_any_trace_text_passes_both_checkers(tmp_path, name, kernel, path, args, form):
    metrics = hostile(name, kernel=kernel, path=path, args=args, warning=kernel,
                      comparative=form == "comparative", heuristic=form == "heuristic")
    assert_safe(tmp_path, metrics)


# --- terminal and bidi control characters -------------------------------------

from jarvis_moe.safetext import plain_text  # noqa: E402

# What a terminal or an editor acts on instead of showing: C0 and C1 controls,
# DEL, and the bidi marks, embeddings, overrides and isolates (Unicode TR9).
ACTING = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TERMINAL = [
    "\x1b]0;pwned\x07title",  # OSC: retitles the terminal, BEL ends it
    "\x1b[2J\x1b[Hcleared",  # clears the screen
    "op\u202eevil\u202c.py",  # right-to-left override
    "\u2066isolated\u2069 \u200fmark\u061c",
    "line\rforged\x85next\u2028sep",
    "c1\x9b31mred\x90dcs\x9c",
]


@pytest.mark.parametrize("raw", TERMINAL)
def test_terminal_and_bidi_controls_never_reach_the_page(tmp_path, raw):
    metrics = hostile("pseudo_op::" + raw, kernel=raw, path=raw, args=raw, warning=raw)
    text = assert_safe(tmp_path, metrics)
    assert ACTING.findall(text) == []


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_plain_text_leaves_nothing_that_acts_and_keeps_the_rest(raw):
    out = plain_text(raw)
    assert ACTING.findall(out) == [] and "\n" not in out
    assert plain_text(out) == out
    # Breaks become spaces; every other character that does not act is kept, in order.
    kept = [c for c in raw if not ACTING.match(c) and c not in "\n\x85\u2028\u2029 "]
    assert [c for c in out if c != " "] == kept
