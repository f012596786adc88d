"""Self-check of a findings file before it is written.

The host parses ``## Recommendations`` and ``## Detailed Analysis`` by their
exact text, so a file that breaks their shape silently corrupts the merged
report. :func:`verify_findings` parses the markdown the way a renderer would
(markdown-it, CommonMark plus tables; the inline pass only over text that
holds a ``<``, the one place inline HTML can start) and checks that the
only structure in it is the structure the writer emits: known headings, our comment markers
and ``<br>`` as the only HTML, table rows as wide as their header, one card
and one reasoning block per ranked finding with the finding's scores in its
markers, and the two host sections last. Trace text that managed to open a
comment, forge a marker or start a heading shows up here as an error.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Sequence

from markdown_it import MarkdownIt
from markdown_it.rules_core.state_core import StateCore
from markdown_it.token import Token

from jarvis_moe.findings.text import safe_cell

TITLE = "MoE Analysis Summary"
RECOMMENDATIONS = "Recommendations"
DETAILED = "Detailed Analysis"
READER_SECTIONS = frozenset({
    "Overview", "Operations", "Routing and Load Balance", "MoE Layer Structure",
    "Warnings", "Optimisation Paths", "What This Trace Cannot Show", "Additional Notes",
})
STANDALONE_COLUMNS = ("Operation", "Args", "Kernel Path", "Kernel Name", "Time (ms)", "%E2E",
                      "Count", "FLOPS/Byte", "Efficiency", "Bound")
COMPARATIVE_COLUMNS = ("Operation", "Args (T1)", "Kernel Path", "Kernel Name", "Trace 1 Time (ms)",
                       "Trace 2 Time (ms)", "Count (T1/T2)", "Difference (ms)", "FLOPS/Byte (T1)",
                       "Bound (T1)")
CARD_LABELS = ("**Insight**", "**Action**", "**Impact**")
DETAIL_LABELS = ("**Identification:**", "**Data:**", "**Reasoning for Slowdown:**",
                 "**Resolution:**", "**Impact estimate:**")
TOLERANCE = 0.005

_NUMBER = r"-?\d+(?:\.\d+)?"
_BEGIN = re.compile(rf"<!-- impact-begin kind=(p_item|detail_estimate) low=({_NUMBER})"
                    rf"(?: mid=({_NUMBER}))? high=({_NUMBER}) -->")
_END = re.compile(r"<!-- impact-end -->")
_CANDIDATE = re.compile(r"<!-- reasoning-candidate tier=compute rank=(\d+) -->")
_P_HEADING = re.compile(r"P(\d+): \S.*")
_ATX_LINE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_ALLOWED_INLINE_HTML = ("<br>",)
_ODD_BREAK = re.compile("[\r\v\f\x1c-\x1e\x85\u2028\u2029]")


class FindingsContractError(ValueError):
    """A findings file would break the host's contract; nothing is written."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"findings markdown breaks the findings format: {shown}{more}")


def split_cells(line: str) -> list[str]:
    """Cells of a table row; a ``|`` after a backslash belongs to the cell.

    Same rule as the GFM table parser and the host's checker.
    """
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _close(marker: str | None, expected: Any) -> bool:
    a, b = _num(marker), _num(expected)
    return a is not None and b is not None and abs(a - b) <= TOLERANCE


def _line(token: Token) -> int:
    return token.map[0] + 1 if token.map else 0


