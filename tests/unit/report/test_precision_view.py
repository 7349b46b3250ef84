"""The report's precision-per-layer view measured in a real headless Chromium at 1280 px (and 400): every layer's
precision is on the page (in the strip and in the table, one badge each, the colour of its legend key), no two
layers' names overlap, nothing is wider than the page, and the bar plots' labels keep the layers' names.

Pages: the manifest of a real bundle shipping ONNX int8+mixed (tests/unit/onnx_models.outlier_chain built with
`variant="int8+mixed"`, target rpi4: mm_b promoted to int16), stored in mixed/; the same with 40 long-named
layers, 5 promoted and a Concat kept apart; a TFLite int8+fallback (layers and an op kept in float32); and a 16x8.
No TensorFlow: the pages are rendered from the stored manifest, edited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekiln.compiler import report
from edgekiln.compiler.report.precision import KINDS

HERE = Path(__file__).parent
PAGES = ("stored", "many", "fallback", "16x8")
LONG = "backbone/stage_{s}/block_{b}/expand_conv_bn_relu6_{k}"

# The view as laid out: each strip cell, legend key and table row (name, precision, box, colour), and widths.
VIEW = ("(() => {const box = e => {const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]};"
        " const colour = e => getComputedStyle(e).backgroundColor; const s = document.getElementById('precision');"
        " return {strip: [...s.querySelectorAll('ol.strip li')].map(e => [e.title.split(' (')[0], e.dataset.precision,"
        " box(e), colour(e)]),"
        " legend: [...s.querySelectorAll('ul.legend li')].map(e => {const k = e.querySelector('.prec');"
        " return [k.dataset.precision, colour(k), e.textContent]}),"
        " rows: [...s.querySelectorAll('tbody tr')].map(r => [(r.cells[0].querySelector('[title]') || r.cells[0])"
        ".getAttribute('title') || r.cells[0].textContent, [...r.querySelectorAll('[data-precision]')]"
        ".map(e => e.dataset.precision)]),"
        " section: box(s), page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,"
        " tables: [...s.querySelectorAll('.scroll')].map(e => [e.scrollWidth, e.clientWidth]),"
        " bars: Object.fromEntries(['profile', 'diagnosis'].map(p => [p, [...document.querySelectorAll("
        "`svg[aria-label=\"${p}\"] g[id^=\"ytick\"] text`)].map(t => t.textContent)]))}})()")


def _stored() -> dict:
    return json.loads((HERE / "mixed" / "manifest.json").read_text())


def _many(m: dict) -> dict:
    """40 long-named MatMul layers (the diagnosis's nodes), the 5 worst promoted, a Concat kept apart."""
    q = m["quantization"]
    names = [LONG.format(s=k // 10, b=k % 10, k=k) for k in range(40)]
    q["diagnosis"]["nodes"] = [{"name": n, "op": "MatMul", "sqnr_db": 10.0 + k, "share": round(0.4 / (k + 1), 4)}
                               for k, n in enumerate(names)]
    q["mixed"]["promoted"] = [{"layer": n, "op": "MatMul", "reason": "adds 40% of the int8 error", "gain_db": 3.0}
                              for n in names[:5]]
    q["mixed"]["concats_apart"] = [{"node": "head/concat", "op": "Concat", "reason": "inputs' ranges differ 300x"}]
    return m


def _fallback(m: dict) -> dict:
    """A TFLite int8+fallback: two layers and every SOFTMAX kept in float32, the rest int8 (the diagnosis's layers)."""
    q = m["quantization"]
    del q["mixed"]
    q["variant"], q["diagnosis"]["nodes"] = "int8+fallback+layers", []
    q["diagnosis"]["layers"] = [{"layer": f"dense_{k}", "op": "FULLY_CONNECTED", "sqnr_db": 20.0 + k, "share": 0.1}
                                for k in range(6)] + [{"layer": "probabilities", "op": "SOFTMAX", "share": 0.0}]
    q["fallback"] = {"float_ops": {"SOFTMAX": "outside XNNPACK in int8"},
                     "float_layers": [{"layer": "dense_0", "op": "FULLY_CONNECTED", "reason": "40% of the int8 error"},
                                      {"layer": "dense_3", "op": "FULLY_CONNECTED", "reason": "20% of the int8 error"}]}
    return m


def _sixteen(m: dict) -> dict:
    """A 16x8 bundle: every layer's activations int16."""
    q = m["quantization"]
    del q["mixed"]
    q.update(variant="16x8", activation_type="int16")
    return m


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> dict[tuple[str, int], dict]:
    """Each page's view at 1280 x 900 and at 400 px."""
    from tests.browser import Chromium, chromium_or_skip

    executable = chromium_or_skip()
    root = tmp_path_factory.mktemp("precision")
    made = {"stored": _stored(), "many": _many(_stored()), "fallback": _fallback(_stored()),
            "16x8": _sixteen(_stored())}
    seen: dict[tuple[str, int], dict] = {}
    errors: list[str] = []
    with Chromium(executable, root / "profile") as page:
        for name, manifest in made.items():
            folder = root / name
            folder.mkdir()
            (folder / "manifest.json").write_text(json.dumps(manifest))
            url = report.write(folder).as_uri()
            for width in (1280, 400):
                page.width(width, 900)
                page.open(url)
                seen[(name, width)] = page.evaluate(VIEW)
                errors += page.errors()
                page.events.clear()  # the next load event is the one to wait for
    assert errors == []
    return seen


def _expected(name: str) -> dict[str, str]:
    """Each layer the page must show -> its precision, from the manifest the page was made of."""
    if name == "stored":
        return {"mm_a": "int8", "mm_b": "int16", "mm_c": "int8", "mm_d": "int8"}  # the real build promoted mm_b
    if name == "16x8":
        return {layer: "int16" for layer in ("mm_a", "mm_b", "mm_c", "mm_d")}
    if name == "many":
        return {LONG.format(s=k // 10, b=k % 10, k=k): "int16" if k < 5 else "int8" for k in range(40)}
    return {**{f"dense_{k}": "float32" if k in (0, 3) else "int8" for k in range(6)}, "probabilities": "float32"}


def _overlap(a: list, b: list) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("width", (1280, 400))
def test_every_layer_shows_its_precision_in_the_strip_and_the_table(views, name, width):
    view, expected = views[(name, width)], _expected(name)
    assert {cell[0]: cell[1] for cell in view["strip"]} == expected and len(view["strip"]) == len(expected)
    assert {row[0]: row[1] for row in view["rows"]} == {layer: [kind] for layer, kind in expected.items()}


@pytest.mark.parametrize("name", PAGES)
def test_the_legend_names_each_colour_drawn_and_the_strip_uses_its_colours(views, name):
    view = views[(name, 1280)]
    keys = {kind: colour for kind, colour, _ in view["legend"]}
    assert set(keys) == set(_expected(name).values()) and len(set(keys.values())) == len(keys)
    assert all(KINDS[kind] in text for kind, _, text in view["legend"])  # each colour said in words
    assert all(colour == keys[kind] for _, kind, _, colour in view["strip"])


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("width", (1280, 400))
def test_no_layer_names_overlap_and_nothing_is_wider_than_the_page(views, name, width):
    view = views[(name, width)]
    boxes = [cell[2] for cell in view["strip"]]
    assert [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[i + 1:], i + 1) if _overlap(a, b)] == []
    section = view["section"]
    assert all(section[0] - 0.5 <= b[0] and b[2] <= section[2] + 0.5 for b in boxes)
    assert view["page"] <= view["view"] <= width
    assert view["tables"] and all(scroll <= client for scroll, client in view["tables"]), view["tables"]


def test_the_bar_plots_keep_each_layers_name(views):
    """The stored bundle profiles four DequantizeLinear ops: each bar is labelled by its own name, not by an
    ellipsis and the op's kind (what a label cut from the left showed, four bars alike)."""
    bars = views[("stored", 1280)]["bars"]
    assert len(bars["profile"]) == 10 and len(bars["diagnosis"]) == 4
    for labels in bars.values():
        assert len(set(labels)) == len(labels) and not any(label.startswith("…") for label in labels), labels
    assert "ra_DequantizeLinear" in bars["profile"]
