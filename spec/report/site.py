"""``make site``: a static site for reading the zoo side by side — per model, its spec, the judge's
forward pass and the torch, Keras and JAX code in three columns, aligned on the canonical layers each
block builds (:mod:`spec.report.code`), with the model's numbers from the last ``make compare``
(``reports/compare.json``) beside it; the differences catalogue and the findings as cross-linked
pages; an index with the report's tables, sortable.

Every page is one self-contained HTML file (styles and the sorting script inline, figures as inline
SVG): the site works offline from a ``file://`` URL. ``python -m spec.report.site`` builds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import html
import itertools
import json
import math
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spec.backend import FRAMEWORKS, NativeBackend, framework_of, load_backend, process_backends
from spec.errors import BackendUnavailable
from spec.models import ZOO, ModelSpec
from spec.recipes import RECIPES, SEQUENCE_RECIPES, TRANSFORMER_RECIPES
from spec.report.code import (
    CATALOGUE_TAG,
    FINDING_TAG,
    ROOT,
    Block,
    Built,
    aligned,
    built,
    forward_blocks,
    judge_blocks,
    tags,
)

CATALOGUE = ROOT / "docs" / "framework-differences.md"
FINDINGS = ROOT / "docs" / "findings.md"
FRAMEWORK_TITLES = {"torch": "PyTorch", "keras": "Keras 3", "jax": "JAX · Flax NNX"}
SITE = "site"  # the site's folder, beside compare.md
MODELS_DIR = "models"  # the model pages, under the site's root


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", "", html.unescape(text)).lower()).strip("-")


def model_page(name: str) -> str:
    return f"{MODELS_DIR}/{name}.html"


# ---------------------------------------------------------------- pages


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 1.5em 3em; color: #1d1d1f; }
nav { padding: .6em 0; border-bottom: 1px solid #ddd; margin-bottom: 1em; }
nav a { margin-right: 1.2em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; }
th { background: #f4f4f6; } table.sortable th { cursor: pointer; } th.sorted-asc::after { content: " ▲"; }
th.sorted-desc::after { content: " ▼"; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00020; font-weight: 600; } .good { color: #0a7a28; }
.columns { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: .6em; margin: .4em 0 1.4em; }
.column { border: 1px solid #ddd; border-radius: 4px; overflow-x: auto; background: #fcfcfd; }
.column h4 { margin: 0; padding: .3em .6em; background: #f0f0f4; font: 600 12px system-ui, sans-serif; }
.column .where { margin: .3em .6em 0; color: #555; font-size: 12px; }
.column.missing { padding: .6em; color: #555; font-style: italic; }
.code { font: 12px/1.4 ui-monospace, monospace; white-space: pre; padding: .3em 0; }
.line { display: block; padding-right: .6em; } .line .ln { display: inline-block; width: 3.2em; color: #999;
  text-align: right; margin-right: .8em; user-select: none; }
.line.built { background: #fff6d5; } .line.pinned { background: #e6f0ff; }
a.tag { color: #1a4fb0; font-weight: 600; }
.layers { color: #444; margin: .8em 0 .2em; } .layers code { background: #f2f2f2; padding: 0 .25em; }
details summary { cursor: pointer; color: #555; }
svg.curve { border: 1px solid #ddd; background: #fff; } .legend span { margin-right: 1em; }
.md table { font-size: 12.5px; } .md td code, .md th code { font-size: 11.5px; }
tr:target, h2:target { background: #fff6d5; }
"""

# Records any script error on the page (the browser test reads it back from the DOM), then makes
# every table.sortable sortable by a click on its header: numbers by value, text alphabetically.
SCRIPT = """
window.addEventListener("error", function (event) {
  var root = document.documentElement;
  root.dataset.scriptErrors = (root.dataset.scriptErrors || "") + event.message + "\\n";
});
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var ascending = !th.classList.contains("sorted-asc");
        table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(row) {
          var text = (row.cells[column] || {textContent: ""}).textContent.trim();
          var plain = text.replace(/[,×%]/g, "");  // 1,070,794 · 1.52× · 12.5%
          return /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i.test(plain) ? parseFloat(plain) : text.toLowerCase();
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.documentElement.dataset.ready = "yes";
});
"""


