"""The report page built from stored files (a manifest with every block, a device record, a sweep.json):
no TensorFlow, no browser; tests/integration/test_auto.py opens a real build's page in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgekiln.compiler import report
from edgekiln.compiler.report import candidates, devices, layers, pruning
from edgekiln.compiler.report.inputs import dig

HERE = Path(__file__).parent
BUNDLE = HERE / "bundle"
ALL_SECTIONS = ["headline", "candidates", "profile", "diagnosis", "pruning", "devices", "warnings"]


class _Page(HTMLParser):
    """Sections, headline figures, plots, every id and every reference to one, every fetching attribute."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.fields: list[tuple[str, str]] = []
        self.plots = 0
        self.ids: list[str] = []
        self.fetching: list[str] = []
        self._field: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "svg" and "plot" in (a.get("class") or ""):
            self.plots += 1
            assert a.get("width") == "100%" and a.get("viewbox"), a  # scales to the screen
        if "data-field" in a:
            self._field = a["data-field"]
        if "id" in a:
            self.ids.append(a["id"])
        if tag in ("script", "link", "img", "iframe", "object", "embed") or "src" in a:
            self.fetching.append(tag)

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self.fields.append((self._field, data))
            self._field = None


def _render(folder: Path = BUNDLE) -> str:
    return report.render(report.read(folder))


@pytest.fixture(scope="module")
def page_text() -> str:
    return _render()


def _manifest() -> dict:
    return json.loads((BUNDLE / "manifest.json").read_text())


def _bundle_without(tmp_path: Path, *blocks: str) -> Path:
    """A copy of the stored bundle without these manifest blocks (dotted paths) and its device records."""
    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE, copy)
    manifest = _manifest()
    for path in blocks:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[key]
        del node[last]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "measurements")
    return copy


def test_the_stored_manifest_gives_every_section_with_its_plots(page_text):
    page = _Page(page_text)
    assert page.sections == ALL_SECTIONS
    assert page.plots == 6  # candidates, profile, diagnosis, filters, sensitivity, devices


def test_headline_numbers_are_the_manifests(page_text):
    m = _manifest()
    device_p50s = {r["p50_ms"] for r in m["latency"]["device"]} | {1.42}  # and measurements/pi5-desk.json
    fields = _Page(page_text).fields
    assert {f for f, _ in fields} >= {"size.model_bytes", "latency.host.p50_ms", "latency.target_estimate.p50_ms",
                                      "accuracy.compiled", "accuracy.reference", "accuracy.drop", "device.p50_ms"}
    for field, text in fields:
        shown = float(text.replace(",", ""))
        if field == "device.p50_ms":
            assert shown in device_p50s
        else:
            assert shown == dig(m, *field.split(".")), field


def test_the_page_fetches_nothing_and_its_plots_are_text(page_text):
    text = page_text
    page = _Page(text)
    assert page.fetching == []
    assert "@import" not in text and not re.search(r"url\((?!#)", text)
    assert re.findall(r'(?:xlink:)?href="([^"]*)"', text) and all(
        ref.startswith("#") for ref in re.findall(r'(?:xlink:)?href="([^"]*)"', text))
    assert "default-src 'none'" in text  # the browser refuses any fetch, should one slip in
    assert "<text" in text and "Conv__41 (Conv)" in text  # svg.fonttype none: labels stay searchable text
    referenced = set(re.findall(r'url\(#([^)]+)\)', text)) | set(re.findall(r'href="#([^"]+)"', text))
    for name in referenced - set(s for s in ALL_SECTIONS):
        assert page.ids.count(name) == 1, name  # no two plots share a clip path or marker id


def test_the_same_files_give_the_same_bytes(page_text):
    assert _render() == page_text


@pytest.mark.parametrize("removed,section", [
    ("profile", layers.profile), ("quantization.diagnosis", layers.diagnosis),
    ("quantization.candidates", candidates.candidates), ("pruning", pruning.pruning),
    ("latency.device", devices.devices), ("warnings", devices.warnings)])
def test_a_section_is_left_out_when_its_data_is(tmp_path, removed, section):
    assert section(report.read(_bundle_without(tmp_path, removed))) is None


def test_a_bare_manifest_gives_a_page_without_sections(tmp_path):
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "pruning": null, "quantization": null}')
    text = _render(tmp_path)
    assert _Page(text).sections == [] and text.startswith("<!DOCTYPE html>")


def test_a_sweep_folder_shows_the_front_linked_to_its_recipes(tmp_path):
    shutil.copy(HERE / "sweep.json", tmp_path / "sweep.json")  # without bundle/: the sweep section alone
    text = _render(tmp_path)
    assert _Page(text).sections == ["sweep"] and _Page(text).plots == 1
    assert '<a href="points/p25-int8.toml">p25-int8</a>' in text
    assert re.search(r'<tr class="chosen"><td class="n" data-label="#">\d+</td><td data-label="point \(recipe\)">'
                     r'<a href="points/p25-int8.toml">', text)
    assert "conversion failed: example" in text


