"""The report's layout measured in a real headless Chromium, on constructed candidate tables (1, 3 and 15
candidates, at equal and at spread figures; and a sweep's page): no two plot labels overlap (their boxes as the
browser draws them), every candidate's number is on the plot, no table and no page scrolls sideways at 1280 px
nor at 400 px, every plot has both axes labelled and a legend whose entries are the colours it draws, and the
first screen (1280 x 800) names the shipped variant, its evidence and an interval.
No TensorFlow: the pages are rendered from the stored bundle's manifest, edited, and the stored sweep.json."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from edgekiln.compiler import report
from tests.browser import PLOTS, plot_faults

HERE = Path(__file__).parent
SHAPES = [(1, "equal"), (3, "equal"), (3, "spread"), (15, "equal"), (15, "spread")]
SWEEP = (0, "sweep")  # the stored sweep.json's page: its front plot and table

# Every plot label's drawn box (the <text> of each `{plot}-label-K` group) and its text.
LABELS = ("[...document.querySelectorAll('svg.plot g[id*=\"-label-\"]')].map(g => {const t = g.querySelector('text');"
          " const r = t.getBoundingClientRect(); return [g.id, t.textContent, r.left, r.top, r.right, r.bottom]})")
# How wide the page and each table's box lay out against how wide they may be.
WIDTHS = ("{page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth, "
          "tables: [...document.querySelectorAll('.scroll')].map(e => [e.scrollWidth, e.clientWidth])}")
# The first screen's answer: each part's text and how far down the page it ends.
FIRST = ("Object.fromEntries([...document.querySelectorAll('[data-part]')].map(e => [e.dataset.part, "
         "[e.textContent, e.getBoundingClientRect().bottom]]))")


def _manifest(count: int, shape: str) -> dict:
    """The stored bundle's manifest with `count` candidates: all at one latency, size and accuracy ("equal"), or
    spread over each; the first is the chosen one, decided by the rpi4 estimate."""
    m = json.loads((HERE / "bundle" / "manifest.json").read_text())
    model = m["quantization"]["candidates"][1]
    rows = []
    for k in range(count):
        row = copy.deepcopy(model)
        spread = shape == "spread"
        row.update(name=f"{'tflite' if k % 2 else 'onnx'}:int8+variant-{k}", verdict="chosen" if k == 0 else "slower",
                   short="chosen" if k == 0 else "slower", estimate_ms=1.2 + (0.45 * k if spread else 0.001 * k),
                   p50_ms=0.3 + (0.05 * k if spread else 0.0), bytes=247_000 + (40_000 * k if spread else 10 * k),
                   accuracy=98.9 - (0.25 * k if spread else 0.0), samples=32, flips=0,
                   intervals={"agreement": [0.8911, 1.0]}, notes=["SOFTMAX x1 outside XNNPACK, 1 piece(s)"] * 3)
        rows.append(row)
    m["quantization"].update(candidates=rows, variant=rows[0]["name"],
                             evidence={"kind": "estimate", "target": "rpi4", "margin": 1.095, "label": "rpi4 estimate"})
    m["fidelity"].update(flips=0, intervals={"top1_agreement": [0.8911, 1.0]})
    return m


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[tuple[int, str], dict]:
    """Each constructed page opened at 1280 x 800 and at 400 px: its labels, widths and first screen."""
    from tests.browser import Chromium, chromium_or_skip

    executable = chromium_or_skip()
    root = tmp_path_factory.mktemp("layout")
    seen: dict[tuple[int, str], dict] = {}
    errors: list[str] = []
    with Chromium(executable, root / "profile") as page:
        for count, shape in [*SHAPES, SWEEP]:
            folder = root / f"{count}-{shape}"
            if shape == "sweep":
                folder.mkdir()
                shutil.copy(HERE / "sweep.json", folder)
            else:
                shutil.copytree(HERE / "bundle", folder)
                (folder / "manifest.json").write_text(json.dumps(_manifest(count, shape)))
            url = report.write(folder).as_uri()
            page.width(1280, 800)
            page.open(url)
            seen[(count, shape)] = {"labels": page.evaluate(LABELS), "wide": page.evaluate(WIDTHS),
                                    "first": page.evaluate(FIRST), "plots": page.evaluate(PLOTS)}
            page.width(400)
            seen[(count, shape)]["narrow"] = page.evaluate(WIDTHS)
            errors += page.errors()
            page.events.clear()  # the next page's load event is the one to wait for
    assert errors == []
    return seen


def _overlap(a: list, b: list) -> bool:
    return a[2] < b[4] - 0.5 and b[2] < a[4] - 0.5 and a[3] < b[5] - 0.5 and b[3] < a[5] - 0.5


@pytest.mark.parametrize("count,shape", SHAPES)
def test_plot_labels_never_overlap_and_number_every_candidate(pages, count, shape):
    labels = [label for label in pages[(count, shape)]["labels"] if label[0].startswith("candidates-label-")]
    overlapping = [(a[1], b[1]) for i, a in enumerate(labels) for b in labels[i + 1:] if _overlap(a, b)]
    assert overlapping == []
    numbers = sorted(int(n) for label in labels for n in label[1].split(","))
    assert numbers == ([] if count == 1 else list(range(1, count + 1)))  # one candidate: no plot to label


@pytest.mark.parametrize("count,shape", [*SHAPES, SWEEP])
def test_no_sideways_scroll_of_the_page_or_any_table_at_1280_px_nor_at_400(pages, count, shape):
    for width in ("wide", "narrow"):
        seen = pages[(count, shape)][width]
        assert seen["page"] <= seen["view"] <= (400 if width == "narrow" else 1280)
        assert seen["tables"] and all(scroll <= client for scroll, client in seen["tables"]), (width, seen["tables"])


@pytest.mark.parametrize("count,shape", [*SHAPES, SWEEP])
def test_every_plot_labels_both_axes_and_its_legend_keys_are_the_colours_it_draws(pages, count, shape):
    plotted = pages[(count, shape)]["plots"]
    expected = {"sweep"} if shape == "sweep" else {"profile", "diagnosis", "pruning-filters", "pruning-sensitivity",
                                                   "devices", *(["candidates"] if count > 1 else [])}
    assert {p["plot"] for p in plotted} == expected
    assert plot_faults(plotted) == []


@pytest.mark.parametrize("count,shape", SHAPES)
def test_the_first_screen_names_the_variant_its_evidence_and_an_interval(pages, count, shape):
    first = pages[(count, shape)]["first"]
    assert first["variant"][0] == "onnx:int8+variant-0"
    assert "estimate" in first["evidence"][0] and "band" in first["evidence"][0]
    assert "95 % interval" in first["quality"][0] and "1,000 labelled samples" in first["quality"][0]
    assert "0 of 32 changed class" in first["quality"][0]
    assert all(bottom <= 800 for _, bottom in first.values()), first  # all of it above the fold
