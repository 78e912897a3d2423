"""The site (`make site`, and the end of `make compare`): each zoo model's code aligned on its canonical
layers in the three frameworks, and the pages as a real browser renders them."""

from __future__ import annotations

import functools
import html
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import framework_backend
from spec.backend import FRAMEWORKS, Backend
from spec.cases import FIRST_OF_KIND
from spec.models import ZOO
from spec.params import layer_names
from spec.report import compare, site
from spec.report.code import ROOT, Built, aligned, built, forward_blocks, judge_blocks, tags

BROWSER_ENV = "TRIPTYCH_REQUIRE_BROWSER"  # set by CI: a missing chromium fails the browser test instead of skipping it


@pytest.fixture(scope="module")
def frameworks(request: pytest.FixtureRequest) -> dict[str, Backend]:
    """A backend per framework: the site shows all three side by side."""
    return {fw: framework_backend(request, fw) for fw in FRAMEWORKS}


@functools.cache
def built_models(name: str, backends: tuple[Backend, ...]) -> dict[str, Built]:
    return {b.framework: built(b, ZOO[name]) for b in backends}


def models_of(name: str, frameworks: dict[str, Backend]) -> dict[str, Built]:
    return built_models(name, tuple(frameworks.values()))


# `make test` builds the smallest model of each kind and one that torch refuses; CI every zoo model
QUICK = {*FIRST_OF_KIND.values(), "gru_reset_before"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in QUICK else pytest.mark.exhaustive) for n in ZOO])
def test_every_canonical_layer_is_built_by_code_of_each_framework(name: str, frameworks: dict[str, Backend]) -> None:
    """Each framework that builds the model has a call path in its models.py for every canonical
    layer; one that cannot says why; the aligned rows cover each canonical layer once."""
    spec = ZOO[name]
    models = models_of(name, frameworks)
    ready = {fw: m for fw, m in models.items() if m.unsupported is None}
    for framework, model in models.items():
        if model.unsupported is not None:
            assert not model.blocks and "is not supported by the" in model.unsupported
            continue
        assert set(model.blocks) == set(layer_names(spec)), framework
        for layer, path in model.blocks.items():
            assert path, (framework, layer)
            for block in path:
                assert block.file.name == "models.py" and block.file.parent.name == framework
                assert block.built_at and all(block.start <= line <= block.end for line in block.built_at)
    assert "torch" in ready or name in ("gru_reset_before", "transformer_keras_heads")  # torch's two refusals
    rows = aligned(spec, ready)  # layers built by the same code share a row, rows in the order of their first layer
    grouped = [layer for row in rows for layer in row.layers]
    assert sorted(grouped) == sorted(layer_names(spec)) and len(set(grouped)) == len(grouped)
    assert [row.layers[0] for row in rows] == sorted((row.layers[0] for row in rows), key=layer_names(spec).index)
    assert forward_blocks(ready), "no forward pass found"
    assert judge_blocks(spec)[0].case is not None
    # its page: every row of code has a column per framework, the refused framework's naming why
    links = site.Links(
        site.catalogue_topics(site.CATALOGUE.read_text()), site.finding_numbers(site.FINDINGS.read_text())
    )
    dom = Dom(site.page(name, site.model_body(spec, dict(models), None, links), depth=1))
    assert dom.rows and all(row == list(FRAMEWORKS) for row in dom.rows), dom.rows
    for framework, model in models.items():
        assert model.unsupported is None or model.unsupported in html.unescape(dom.text), framework


# The native class each framework's docs name for a layer kind: the lines that built the layer must
# name it (a call path that stopped in the wrong function would not).
NATIVE_CLASSES = {
    ("digits_mlp", "dense_0"): {"torch": "nn.Linear", "keras": "keras.layers.Dense", "jax": "nnx.Linear"},
    ("mnist_cnn", "conv_1"): {"torch": "nn.Conv2d", "keras": "keras.layers.Conv2D", "jax": "nnx.Conv"},
    ("digits_conv_autoencoder", "conv_transpose_0"): {
        "torch": "nn.ConvTranspose2d",
        "keras": "keras.layers.Conv2DTranspose",
        "jax": "nnx.ConvTranspose",
    },
    ("resnet18_cifar", "stage_1/block_0/bn_a"): {
        "torch": "BatchNorm2d",
        "keras": "keras.layers.BatchNormalization",
        "jax": "nnx.BatchNorm",
    },
    ("lstm_forecaster", "rnn_1"): {"torch": "nn.LSTM", "keras": "keras.layers.LSTM", "jax": "nnx.OptimizedLSTMCell"},
    ("transformer_classifier", "encoder_1/ffn_norm"): {
        "torch": "nn.TransformerEncoderLayer",
        "keras": "keras.layers.LayerNormalization",
        "jax": "nnx.LayerNorm",
    },
}


