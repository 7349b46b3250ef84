"""--format auto (the default with --quantize auto): TFLite and ONNX candidates in one measured table.

Latency is measured but never asserted: the tests check that the table holds both formats, that the
choice obeys its rule across them, that the bundle carries the chosen format and its own float32
baseline, that onnx2tf's layout change is undone when judging, and that a format whose conversion fails
is left out (and said so) instead of stopping the build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests.choice_rule import assert_choice_obeys_rule
from tests.unit.onnx_models import conv_net, save

pytestmark = pytest.mark.integration


def _rows(manifest: dict) -> dict[str, dict]:
    return {row["name"]: row for row in manifest["quantization"]["candidates"]}


def _validate(bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", "validate"], cwd=bundle, capture_output=True,
                          text=True, check=False)


@pytest.fixture(scope="module")
def keras_auto(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("formats") / "b"
    recipe = Recipe(source=str(tiny["keras"]), target="x86-64", calib=str(tiny["calib"]), output=str(out),
                    bench_runs=10, holdout_samples=8)  # no --format, --quantize auto: formats compared
    return build(recipe)


def test_both_formats_share_one_table(keras_auto) -> None:
    q = keras_auto.manifest["quantization"]
    formats = {row["format"] for row in q["candidates"]}
    assert formats == {"tflite", "onnx"}
    assert all(row["name"].startswith(f"{row['format']}:") for row in q["candidates"])
    assert {"tflite:float32", "onnx:float32", "tflite:int8", "onnx:int8"} <= set(_rows(keras_auto.manifest))
    assert q["formats"]["compared"] == ["tflite", "onnx"] and q["formats"]["failed"] == {}
    assert "on this host" in q["formats"]["note"]


def test_the_choice_obeys_its_rule_across_formats(keras_auto) -> None:
    m = keras_auto.manifest
    assert_choice_obeys_rule(m)
    rows, chosen = _rows(m), m["quantization"]["variant"]
    # float32 of either format competes, by the evidence that decided (host timing, or the target's estimate)
    evidence = m["quantization"]["evidence"]
    figure = {"device": "device_p50_ms", "estimate": "estimate_ms", "host": "p50_ms"}[evidence["kind"]]
    fastest_float = min(rows["tflite:float32"][figure], rows["onnx:float32"][figure])
    assert rows[chosen][figure] <= fastest_float * evidence["margin"]


def test_the_bundle_ships_the_chosen_format_and_its_own_baseline(keras_auto) -> None:
    m = keras_auto.manifest
    chosen_format = _rows(m)[m["quantization"]["variant"]]["format"]
    assert m["model"]["format"] == chosen_format == m["baseline"]["format"]
    assert (keras_auto.output / f"model.{chosen_format}").is_file()
    assert m["baseline"]["bytes"] == _rows(m)[f"{chosen_format}:float32"]["bytes"]
    pins = (keras_auto.output / "requirements.txt").read_text()
    assert ("onnxruntime==" in pins) == (chosen_format == "onnx")
    done = _validate(keras_auto.output)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_onnx_source_is_judged_through_onnx2tfs_layout_change(tmp_path: Path) -> None:
    model = save(conv_net(batch=1), tmp_path / "net.onnx")
    x = np.random.default_rng(0).random((40, 3, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    result = build(Recipe(source=str(model), target="rpi4", calib=str(tmp_path / "calib.npz"),
                          output=str(tmp_path / "b"), bench_runs=10, holdout_samples=8))
    rows = _rows(result.manifest)
    # NCHW held-back samples fed through the recorded NHWC layout: judged right, the float model is exact.
    assert rows["tflite:float32"]["sqnr_db"] is None or rows["tflite:float32"]["sqnr_db"] > 80
    assert rows["tflite:int8"]["agreement"] == 1.0 and rows["tflite:int8"]["sqnr_db"] > 20
    assert "onnx2tf" in result.manifest["quantization"]["not_built"]["tflite:int8+rewrites"]
    assert _validate(result.output).returncode == 0


def test_a_format_that_fails_to_convert_is_left_out_not_fatal(tmp_path: Path) -> None:
    net = conv_net(batch=1)  # + CastLike: onnxruntime runs it, onnx2tf has no converter for it
    net.graph.node.append(helper.make_node("CastLike", ["y", "y"], ["z"]))
    net.graph.output[0].name = "z"
    onnx.checker.check_model(net)
    model = save(net, tmp_path / "castlike.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).random((40, 3, 8, 8), dtype=np.float32))
    result = build(Recipe(source=str(model), target="x86-64", calib=str(tmp_path / "calib.npz"),
                          output=str(tmp_path / "b"), bench_runs=10, holdout_samples=8))
    q = result.manifest["quantization"]
    assert "CastLike" in q["formats"]["failed"]["tflite"]
    assert {row["format"] for row in q["candidates"]} == {"onnx"}
    assert result.manifest["model"]["format"] == "onnx"
    assert json.loads((result.output / "manifest.json").read_text())["quantization"]["formats"]["failed"]