def test_the_cli_writes_the_page_and_refuses_a_folder_that_is_no_bundle(cli, tmp_path, page_text):
    copy = tmp_path / "b"
    shutil.copytree(BUNDLE, copy)
    done = cli("report", copy)
    assert done.exit_code == 0, done.output
    assert (copy / "report.html").read_text() == page_text  # the page depends on the files, not on the path
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "manifest.json").write_text('{"schema_version": 1}')
    done = cli("report", bare, "-o", tmp_path / "out" / "r.html")
    assert done.exit_code == 0 and (tmp_path / "out" / "r.html").is_file() and not (bare / "report.html").exists()
    done = cli("report", tmp_path / "out")
    assert done.exit_code == 1 and "is not a bundle or a sweep folder" in done.stderr
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "r.html"]  # nothing half-written


def test_rendering_needs_no_tensorflow(tmp_path):
    shutil.copy(HERE / "sweep.json", tmp_path / "sweep.json")  # one plot: matplotlib, never TensorFlow
    code = ("import sys; from pathlib import Path; from edgekiln.compiler import report; "
            f"assert '<svg' in report.render(report.read(Path({str(tmp_path)!r}))); "
            "assert 'tensorflow' not in sys.modules and 'matplotlib' in sys.modules; "
            "assert 'matplotlib.pyplot' not in sys.modules  # no global backend switched under a notebook")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("junk", [None, "text", [1, "a"], 3.5, {}, True])
def test_blocks_of_another_shape_leave_their_sections_out_instead_of_failing(tmp_path, junk):
    m = _manifest()
    for shaped in ({k: junk for k in m}, {k: {kk: junk for kk in v} if isinstance(v, dict) else junk
                                          for k, v in m.items()}):
        (tmp_path / "manifest.json").write_text(json.dumps(shaped))
        assert _render(tmp_path).startswith("<!DOCTYPE html>")


def test_a_sweep_decided_by_the_targets_estimate_plots_and_tabulates_that_estimate(tmp_path):
    """On an x86 host building for a Pi the sweep's front is over the rpi4 estimate: the page's axis is that
    estimate, labelled as one, not the host p50 the front was not computed on."""
    sweep = json.loads((HERE / "sweep.json").read_text())
    sweep.update(latency="estimate_ms", evidence={"kind": "estimate", "target": "rpi4"})
    for k, point in enumerate(sweep["points"]):
        point["estimate_ms"] = 10.0 + k
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    text = _render(tmp_path)
    assert "rpi4 estimate (ms, cost model, not measured)" in text and "host p50 (ms" not in text
    assert ">rpi4 estimate ms</th>" in text and ">host p50 ms</th>" in text
    plain = _render_copy(HERE / "sweep.json", tmp_path / "plain")
    assert "host p50 (ms, host-measured" in plain and "estimate ms</th>" not in plain


def _render_copy(sweep: Path, folder: Path) -> str:
    folder.mkdir()
    shutil.copy(sweep, folder / "sweep.json")
    return _render(folder)


def test_under_a_cosine_floor_the_candidates_plot_that_floor_and_tabulate_the_cosines(tmp_path, page_text):
    """Without labels and with --min-cosine-p5: the quality axis is the cosine p5, its floor drawn; the table
    gains a cosine mean and a cosine p5 column, which a table without cosine figures does not have."""
    m = _manifest()
    m["recipe"].update(min_cosine=0.98, min_cosine_p5=0.95)
    for k, row in enumerate(m["quantization"]["candidates"]):
        row.update(accuracy=None, accuracy_drop=None, cosine_mean=0.999 - k / 1000, cosine_p5=0.99 - k / 100)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    text = _render(tmp_path)
    assert "cosine p5 vs the source model" in text and "floor: cosine p5 0.95" in text
    assert ">cosine mean</th><th" in text and ">cosine p5</th><th" in text
    assert ">0.97</td>" in text  # the third row's p5
    assert "cosine mean</th>" not in page_text and "cosine p5 vs" not in page_text


def test_a_sweep_under_a_cosine_floor_plots_its_cosine(tmp_path):
    sweep = json.loads((HERE / "sweep.json").read_text())
    sweep["quality"] = "cosine_p5"
    for k, point in enumerate(sweep["points"]):
        point.update(accuracy=None, cosine_p5=0.99 - k / 100)
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    text = _render(tmp_path)
    assert "cosine p5 vs the source model" in text and "SQNR vs" not in text


def test_a_candidate_below_the_floor_is_drawn_and_keyed_as_missing_the_rule(tmp_path, page_text):
    """Its marker is grey under the legend entry saying so, never orange under 'meets the rule'."""
    m = _manifest()
    m["quantization"]["candidates"][1].update(short="below floor", verdict="SQNR 17.8 dB: below the fidelity floor")
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    plot = re.search(r'<svg class="plot" role="img" aria-label="candidates".*?</svg>', _render(tmp_path), re.S)
    assert plot is not None and "misses the rule, or not eligible" in plot.group(0)
    marker = re.search(r'id="candidates-data-1">.*?style="fill: (#\w+)', plot.group(0), re.S)
    assert marker is not None and marker.group(1) == "#888888"
    assert "misses the rule" not in page_text  # the stored table: every row meets the rule
