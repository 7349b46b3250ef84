"""Models shaped like real pretrained ones that did not build (issue 12): each builds, validates in its
bundle, and ships a model that meets the fidelity floor. The candidate table is recorded, never which row won."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import quality_of
from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests import real_shapes

from .conftest import run_runtime

FAST = {"target": "rpi4", "bench_runs": 10, "holdout_samples": 24}


def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON token {token} in a file edgekiln wrote")
    return json.loads(text, parse_constant=refuse)


def _validates(bundle: Path) -> dict:
    """`python -m runtime validate` from inside the bundle passes; manifest and --json outputs are strict JSON."""
    checked = run_runtime(bundle, "validate")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for command in ("info", "validate"):
        out = run_runtime(bundle, command, "--json")
        _strict(out.stdout)
    return _strict((bundle / "manifest.json").read_text())


def _meets_floor(manifest: dict) -> None:
    """The shipped model meets the fidelity floor, every output by its kind (a class output by its flips, values
    by SQNR, an embedding by cosine), as the build's rule reads the held-back samples."""
    fidelity = manifest["fidelity"]
    assert fidelity["per_output"], fidelity  # every output is judged: none is left out of the check below
    assert all(output.get("kind") for output in fidelity["per_output"]), fidelity
    rule = Criterion(by_kind=True)
    assert rule.meets(quality_of(fidelity)), rule.shortfall(quality_of(fidelity))


def _table(manifest: dict) -> dict[str, dict]:
    return {row["name"]: row for row in manifest["quantization"]["candidates"]}


@pytest.fixture(scope="module")
def xception(tmp_path_factory) -> dict[str, Path]:
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    root = tmp_path_factory.mktemp("xception")
    x, _ = real_shapes.image_data(0, 96, 64, 64, 1, nchw=False)
    x = (x - 0.5) * 2.0  # the real model's preprocessing: [-1, 1]
    np.savez(root / "calib.npz", x=x)
    return {"model": real_shapes.mini_xception(keras, root / "emotion.h5", x), "calib": root / "calib.npz"}


def test_mini_xception_h5_with_a_dead_channel_builds(xception, tmp_path):
    """Before: equalisation's float32 product of the dead channel's ranges underflowed to 0, its scale became
    inf, and calibration raised `supplied range of [0.0, inf] is not finite` with no bundle."""
    recipe = Recipe(source=str(xception["model"]), calib=str(xception["calib"]), output=str(tmp_path / "b"),
                    format="tflite", **FAST)
    result = build(recipe)
    manifest = _validates(result.output)
    _meets_floor(manifest)
    assert manifest["source"]["params"] == pytest.approx(58_000, rel=0.05)
    rows, q = _table(manifest), manifest["quantization"]
    assert {"float32", "int8", "int8+rewrites"} <= set(rows)  # the rewritten candidate is built and measured
    assert q["failed"] == {}
    # the dead channel gives no infinite or undefined figure: every row's SQNR (float32's too: the TFLite
    # conversion of the Keras model) is measured and finite, and nothing in the manifest was replaced by null
    assert all(row["sqnr_db"] is not None and np.isfinite(row["sqnr_db"]) for row in rows.values()), rows
    assert "non_finite" not in manifest, manifest.get("non_finite")


