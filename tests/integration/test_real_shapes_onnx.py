"""Real-shaped ONNX models that did not build (issue 12; the Keras ones: test_real_shapes.py): a detector with
dynamic height and width, a text classifier whose weights are Constant nodes, and --input-shape's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests import real_shapes

from .bundle_checks import FAST, meets_floor, validates


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("yolo")
    x, _ = real_shapes.image_data(0, 96, 64, 64, 3, nchw=True)
    np.savez(root / "calib.npz", images=x)
    return {"model": real_shapes.save(real_shapes.yolo_like(x), root / "yolo.onnx"), "calib": root / "calib.npz"}


def test_detector_with_dynamic_height_and_width_builds_with_input_shape(detector, tmp_path):
    recipe = Recipe(source=str(detector["model"]), calib=str(detector["calib"]), output=str(tmp_path / "b"),
                    input_shape={"images": [1, 3, 64, 64]}, **FAST)
    manifest = validates(build(recipe).output)
    meets_floor(manifest)
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
    manifest = validates(tmp_path / "b")
    meets_floor(manifest)
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