def page(title: str, body: str, depth: int = 0) -> str:
    """A whole HTML page; ``depth``: how many folders below the site's root it lies."""
    up = "../" * depth
    nav = (
        f'<nav><a href="{up}index.html">triptych</a><a href="{up}index.html#models">models</a>'
        f'<a href="{up}catalogue.html">differences catalogue</a><a href="{up}findings.html">findings</a>'
        + "".join(f'<a href="{up}{doc_page(doc.name)}">{doc.stem}</a>' for doc in other_docs())
        + "</nav>"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · triptych</title>'
        f"<style>{STYLE}{pygments_style()}</style><script>{SCRIPT}</script></head>\n<body>{nav}\n{body}\n</body></html>\n"
    )


# ---------------------------------------------------------------- code


def highlighted(lines: Sequence[str]) -> list[str]:
    """Python source lines as HTML, one string per line, coloured with Pygments' token classes."""
    from pygments.lexers import PythonLexer
    from pygments.token import STANDARD_TYPES

    out: list[str] = [""]
    for token, text in PythonLexer(stripnl=False, ensurenl=False).get_tokens("\n".join(lines)):
        while token not in STANDARD_TYPES:
            token = token.parent
        css = STANDARD_TYPES[token]
        for index, piece in enumerate(text.split("\n")):
            if index:
                out.append("")
            if piece:
                out[-1] += f'<span class="{css}">{html.escape(piece)}</span>' if css else html.escape(piece)
    return out[: len(lines)]


@functools.cache
def pygments_style() -> str:
    from pygments.formatters import HtmlFormatter

    return str(HtmlFormatter(style="friendly").get_style_defs(".code"))


@dataclasses.dataclass
class Links:
    """What the catalogue's rows and the findings are linked from: page → the rows (topics) and
    findings its code names, collected while the model pages are written."""

    topics: dict[str, str]  # a catalogue topic (lower case) -> its row's anchor
    findings: set[int]
    catalogue_uses: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # anchor -> model names
    finding_uses: dict[int, set[str]] = dataclasses.field(default_factory=dict)


def finding_links(text: str, up: str = "") -> str:
    """``text`` (HTML) with each ``finding N`` linked to the finding."""
    return FINDING_TAG.sub(
        lambda m: f'<a class="tag" href="{up}findings.html#finding-{m.group(1)}">{m.group(0)}</a>', text
    )


def code_block(block: Block, links: Links, model: str, depth: int = 1) -> str:
    """A block's lines, numbered as in its file; lines that construct a layer and lines that pin a
    catalogue row or name a finding are marked, the latter linked."""
    up = "../" * depth
    rows = []
    for number, (text, html_line) in enumerate(zip(block.lines(), highlighted(block.lines())), block.start):
        topics, findings = tags(text)
        classes = ["line"] + (["built"] if number in block.built_at else []) + (["pinned"] if topics else [])
        for topic in topics:
            if topic.strip().lower() not in links.topics:
                raise LookupError(
                    f"{block.relative_file()}:{number} names catalogue row {topic!r}, which does not exist"
                )
            links.catalogue_uses.setdefault(links.topics[topic.strip().lower()], set()).add(model)
        for finding in findings:
            if finding not in links.findings:
                raise LookupError(f"{block.relative_file()}:{number} names finding {finding}, which does not exist")
            links.finding_uses.setdefault(finding, set()).add(model)
        html_line = CATALOGUE_TAG.sub(
            lambda m: (
                f'<a class="tag" href="{up}catalogue.html#{links.topics[m.group(1).strip().lower()]}">{m.group(0)}</a>'
            ),
            html_line,
        )
        html_line = finding_links(html_line, up)
        rows.append(f'<span class="{" ".join(classes)}"><span class="ln">{number}</span>{html_line}</span>')
    return '<div class="code">' + "".join(rows) + "</div>"