def test_a_candidate_whose_ranges_overflow_drops_out_with_its_reason(tmp_path):
    """An activation that overflows float32 on the data (a real tanh saturates it back): int8 calibration
    gives it [x, inf]; the int8 candidates drop out with that reason and the float ones ship."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,), name="x")
    big = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(1e25), name="big")(inp)
    huge = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(1e25), name="huge")(big)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.Activation("tanh")(huge))
    path = tmp_path / "overflow.keras"
    keras.Model(inp, out).save(path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(0.5, 1.0, (60, 4)).astype(np.float32))
    recipe = Recipe(source=str(path), calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "b"),
                    format="tflite", **FAST)
    manifest = _validates(build(recipe).output)
    q = manifest["quantization"]
    assert not any(row["quantize"] == "int8" for row in q["candidates"])
    assert "int8" in q["failed"] and "non-finite range" in q["failed"]["int8"]
    assert "\n" not in q["failed"]["int8"]


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("yolo")
    x, _ = real_shapes.image_data(0, 96, 64, 64, 3, nchw=True)
    np.savez(root / "calib.npz", images=x)
    return {"model": real_shapes.save(real_shapes.yolo_like(x), root / "yolo.onnx"), "calib": root / "calib.npz"}


def test_detector_with_dynamic_height_and_width_builds_with_input_shape(detector, tmp_path):
    recipe = Recipe(source=str(detector["model"]), calib=str(detector["calib"]), output=str(tmp_path / "b"),
                    input_shape={"images": [1, 3, 64, 64]}, **FAST)
    manifest = _validates(build(recipe).output)
    _meets_floor(manifest)
    fixed = manifest["source"]["fixed_inputs"]
    assert fixed == [{"name": "images", "shape": [1, 3, 64, 64], "declared": "[batch, 3, height, width]",
                      "origin": "input_shape"}]
    per_output = manifest["fidelity"]["per_output"]
    assert [o["name"] for o in per_output] == ["boxes", "scores"]  # both outputs judged, each by SQNR
    assert "top1_agreement" not in manifest["fidelity"]  # no class vector: SQNR per output decides
    finite = [o["sqnr_db"] for o in per_output if o["sqnr_db"] is not None]
    assert manifest["fidelity"]["sqnr_db"] == (min(finite) if finite else None)  # the worst output's
    from edgekiln import runtime

    model = runtime.load(tmp_path / "b")
    images = np.load(detector["calib"])["images"][:3]
    outputs = model.predict(images)  # any batch, the ONNX layout, the fixed spatial size
    assert outputs["boxes"].shape == (3, 4, 256) and outputs["scores"].shape == (3, 3, 256)


def test_text_classifier_with_constant_weights_takes_the_data_shape(cli, tmp_path):
    x, labels = real_shapes.image_data(1, 96, 48, 96, 3, nchw=True, prototypes=2)
    model = real_shapes.save(real_shapes.text_direction(x, labels), tmp_path / "cls.onnx")
    np.savez(tmp_path / "calib.npz", x=x)
    result = cli("build", model, "--target", "rpi4", "--calib", tmp_path / "calib.npz", "-o", tmp_path / "b",
                 "--format", "onnx", "--runs", "10")
    assert result.exit_code == 0, result.output
    assert "input 'x' [-1, 3, 48, -1] compiled as [1, 3, 48, 96] (from the calibration data's sample shape" \
        in result.output
    manifest = _validates(tmp_path / "b")
    _meets_floor(manifest)
    assert manifest["source"]["fixed_inputs"][0]["origin"] == "calibration data"
    assert manifest["model"]["inputs"][0]["shape"] == [1, 3, 48, 96]


@pytest.mark.parametrize(("flag", "expected"), [
    ("image=1,3,64,64", "names input 'image', which yolo.onnx does not have"),
    ("images=1,3,64", "has 3 dims, but input 'images' [batch, 3, height, width] has rank 4"),
    ("images=1,3,32,32", "does not match the calibration data's samples [3,64,64]"),
    ("images=1,3,0,64", "every dim must be a positive integer"),
])
def test_input_shape_errors_are_one_line_and_write_nothing(cli, detector, tmp_path, flag, expected):
    result = cli("build", detector["model"], "--calib", detector["calib"], "-o", tmp_path / "b",
                 "--input-shape", flag)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "b").exists()


def test_random_mobilenet_v2_writes_strict_json(tmp_path):
    """Random weights: every softmax output sits at 1/1000, several candidates reproduce it exactly (SQNR
    infinite) and keeping a node in float gains 'infinite' dB: every file still is strict JSON."""
    from edgekiln.compiler.tf_env import import_keras

    path = real_shapes.mobilenet_v2(import_keras(), tmp_path / "mnv2.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(-1, 1, (60, 32, 32, 3)).astype(np.float32))
    recipe = Recipe(source=str(path), calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "b"),
                    format="onnx", calibration="minmax", **FAST)  # the method search is not what is under test
    manifest = _validates(build(recipe).output)
    bench = run_runtime(tmp_path / "b", "bench", "--json", "--runs", "3")
    _strict(bench.stdout)
    exact = [row for row in manifest["quantization"]["candidates"] if row["sqnr_db"] is None]
    assert exact  # float32 at least reproduces the source exactly: null, and the manifest says what null means
    assert "sqnr_db" in manifest["null_values"]
    # every figure written as null for not being finite is null where it sat, and says what it was
    replaced = manifest["non_finite"]
    assert replaced  # exact rows: an infinite SQNR each
    for where, meaning in replaced.items():
        assert _at(manifest, where) is None and meaning.split(": ")[0] in ("inf", "-inf", "nan"), (where, meaning)
    # the probes' gains are recorded with the variant that keeps nodes in float, whichever row this host's
    # timing shipped; an exact probe gains "inf"
    q = manifest["quantization"]
    if q["variant"] == "int8+exclude":
        gains = q["details"]["probe_gain_db"]
        assert gains and all(gain is not None or replaced[f"quantization.details.probe_gain_db.{node}"]
                             .startswith("inf: ") for node, gain in gains.items())
    else:
        assert "probe_gain_db" not in q["details"] and not any(".probe_gain_db." in where for where in replaced)


def _at(document: dict | list, where: str):
    """The value at a `non_finite` path (`a.b[2].c`; a key may itself hold dots)."""
    if not where:
        return document
    if where.startswith("["):
        index, rest = where[1:].split("]", 1)
        return _at(document[int(index)], rest.removeprefix("."))
    assert isinstance(document, dict), (document, where)
    key = max((k for k in document if where == k or where.startswith((f"{k}.", f"{k}["))), key=len)
    return _at(document[key], where[len(key):].removeprefix("."))