def _inline_tokens(tokens: Sequence[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _inline_tokens(token.children)


class _Walk:
    """Block tokens grouped by h2 section and, inside the host sections, by rank."""

    def __init__(self, tokens: list[Token]) -> None:
        self.sections: list[tuple[str, int]] = []
        # (section, rank) -> tokens of that card or block, in order
        self.units: dict[tuple[str, int], list[Token]] = {}
        self.errors: list[str] = []
        self.candidates: list[int] = []
        self.card_ranks: list[int] = []
        self.block_ranks: list[int] = []
        self._walk(tokens)

    def _walk(self, tokens: list[Token]) -> None:
        section, unit = "", None
        titles = 0
        for i, tok in enumerate(tokens):
            if tok.type == "heading_open":
                level, text = int(tok.tag[1]), tokens[i + 1].content
                if not tok.markup.startswith("#"):
                    self.errors.append(f"line {_line(tok)}: setext heading {text[:40]!r}")
                if level == 1:
                    titles += 1
                    if text != TITLE or titles > 1 or self.sections:
                        self.errors.append(f"line {_line(tok)}: unexpected title {text[:40]!r}")
                    continue
                if level == 2:
                    section, unit = text, None
                    self.sections.append((text, _line(tok)))
                    if text not in READER_SECTIONS | {RECOMMENDATIONS, DETAILED}:
                        self.errors.append(f"line {_line(tok)}: unknown section {text[:40]!r}")
                    continue
                match = _P_HEADING.fullmatch(text)
                if level == 3 and section == RECOMMENDATIONS and match:
                    unit = (section, int(match.group(1)))
                    self.card_ranks.append(unit[1])
                elif level == 4 and section == DETAILED and match:
                    unit = (section, int(match.group(1)))
                    self.block_ranks.append(unit[1])
                    if not self.candidates or self.candidates[-1] != unit[1] \
                            or tokens[i - 1].type != "html_block":
                        self.errors.append(f"line {_line(tok)}: P{unit[1]} block lacks its "
                                           "reasoning-candidate marker")
                else:
                    self.errors.append(f"line {_line(tok)}: unexpected level-{level} heading "
                                       f"{text[:40]!r} in section {section!r}")
                continue
            if tok.type == "html_block":
                content = tok.content.strip()
                cand = _CANDIDATE.fullmatch(content)
                if cand and section == DETAILED:
                    self.candidates.append(int(cand.group(1)))
                    unit = None
                    continue
                if not (_BEGIN.fullmatch(content) or _END.fullmatch(content)):
                    self.errors.append(f"line {_line(tok)}: HTML block that is not a marker: "
                                       f"{content[:60]!r}")
            if unit is not None:
                self.units.setdefault(unit, []).append(tok)
            elif tok.type == "html_block":
                self.errors.append(f"line {_line(tok)}: marker outside a card or block")


def _inline_where_tags_can_be(state: StateCore) -> None:
    """markdown-it's inline pass, run only on the runs of text that hold a ``<``.

    The checks read one thing from inline tokens: the inline HTML in them,
    which only a ``<`` can open (an entity such as ``&lt;`` stays text). Runs
    of text without one get no child tokens instead of a parse that cannot
    find any (most of a page's runs: its table cells and sentences).
    """
    for token in state.tokens:
        if token.type == "inline":
            token.children = []
            if "<" in token.content:
                state.md.inline.parse(token.content, state.md, state.env, token.children)


def _check_inline_html(tokens: list[Token]) -> list[str]:
    errors = []
    for tok in _inline_tokens(tokens):
        if tok.type == "html_inline" and tok.content not in _ALLOWED_INLINE_HTML:
            errors.append(f"inline HTML {tok.content[:60]!r} (only <br> is allowed)")
    return errors


def _check_tables(tokens: list[Token], lines: list[str]) -> list[str]:
    errors, width = [], 0
    for tok in tokens:
        if tok.type == "thead_open" and tok.map:
            width = len(split_cells(lines[tok.map[0]]))
        elif tok.type == "tr_open" and tok.map:
            n = len(split_cells(lines[tok.map[0]]))
            if n != width:
                errors.append(f"line {tok.map[0] + 1}: table row has {n} cells, header has {width}")
    return errors


def _markers(unit: list[Token], kind: str) -> list[re.Match[str]]:
    found = []
    for tok in unit:
        if tok.type == "html_block":
            m = _BEGIN.fullmatch(tok.content.strip())
            if m and m.group(1) == kind:
                found.append(m)
    return found


def _paragraphs(unit: list[Token]) -> list[str]:
    return [tok.content for tok in unit if tok.type == "inline"]


def _check_card(rank: int, unit: list[Token], finding: Mapping[str, Any]) -> list[str]:
    errors = []
    text = "\n".join(_paragraphs(unit))
    for label in CARD_LABELS:
        if label not in text:
            errors.append(f"P{rank}: missing {label}")
    marks = _markers(unit, "p_item")
    if len(marks) != 1:
        errors.append(f"P{rank}: {len(marks)} p_item markers, expected 1")
    else:
        m = marks[0]
        for value, key in ((m.group(2), "impact_score_low"), (m.group(3), "impact_score"),
                           (m.group(4), "impact_score_high")):
            if not _close(value, finding.get(key)):
                errors.append(f"P{rank}: marker {value} differs from {key}={finding.get(key)}")
    if finding.get("estimate_method") == "heuristic" and "**Warning — estimated:**" not in text:
        errors.append(f"P{rank}: heuristic finding lacks the 'Warning — estimated' line")
    return errors


def _check_block(rank: int, unit: list[Token], finding: Mapping[str, Any], lines: list[str],
                 metrics: Mapping[str, Any]) -> list[str]:
    errors = []
    paras = _paragraphs(unit)
    positions = [next((i for i, p in enumerate(paras) if p.startswith(lbl)), -1) for lbl in DETAIL_LABELS]
    if min(positions) < 0 or positions != sorted(positions):
        errors.append(f"block {rank}: labels {DETAIL_LABELS} missing or out of order")
    if "**Data:**" not in paras:
        errors.append(f"block {rank}: '**Data:**' must stand alone")
    heads = [t for t in unit if t.type == "thead_open" and t.map]
    if not heads:
        errors.append(f"block {rank}: no Data table")
    else:
        cols = COMPARATIVE_COLUMNS if metrics.get("comparison_scope") == "comparative" else STANDALONE_COLUMNS
        header = split_cells(lines[heads[0].map[0]])
        if tuple(header[: len(cols)]) != cols:
            errors.append(f"block {rank}: Data table header {header[:len(cols)]} is not {list(cols)}")
        errors += _check_data_rows(rank, unit, finding, lines, metrics)
    marks = _markers(unit, "detail_estimate")
    if len(marks) != 1:
        errors.append(f"block {rank}: {len(marks)} detail_estimate markers, expected 1")
    else:
        for value, key in ((marks[0].group(2), "impact_score_low"), (marks[0].group(4), "impact_score_high")):
            if not _close(value, finding.get(key)):
                errors.append(f"block {rank}: marker {value} differs from {key}={finding.get(key)}")
    return errors


def _check_data_rows(rank: int, unit: list[Token], finding: Mapping[str, Any], lines: list[str],
                     metrics: Mapping[str, Any]) -> list[str]:
    """Args, Kernel Path, Kernel Name and Operation cells are verbatim from the JSON."""
    ops = [o for o in metrics.get("operations") or [] if isinstance(o, Mapping)]
    valid = [{safe_cell(str(o.get(key))) for o in ops if o.get(key)} | {"—"}
             for key in ("args", "launcher_path", "kernel_name_trunc")]
    names = {safe_cell(str(m.get("operation"))) for m in finding.get("members") or [] if isinstance(m, Mapping)}
    errors = []
    in_body = False
    for tok in unit:
        if tok.type == "tbody_open":
            in_body = True
        elif tok.type == "tbody_close":
            break
        elif tok.type == "tr_open" and in_body and tok.map:
            cells = split_cells(lines[tok.map[0]])
            for col, allowed in zip((1, 2, 3), valid):
                if col < len(cells) and cells[col] and cells[col] not in allowed:
                    errors.append(f"block {rank}: cell {cells[col][:40]!r} is not verbatim from operations[]")
            if names and cells and cells[0] not in names:
                errors.append(f"block {rank}: row {cells[0][:40]!r} is not a member of the finding")
    return errors


def _check_sections(walk: _Walk, text: str, lines: list[str]) -> list[str]:
    """The two closing sections: each once, last and in order, and no copy of their heading text before them."""
    errors = []
    names = [name for name, _ in walk.sections]
    if names.count(RECOMMENDATIONS) != 1 or names.count(DETAILED) != 1:
        errors.append("'## Recommendations' and '## Detailed Analysis' must each appear once")
    elif names[-2:] != [RECOMMENDATIONS, DETAILED]:
        errors.append("'## Recommendations' then '## Detailed Analysis' must be the last sections")
    for name, line in walk.sections:
        if name in (RECOMMENDATIONS, DETAILED) and text.find(f"## {name}") != sum(
                len(x) + 1 for x in lines[: line - 1]):
            errors.append(f"the text '## {name}' appears before its heading")
    return errors


def _check_structure_marks(tokens: list[Token], text: str, lines: list[str]) -> list[str]:
    """Comment markers and heading-like lines that trace text could have forged."""
    errors = []
    markers = sum(1 for t in tokens if t.type == "html_block")
    if not text.count("<!--") == text.count("-->") == markers:
        errors.append(f"{text.count('<!--')} comment openings and {text.count('-->')} closings for "
                      f"{markers} markers: trace text opened or closed a comment")
    headings = sum(1 for t in tokens if t.type == "heading_open")
    if sum(1 for line in lines if _ATX_LINE.match(line)) != headings:
        errors.append("a line starts like a heading but is not one")
    return errors


def _check_findings(walk: _Walk, tokens: list[Token], lines: list[str], metrics: Mapping[str, Any]) -> list[str]:
    """The cards and reasoning blocks against the metrics' findings: one of each per finding, in rank order."""
    errors = []
    findings = [f for f in metrics.get("category_findings") or [] if isinstance(f, Mapping)]
    if metrics.get("status") != "OK":
        findings_expected: list[Mapping[str, Any]] = []
        if findings:
            errors.append(f"status {metrics.get('status')} with {len(findings)} findings")
    else:
        findings_expected = findings
    ranks = list(range(1, len(findings_expected) + 1))
    if walk.card_ranks != ranks:
        errors.append(f"P-cards {walk.card_ranks} should be {ranks}")
    if walk.block_ranks != ranks or walk.candidates != ranks:
        errors.append(f"reasoning blocks {walk.block_ranks} / markers {walk.candidates} should be {ranks}")
    by_rank = {f.get("rank"): f for f in findings_expected}
    for (section, rank), unit in walk.units.items():
        finding = by_rank.get(rank)
        if finding is None:
            errors.append(f"P{rank} has no category_findings entry")
        elif section == RECOMMENDATIONS:
            errors += _check_card(rank, unit, finding)
        else:
            errors += _check_block(rank, unit, finding, lines, metrics)
    ends = sum(1 for t in tokens if t.type == "html_block" and _END.fullmatch(t.content.strip()))
    if ends != 2 * len(findings_expected):
        errors.append(f"{ends} impact-end markers for {len(findings_expected)} findings")
    return errors


def verify_findings(text: str, metrics: Mapping[str, Any]) -> list[str]:
    """Every way ``text`` breaks the findings contract for ``metrics``; empty when none.

    :param text: the findings markdown.
    :param metrics: the metrics dict written next to it.
    :return: one plain-words problem per entry.
    """
    md = MarkdownIt("commonmark").enable("table")
    md.core.ruler.at("inline", _inline_where_tags_can_be)
    tokens = md.parse(text)
    lines = text.split("\n")
    walk = _Walk(tokens)
    errors = list(walk.errors)
    if _ODD_BREAK.search(text):
        # Line numbers would differ between renderers and the host's checker.
        errors.append("a line separator other than \\n is in the text")
    errors += _check_inline_html(tokens)
    errors += _check_tables(tokens, lines)
    errors += _check_sections(walk, text, lines)
    errors += _check_structure_marks(tokens, text, lines)
    errors += _check_findings(walk, tokens, lines, metrics)
    return errors


def ensure_findings(text: str, metrics: Mapping[str, Any]) -> None:
    """Raise :class:`FindingsContractError` when ``text`` breaks the contract."""
    problems = verify_findings(text, metrics)
    if problems:
        raise FindingsContractError(problems)