def columns(cells: Mapping[str, str]) -> str:
    return '<div class="columns">' + "".join(cells[fw] for fw in FRAMEWORKS) + "</div>"


def column(framework: str, blocks: Sequence[Block], links: Links, model: str) -> str:
    """A framework's cell: its blocks, outermost first, each under its file and function."""
    parts = [f"<h4>{FRAMEWORK_TITLES[framework]}</h4>"]
    for block in blocks:
        parts.append(f'<p class="where">{html.escape(block.relative_file())} · {html.escape(block.title)}</p>')
        parts.append(code_block(block, links, model))
    return f'<div class="column {framework}" data-framework="{framework}">{"".join(parts)}</div>'


def missing(framework: str, why: str) -> str:
    return (
        f'<div class="column missing {framework}" data-framework="{framework}">'
        f"<h4>{FRAMEWORK_TITLES[framework]}</h4>{html.escape(why)}</div>"
    )


def layer_list(layers: Sequence[str], shown: int = 6) -> str:
    names = ", ".join(f"<code>{html.escape(layer)}</code>" for layer in layers[:shown])
    if len(layers) > shown:
        rest = ", ".join(f"<code>{html.escape(layer)}</code>" for layer in layers[shown:])
        names += f" <details><summary>and {len(layers) - shown} more</summary>{rest}</details>"
    return names