@pytest.mark.parametrize(("name", "layer"), list(NATIVE_CLASSES))
def test_the_lines_that_built_a_layer_name_the_frameworks_own_class(
    name: str, layer: str, frameworks: dict[str, Backend]
) -> None:
    for framework, model in models_of(name, frameworks).items():
        lines = [block.lines()[line - block.start] for block in model.blocks[layer] for line in block.built_at]
        constructing = "\n".join(model.blocks[layer][-1].lines())  # the block whose line made the layer
        expected = NATIVE_CLASSES[name, layer][framework]
        assert any(expected in line for line in lines) or expected in constructing, (framework, lines)


def test_every_tag_in_the_implementations_names_a_catalogue_row_or_a_finding() -> None:
    topics = site.catalogue_topics(site.CATALOGUE.read_text())
    findings = site.finding_numbers(site.FINDINGS.read_text())
    seen = 0
    for file in sorted((ROOT / "impls").rglob("*.py")):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            named_topics, named_findings = tags(line)
            seen += len(named_topics)
            for topic in named_topics:
                assert topic.strip().lower() in topics, f"{file}:{number}: no catalogue row {topic!r}"
            for finding in named_findings:
                assert finding in findings, f"{file}:{number}: no finding {finding}"
    assert seen >= 3 * 5  # each implementation pins several rows
    # and the catalogue page has the anchor each of them links to
    anchors = Dom(site.catalogue_page(site.Links(topics, findings))).ids
    assert set(topics.values()) <= anchors, set(topics.values()) - anchors


def test_a_tag_naming_no_catalogue_row_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "models.py"
    source.write_text("def layer():\n    return 1  # (catalogue: a row nobody wrote)\n")
    block = site.Block(source, "layer", None, 1, 2, (2,))
    links = site.Links(site.catalogue_topics(site.CATALOGUE.read_text()), set())
    with pytest.raises(LookupError, match="a row nobody wrote"):
        site.code_block(block, links, "digits_mlp")


# ---------------------------------------------------------------- in a browser


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get(BROWSER_ENV):
            pytest.fail(f"{BROWSER_ENV} is set but no chromium is installed (.ci/run installs Debian's)")
        pytest.skip("no chromium installed: Debian's `apt-get install chromium` (.ci/run installs it)")
    return found


