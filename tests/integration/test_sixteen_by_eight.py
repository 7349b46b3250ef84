"""16x8 (int16 activations, int8 weights) on a model plain int8 genuinely wrecks: an activation outlier.

tests/synthetic.outlier: one channel of a middle tensor is ~1000x the others, so its one int8 scale erases the
channels the head reads. In each format, --quantize auto builds 16x8 because plain int8 misses the criterion,
and 16x8 is more faithful on the same judged samples; a bundle shipping 16x8 validates through its runtime.
Latency is never asserted; the estimate's rule is (16x8 is charged no faster than float32).
"""

from __future__ import annotations

import pytest

from edgekiln.compiler.commands.validate import run_validation
from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests import synthetic
from tests.choice_rule import assert_choice_obeys_rule

pytestmark = pytest.mark.integration
FORMATS = ("tflite", "onnx")


@pytest.fixture(scope="module")
def outlier(tmp_path_factory) -> dict:
    from edgekiln.compiler.tf_env import import_keras

    return synthetic.write(*synthetic.outlier(import_keras()), tmp_path_factory.mktemp("outlier"), "outlier")


def _build(paths: dict, out, model_format: str, **changes) -> dict:
    return build(Recipe(source=str(paths["model"]), calib=str(paths["calib"]), output=str(out), bench_runs=5,
                        format=model_format, target="rpi4", **changes)).manifest


@pytest.mark.parametrize("model_format", FORMATS)
def test_16x8_is_built_where_plain_int8_fails_and_is_more_faithful(outlier, tmp_path, model_format):
    manifest = _build(outlier, tmp_path / "auto", model_format)
    rows = {row["name"]: row for row in manifest["quantization"]["candidates"]}
    plain, sixteen = rows["int8"], rows["16x8"]
    assert plain["sqnr_db"] < 10  # the outlier's scale erases what the head reads
    assert sixteen["sqnr_db"] > plain["sqnr_db"] + 20
    assert any(note.startswith("int16 activations, int8 weights") for note in sixteen["notes"])
    # no faster than float32 on the rpi4 estimate: XNNPACK / onnxruntime's int8 fusions run none of it
    assert sixteen["estimate_ms"] >= rows["float32"]["estimate_ms"]
    assert_choice_obeys_rule(manifest)


@pytest.mark.parametrize("model_format", FORMATS)
def test_a_bundle_shipping_16x8_validates_through_its_runtime(outlier, tmp_path, model_format):
    manifest = _build(outlier, tmp_path / "b", model_format, variant="16x8")
    assert manifest["quantization"]["variant"] == "16x8"
    assert manifest["quantization"]["activation_type"] == "int16"
    assert manifest["fidelity"]["sqnr_db"] > 20
    report = run_validation(tmp_path / "b", None).report
    assert report["passed"], report