# ---------------------------------------------------------------- numbers


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return html.escape(str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], ok: Iterable[bool | None] | None = None) -> str:
    """A sortable table; numeric cells right-aligned; a row whose ``ok`` is False is marked."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row, row_ok in zip(rows, ok if ok is not None else itertools.repeat(None)):
        cells = "".join(
            f'<td class="num">{fmt(v)}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{v if isinstance(v, Markup) else fmt(v)}</td>"
            for v in row
        )
        mark = "" if row_ok is None else (' class="good"' if row_ok else ' class="bad"')
        body.append(f"<tr{mark}>{cells}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class Markup(str):
    """HTML that :func:`table` puts in a cell as it is."""


def loss_curve_svg(curves: Mapping[str, Sequence[float]], width: int = 560, height: int = 220) -> str:
    """Each backend's training loss (log scale) over the recipe's steps, as inline SVG."""
    from spec.report.plots import BACKEND_STYLES

    values = [v for curve in curves.values() for v in curve if v > 0 and math.isfinite(v)]
    if not values:
        return "<p>No finite positive losses to draw.</p>"
    low, high = math.log10(min(values)), math.log10(max(values))
    high = high if high > low else low + 1
    pad = 34
    paths, legend = [], []
    for backend, curve in curves.items():
        color = BACKEND_STYLES.get(backend, {}).get("color", "#333")
        points = [
            (
                pad + (width - pad - 8) * i / max(len(curve) - 1, 1),
                8 + (height - pad) * (high - math.log10(v)) / (high - low),
            )
            for i, v in enumerate(curve)
            if v > 0 and math.isfinite(v)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        paths.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.4" points="{path}">'
            f"<title>{html.escape(backend)}</title></polyline>"
        )
        legend.append(f'<span style="color:{color}">■ {html.escape(backend)}</span>')
    axis = (
        f'<text x="2" y="14" font-size="10">{10**high:.3g}</text>'
        f'<text x="2" y="{height - pad + 8}" font-size="10">{10**low:.3g}</text>'
        f'<text x="{width / 2:.0f}" y="{height - 6}" font-size="10">step →</text>'
    )
    svg = f'<svg class="curve" width="{width}" height="{height}" role="img">{axis}{"".join(paths)}</svg>'
    return f'{svg}<div class="legend">{"".join(legend)}</div>'


MODEL_COLUMNS = {  # the model rows of compare.json, as the page heads them
    "backend": "backend",
    "device": "device",
    "parameters": "params",
    "= spec": "params_match_spec",
    "forward max |error|": "forward_max_abs_error",
    "forward error / tolerance": "forward_scaled_error",
    "gradient rel. error": "gradient_max_rel_error",
    "gradient tolerance": "gradient_tolerance",
    "witness gradient error": "witness_gradient_error",
    "ok": "ok",
    "not native": "unsupported",
}


def recipes_of(model: str) -> list[str]:
    every = {**RECIPES, **SEQUENCE_RECIPES, **TRANSFORMER_RECIPES}
    return [name for name, recipe in every.items() if recipe.model.name == model]


def numbers_section(name: str, report: Mapping[str, Any] | None) -> str:
    if report is None:
        return (
            '<h2 id="numbers">Numbers</h2><p>No report yet: run <code>make compare</code>, which builds this site '
            "with its numbers.</p>"
        )
    parts = ['<h2 id="numbers">Numbers from the last <code>make compare</code></h2>']
    rows = [r for r in report.get("models", []) if r["model"] == name]
    if rows:
        parts.append("<h3>Parameters, forward and gradients against the judge (float32)</h3>")
        parts.append(
            table(
                list(MODEL_COLUMNS),
                ([r.get(k) for k in MODEL_COLUMNS.values()] for r in rows),
                (r.get("ok") for r in rows),
            )
        )
    precisions = [r for r in report.get("precisions", []) if r["model"] == name]
    if precisions:
        keys = [k for k in precisions[0] if k not in ("model",)]
        parts.append("<h3>Precisions</h3>")
        parts.append(table(keys, ([r[k] for k in keys] for r in precisions), (r.get("ok") for r in precisions)))
    for recipe in recipes_of(name):
        runs = [r for r in report.get("convergence", []) if r["recipe"] == recipe]
        if not runs:
            continue
        keys = [k for k in runs[0] if k not in ("recipe",)]
        parts.append(f'<h3 id="recipe-{slug(recipe)}">Recipe <code>{html.escape(recipe)}</code></h3>')
        parts.append(table(keys, ([r[k] for k in keys] for r in runs), (r.get("ok") for r in runs)))
        curves = report.get("loss_curves", {}).get(recipe)
        if curves:
            parts.append(loss_curve_svg(curves))
    speed = report.get("speed") or {}
    mine = [r for r in speed.get("rows", []) if r["group"].split(" · ")[0] == name]
    if mine:
        fastest = {
            g: min(r["seconds"] for r in mine if r["group"] == g and not r["baseline"])
            for g in {r["group"] for r in mine}
        }
        parts.append("<h3>Speed (from <code>make bench</code>)</h3>")
        parts.append(
            table(
                ["model · step · mode", "backend", "ms per call", "× fastest", "baseline ratio (ours / hand-written)"],
                (
                    [
                        r["group"],
                        r["backend"] + (" (baseline)" if r["baseline"] else ""),
                        r["seconds"] * 1e3,
                        r["seconds"] / fastest[r["group"]],
                        r["interleaved_ratio"],
                    ]
                    for r in mine
                ),
            )
        )
    if len(parts) == 1:
        parts.append(f"<p>The last report did not run <code>{html.escape(name)}</code>.</p>")
    return "".join(parts)


# ---------------------------------------------------------------- model pages


def spec_section(spec: ModelSpec) -> str:
    fields = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)]  # type: ignore[arg-type]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(repr(v))}</code></td></tr>" for k, v in fields)
    return f'<h2 id="spec">The spec</h2><p>{html.escape(spec.describe())}</p><table>{rows}</table>'


def judge_section(spec: ModelSpec, links: Links) -> str:
    """The judge's arm for the spec's kind and its model function; the functions they use, folded."""
    parts = ['<h2 id="judge">The judge (NumPy, float64)</h2>']
    blocks = judge_blocks(spec)
    for index, block in enumerate(blocks):
        if index == 2:
            parts.append(f"<details><summary>the {len(blocks) - 2} functions of the judge these use</summary>")
        parts.append(f"<p><code>{html.escape(block.relative_file())}</code> · {html.escape(block.title)}</p>")
        parts.append(f'<div class="column judge">{code_block(block, links, spec.name)}</div>')
    return "".join(parts) + ("</details>" if len(blocks) > 2 else "")


def model_body(
    spec: ModelSpec, models: Mapping[str, Built | str], report: Mapping[str, Any] | None, links: Links
) -> str:
    """A model page's body; ``models``: per framework, its model or why it is not here."""
    ready = {fw: m for fw, m in models.items() if isinstance(m, Built) and m.unsupported is None}

    def why(fw: str) -> str:
        m = models[fw]
        return m if isinstance(m, str) else f"Not native: {m.unsupported}"

    parts = [
        f"<h1>{html.escape(spec.name)}</h1>",
        spec_section(spec),
        numbers_section(spec.name, report),
        judge_section(spec, links),
    ]
    parts.append(
        '<h2 id="layers">Layer by layer</h2><p>Each row: the canonical layers (the spec\'s names for the '
        "layers that hold tensors) and, per framework, the block of its <code>models.py</code> that builds "
        "them; the constructing lines are shaded yellow, lines that pin a row of the differences catalogue "
        "blue. Read from the models as they were built for this page, not copied.</p>"
    )
    for index, row in enumerate(aligned(spec, ready)):
        parts.append(f'<div class="row" id="layer-{index}"><p class="layers">{layer_list(row.layers)}</p>')
        parts.append(
            columns(
                {
                    fw: column(fw, row.blocks[fw], links, spec.name) if fw in ready else missing(fw, why(fw))
                    for fw in FRAMEWORKS
                }
            )
        )
        parts.append("</div>")
    parts.append(
        '<h2 id="forward">The forward pass</h2><p>Each class the models are made of, and the method each '
        "framework calls on it (<code>forward</code>, <code>call</code>, <code>__call__</code>).</p>"
    )
    for name, blocks in forward_blocks(ready):
        parts.append(
            f'<div class="row" id="class-{slug(name)}"><p class="layers">class <code>{html.escape(name)}</code></p>'
        )
        cells = {}
        for fw in FRAMEWORKS:
            block = blocks.get(fw)
            if block is not None:
                cells[fw] = column(fw, [block], links, spec.name)
            elif fw in ready:
                cells[fw] = missing(
                    fw, f"{FRAMEWORK_TITLES[fw]}'s model has no such class, or the class inherits the method."
                )
            else:
                cells[fw] = missing(fw, why(fw))
        parts.append(columns(cells) + "</div>")
    return "\n".join(parts)