class Browser:
    """Headless Chromium showing one page from its file:// URL, driven over the DevTools protocol on a
    pipe (``--remote-debugging-pipe``: JSON messages ending in NUL; Chromium reads fd 3, writes fd 4)."""

    TIMEOUT = 60.0

    def __init__(self, executable: str, page: Path, profile: Path) -> None:
        to_browser, from_browser = os.pipe(), os.pipe()
        command = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", page.resolve().as_uri(),
        ]  # fmt: skip
        # bash puts the pipes on fds 3 and 4 (a preexec_fn would fork this multithreaded process)
        wiring = f'exec "$@" 3<&{to_browser[0]} 4>&{from_browser[1]}'
        self.process = subprocess.Popen(
            ["bash", "-c", wiring, "chromium", *command],
            pass_fds=(to_browser[0], from_browser[1]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser[0])
        os.close(from_browser[1])
        self.send_fd, self.receive_fd = to_browser[1], from_browser[0]
        self.pending = b""
        self.next_id = 0
        try:
            self.open()
        except BaseException:
            self.__exit__()
            raise

    def open(self) -> None:
        """Attach to the page and wait until its script has run."""
        targets = self.call("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        # the page's script marks the root once it ran (site.SCRIPT)
        ready = "document.documentElement && document.documentElement.dataset.ready === 'yes'"
        waiting = f"new Promise(done => {{ (function wait() {{ {ready} ? done(1) : setTimeout(wait, 20); }})(); }})"
        for attempt in range(10):  # the first document (about:blank) may give way to the page while we wait
            try:
                self.evaluate(waiting)
                return
            except RuntimeError as exc:
                if "context was destroyed" not in str(exc) or attempt == 9:
                    raise

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            while b"\0" in self.pending:
                raw, self.pending = self.pending.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply["result"])
            if not select.select([self.receive_fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise TimeoutError(f"Chromium did not answer {method} in {self.TIMEOUT} s")
            chunk = os.read(self.receive_fd, 1 << 16)
            if not chunk:
                raise EOFError(f"Chromium closed the pipe (exit {self.process.poll()})")
            self.pending += chunk

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page (a promise's, once it settles)."""
        result = self.call(
            "Runtime.evaluate", self.session, expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        os.close(self.send_fd)
        os.close(self.receive_fd)


LAYOUT = """Array.from(document.querySelectorAll('.columns'), row => Array.from(row.children, column => {
    const box = column.getBoundingClientRect(); return [box.left, box.top, box.width]; }))"""


def rendered(browser: str, page: Path, profile: Path) -> tuple[Dom, list[list[list[float]]]]:
    """The page's DOM after its scripts ran, as headless Chromium renders it from a file:// URL, and
    where each code row's columns are on the screen (left, top, width)."""
    with Browser(browser, page, profile) as shown:
        return Dom(str(shown.evaluate("document.documentElement.outerHTML"))), shown.evaluate(LAYOUT)  # type: ignore[return-value]


class Dom(HTMLParser):
    """What the checks read off a rendered page: ids, links, the root's data attributes, the code
    columns of each row."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.assets: list[str] = []  # what a page loads besides itself: only files of the site (it works offline)
        self.root: dict[str, str | None] = {}
        self.rows: list[list[str]] = []  # per div.columns, its columns' data-framework
        self.text = ""
        self._depth = 0
        self._columns_depth: int | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.root = attributes
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "a" and attributes.get("href"):
            self.links.append(str(attributes["href"]))
        if attributes.get("src") or tag == "link":
            self.assets.append(str(attributes.get("src") or attributes.get("href")))
        if tag == "div":
            self._depth += 1
            classes = (attributes.get("class") or "").split()
            if "columns" in classes:
                self.rows.append([])
                self._columns_depth = self._depth
            elif "column" in classes and self._columns_depth == self._depth - 1:
                self.rows[-1].append(str(attributes.get("data-framework")))

    def handle_data(self, data: str) -> None:
        self.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self._columns_depth == self._depth:
                self._columns_depth = None
            self._depth -= 1


@pytest.fixture(scope="module")
def compared_site(tmp_path_factory: pytest.TempPathFactory, frameworks: dict[str, Backend]) -> Iterator[Path]:
    """The site as `make compare` writes it, for two models on torch (the report's numbers; the site
    shows every framework's code whichever backends the report ran)."""
    out = tmp_path_factory.mktemp("report")
    old_bench = compare.DEFAULT_BENCH
    compare.DEFAULT_BENCH = out / "no-bench.json"
    try:
        models = [
            "--model",
            "digits_mlp",
            "--model",
            "resnet18_narrow",
            "--model",
            "gru_reset_before",
        ]  # torch refuses the GRU
        argv = ["--backend", "torch", *models, "--no-training"]
        assert compare.main([*argv, "--out", str(out)]) == 0
    finally:
        compare.DEFAULT_BENCH = old_bench
    yield out / site.SITE


def test_make_compare_writes_the_site_with_its_numbers(compared_site: Path) -> None:
    pages = sorted(p.relative_to(compared_site).as_posix() for p in compared_site.rglob("*.html"))
    docs = [
        f"{doc.stem}.html"
        for doc in (ROOT / "docs").glob("*.md")
        if doc.name not in ("findings.md", "framework-differences.md")
    ]
    expected = ["catalogue.html", "findings.html", "index.html"]
    expected += [f"models/{name}.html" for name in ("digits_mlp", "gru_reset_before", "resnet18_narrow")]
    assert pages == sorted([*expected, *docs])
    text = (compared_site / "models" / "digits_mlp.html").read_text()
    assert "Numbers from the last <code>make compare</code>" in text
    assert '<td class="num">6,570</td>' in text  # digits_mlp's parameters (64·64+64 + 64·32+32 + 32·10+10)


def test_pages_render_in_a_browser_with_three_columns_no_broken_link_and_no_script_error(
    compared_site: Path, tmp_path: Path
) -> None:
    browser = chromium()
    pages = sorted(compared_site.rglob("*.html"))
    shown = {page.resolve(): rendered(browser, page, tmp_path / "profile") for page in pages}
    doms = {page: dom for page, (dom, _) in shown.items()}
    for page, (dom, layout) in shown.items():
        assert dom.root.get("data-ready") == "yes", f"{page}: its script did not finish"
        assert not dom.root.get("data-script-errors"), f"{page}: {dom.root.get('data-script-errors')}"
        for asset in dom.assets:
            assert not urlsplit(asset).scheme and (page.parent / asset).resolve().is_file(), f"{page} loads {asset}"
        for link in dom.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"{page}: links outside the site: {link}"
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target in doms, f"{page}: broken link {link}"
            assert not parts.fragment or parts.fragment in doms[target].ids, f"{page}: no #{parts.fragment} in {target}"
        if page.parent.name == site.MODELS_DIR:
            assert dom.rows, f"{page}: no code rows"
            assert all(row == list(FRAMEWORKS) for row in dom.rows), f"{page}: {dom.rows}"
            for columns in layout:  # side by side: one top, left to right, each wide enough to read
                assert len({top for _, top, _ in columns}) == 1 and [c[0] for c in columns] == sorted(
                    c[0] for c in columns
                )
                assert len(columns) == 3 and all(width > 200 for *_, width in columns), columns
    index = doms[(compared_site / "index.html").resolve()]
    assert {"models/digits_mlp.html", "models/resnet18_narrow.html"} <= set(index.links)
    catalogue = doms[(compared_site / "catalogue.html").resolve()]
    assert (
        "row-batchnorm-momentum" in catalogue.ids
        and "finding-19" in doms[(compared_site / "findings.html").resolve()].ids
    )


def test_a_loss_curve_is_drawn_per_backend() -> None:
    svg = site.loss_curve_svg({"torch": [2.3, 1.0, 0.5], "jax": [2.3, 1.1, 0.4]})
    assert svg.count("<polyline") == 2 and re.search(r"<title>jax</title>", svg)
    assert "No finite positive losses" in site.loss_curve_svg({"torch": [float("nan")]})


def test_a_click_on_a_column_header_sorts_the_table_by_it(compared_site: Path, tmp_path: Path) -> None:
    """On the index, in a real browser: the zoo by name (alphabetically, then reversed), and the
    report's first table by parameter count (numerically: 6,570 before 174,762; text after numbers)."""
    sort = """(function (table, column) {
        const values = () => Array.from(table.tBodies[0].rows, row => row.cells[column].textContent.trim());
        table.tHead.rows[0].cells[column].click(); const up = values();
        table.tHead.rows[0].cells[column].click(); return [up, values()];
    })"""
    with Browser(chromium(), compared_site / "index.html", tmp_path / "profile") as shown:
        up, down = shown.evaluate(f"{sort}(document.querySelector('table.sortable'), 0)")  # type: ignore[misc]
        report = "document.querySelectorAll('#report table')[0]"
        column = f"Array.from({report}.tHead.rows[0].cells).findIndex(c => c.textContent === 'params')"
        params_up, _ = shown.evaluate(f"{sort}({report}, {column})")  # type: ignore[misc]
    assert up == sorted(ZOO, key=str.lower) and down == up[::-1]
    counted = [v for v in params_up if v.replace(",", "").isdigit()]  # a refused model's row reads "not native"
    numbers = [float(v.replace(",", "")) for v in counted]
    assert params_up[: len(counted)] == counted and numbers == sorted(numbers) and len(set(numbers)) > 1


def test_the_report_s_figures_are_copied_into_the_site_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "loss_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    report = "![loss curves](loss_curves.png)\n\n[samples](gan_samples.png)\n"
    index = Dom(site.index_page(None, report, {}, [], figures=tmp_path, out=tmp_path / "site"))
    assert index.assets == ["loss_curves.png"] and (tmp_path / "site" / "loss_curves.png").is_file()
    assert "gan_samples.png" not in index.links and "(gan_samples.png not found)" in index.text


def test_a_framework_that_is_not_installed_gets_a_column_saying_so(frameworks: dict[str, Backend]) -> None:
    spec = ZOO["digits_mlp"]
    models: dict[str, Built | str] = {fw: built(frameworks[fw], spec) for fw in ("torch", "keras")}
    models["jax"] = "jax is not installed: No module named 'flax'"
    links = site.Links(
        site.catalogue_topics(site.CATALOGUE.read_text()), site.finding_numbers(site.FINDINGS.read_text())
    )
    dom = Dom(site.page("digits_mlp", site.model_body(spec, models, None, links), depth=1))
    assert dom.rows and all(row == list(FRAMEWORKS) for row in dom.rows)
    assert dom.text.count("No module named 'flax'") == len(dom.rows)