# ---------------------------------------------------------------- the catalogue, the findings, the index


def doc_page(doc: str) -> str:
    """The site's page for ``docs/<doc>``: the catalogue and the findings by their role, the rest by name."""
    return {CATALOGUE.name: "catalogue.html", FINDINGS.name: "findings.html"}.get(
        doc, doc.removesuffix(".md") + ".html"
    )


def markdown(text: str) -> str:
    """Markdown as HTML (for a page at the site's root); a link to another of docs/ goes to its page,
    and ``finding N`` links to the finding."""
    from markdown_it import MarkdownIt

    rendered = finding_links(str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text)))
    return re.sub(
        r'href="([\w-]+\.md)(#[^"]*)?"', lambda m: f'href="{doc_page(m.group(1))}{m.group(2) or ""}"', rendered
    )


def other_docs() -> list[Path]:
    """The docs that are pages of the site besides the catalogue and the findings."""
    return sorted(doc for doc in (ROOT / "docs").glob("*.md") if doc not in (CATALOGUE, FINDINGS))


def catalogue_topics(text: str) -> dict[str, str]:
    """Each catalogue table's body row: its topic (first cell, lower case) -> its anchor; the first
    row where a topic repeats. A table's header is the row above its ``|---|`` line."""
    anchors: dict[str, str] = {}
    lines = text.splitlines()
    for line, below in zip(lines, [*lines[1:], ""]):
        is_separator = set(line.replace("|", "").strip()) <= set("-: ")
        if line.startswith("|") and not is_separator and not below.startswith("|---"):
            topic = line.strip("|").split("|")[0].strip().replace("`", "").lower()
            anchors.setdefault(topic, f"row-{slug(topic)}")
    return anchors


def catalogue_page(links: Links) -> str:
    rendered = markdown(CATALOGUE.read_text())
    seen: set[str] = set()

    def anchor(match: re.Match[str]) -> str:
        topic = re.sub(r"<[^>]+>", "", html.unescape(match.group(1))).lower()
        name = links.topics.get(topic)
        if name is None or name in seen:
            return match.group(0)
        seen.add(name)
        back = model_links("pinned in the code of", links.catalogue_uses.get(name, set()))
        return f'<tr id="{name}">\n<td>{match.group(1)}{back and f"<br><small>{back}</small>"}</td>'

    body = re.sub(r"<tr>\n<td>(.*?)</td>", anchor, rendered)
    return page("Differences catalogue", f'<div class="md">{body}</div>')


def model_links(lead: str, models: set[str]) -> str:
    """``lead`` and a link to each model's code, or nothing where there is none."""
    return lead + " " + ", ".join(f'<a href="{model_page(m)}#layers">{m}</a>' for m in sorted(models)) if models else ""


def finding_numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)}


def findings_page(links: Links) -> str:
    rendered = markdown(FINDINGS.read_text())

    def anchor(match: re.Match[str]) -> str:
        number = int(match.group(1))
        back = model_links("named in the code of", links.finding_uses.get(number, set()))
        return f'<h2 id="finding-{number}">{number}. {match.group(2)}</h2>{back and f"<p class=layers>{back}</p>"}'

    body = re.sub(r"<h2>(\d+)\. (.*?)</h2>", anchor, rendered)
    return page("Findings", f'<div class="md">{body}</div>')


def index_page(
    report: Mapping[str, Any] | None,
    compare_md: str | None,
    failures: Mapping[str, str],
    pages: Sequence[str],
    figures: Path | None = None,
    out: Path | None = None,
) -> str:
    """The index: the zoo (linked where the model has a page: ``pages``) and the report's tables, its
    figures copied from ``figures`` to ``out`` (a figure not there is named instead of shown)."""
    parts = [
        "<h1>triptych: the zoo side by side</h1>",
        "<p>Every classic model written once as a spec, implemented in PyTorch, Keras 3 and JAX (Flax NNX), "
        "and judged against a NumPy float64 reference. Each model's page shows the three implementations "
        'aligned layer by layer, with its numbers. See also the <a href="catalogue.html">differences catalogue</a> '
        'and the <a href="findings.html">findings</a>.</p>',
        '<h2 id="models">Models</h2>',
    ]
    ok_by_model: dict[str, list[bool]] = {}
    for row in (report or {}).get("models", []):
        ok_by_model.setdefault(row["model"], []).append(row["ok"])
    parts.append(
        table(
            ["model", "kind", "architecture", "judged on every backend"],
            (
                [
                    Markup(f'<a href="{model_page(name)}">{name}</a>') if name in pages else name,
                    type(spec).__name__,
                    spec.describe(),
                    all(ok_by_model[name]) if name in ok_by_model else None,
                ]
                for name, spec in ZOO.items()
            ),
        )
    )
    for framework, why in failures.items():
        parts.append(f'<p class="bad">{FRAMEWORK_TITLES[framework]}: {html.escape(why)}</p>')
    if compare_md is None:
        parts.append("<h2>The report</h2><p>No report yet: run <code>make compare</code>.</p>")
    else:
        rendered = markdown(compare_md).replace("<table>", '<table class="sortable">')
        rendered = re.sub(
            r'<(img|a) ([^>]*?)(src|href)="([\w.-]+\.png)"([^>]*)>',
            lambda m: (
                m.group(0) if copied(m.group(4), figures, out) else f"<em>({m.group(4)} not found)</em><{m.group(1)}>"
            ),
            rendered,
        )
        for name in pages:  # a model's name in a cell links to its page
            rendered = rendered.replace(f"<td>{name}</td>", f'<td><a href="{model_page(name)}">{name}</a></td>', 1)
        parts.append(f'<div class="md" id="report">{rendered}</div>')
    return page("triptych", "\n".join(parts))


# ---------------------------------------------------------------- building


def copied(name: str, figures: Path | None, out: Path | None) -> bool:
    """Copy the report's file ``name`` from ``figures`` into the site's folder ``out``; whether it was there."""
    if figures is None or out is None or not (figures / name).is_file():
        return False
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figures / name, out / name)
    return True


def framework_backends() -> tuple[dict[str, NativeBackend[Any]], dict[str, str]]:
    """One backend per framework this process can load (any Keras executor shows the same Keras
    code), and why a framework could not load."""
    found: dict[str, NativeBackend[Any]] = {}
    failures: dict[str, str] = {}
    for name in process_backends():
        framework = framework_of(name)
        if framework in found:
            continue
        try:
            backend = load_backend(name)
            assert isinstance(backend, NativeBackend)  # every triptych backend is one
            found[framework] = backend
            failures.pop(framework, None)
        except BackendUnavailable as exc:
            failures[framework] = str(exc)
    return found, failures


def build_site(
    out: Path,
    report: Mapping[str, Any] | None = None,
    compare_md: str | None = None,
    models: Sequence[str] = (),
    figures: Path | None = None,
) -> list[Path]:
    """Write the site under ``out``: the index, a page per zoo model (``models``: only these; pages of
    an earlier build are removed), the catalogue, the findings and the other docs; ``figures``: the
    folder of the files ``compare_md`` shows or links (its PNGs), copied into the site. Returns the
    paths written, the index last."""
    backends, failures = framework_backends()
    links = Links(catalogue_topics(CATALOGUE.read_text()), finding_numbers(FINDINGS.read_text()))
    shutil.rmtree(out / MODELS_DIR, ignore_errors=True)
    (out / MODELS_DIR).mkdir(parents=True)
    written = []
    names = list(models) or list(ZOO)
    for index, name in enumerate(names, 1):
        print(f"[site {index}/{len(names)}] {name}", file=sys.stderr, flush=True)
        spec = ZOO[name]
        per_framework: dict[str, Built | str] = {fw: failures.get(fw, f"{fw} is not installed") for fw in FRAMEWORKS}
        per_framework |= {fw: built(backend, spec) for fw, backend in backends.items()}
        path = out / model_page(name)
        path.write_text(page(name, model_body(spec, per_framework, report, links), depth=1))
        written.append(path)
    for name, text in [
        ("catalogue.html", catalogue_page(links)),
        ("findings.html", findings_page(links)),
        *(
            (doc_page(doc.name), page(doc.stem, f'<div class="md">{markdown(doc.read_text())}</div>'))
            for doc in other_docs()
        ),
        ("index.html", index_page(report, compare_md, failures, names, figures, out)),
    ]:
        (out / name).write_text(text)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triptych-site", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="where make compare wrote compare.json")
    parser.add_argument("--out", type=Path, default=None, help=f"the site's folder (default: <reports>/{SITE})")
    parser.add_argument("--model", action="append", choices=sorted(ZOO), default=[], help="only these model pages")
    args = parser.parse_args(argv)
    compare_json, compare_md = args.reports / "compare.json", args.reports / "compare.md"
    report = json.loads(compare_json.read_text()) if compare_json.exists() else None
    markdown_text = compare_md.read_text() if compare_md.exists() else None
    written = build_site(args.out or args.reports / SITE, report, markdown_text, args.model, args.reports)
    print(f"written: {len(written)} pages; open {written[-1].resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
