"""Variant planning: which candidates each mode x format x source builds, which are not built and why.

Pure logic (no TensorFlow): every build is the candidate search, and this is the whole of what --quantize,
--format, calibration data and the target's activation type decide about it.
"""

from __future__ import annotations

import pytest

from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.variants import BASELINE, NEEDS_CALIBRATION, ONNX2TF_ONLY, PLANS, VARIANTS, plan


def names(mode: Quantize, model_format: str, **options: object) -> list[str]:
    return [c.name for c in plan(mode, model_format, **options).build]  # type: ignore[arg-type]


@pytest.mark.parametrize("model_format", ["tflite", "onnx"])
@pytest.mark.parametrize("mode", list(Quantize))
def test_every_plan_starts_with_the_float32_baseline_and_keeps_catalogue_order(mode: Quantize,
                                                                              model_format: str) -> None:
    planned = names(mode, model_format)
    order = [c.name for c in VARIANTS[model_format]]
    assert planned[0] == BASELINE and planned == sorted(planned, key=order.index)
    assert set(planned) - {BASELINE} <= set(PLANS[mode])


def test_none_is_float32_alone_in_every_format_and_source() -> None:
    for model_format in ("tflite", "onnx"):
        for source in ("keras", "onnx"):
            planned = plan(Quantize.none, model_format, source)
            assert [c.name for c in planned.build] == ["float32"] and planned.not_built == {}


def test_forced_modes_build_only_their_own_variants() -> None:
    assert names(Quantize.float16, "tflite") == ["float32", "float16"]
    assert names(Quantize.dynamic, "onnx") == ["float32", "dynamic"]
    assert names(Quantize.int8, "tflite") == ["float32", "int8", "int8+rewrites"]  # full-integer only
    assert names(Quantize.int8, "onnx") == ["float32", "int8", "int8+calibration", "int8+s8s8"]


def test_without_calibration_data_no_int8_candidate_is_built_and_each_says_why() -> None:
    planned = plan(Quantize.auto, "tflite", calibrated=False)
    assert [c.name for c in planned.build] == ["float32", "float16", "dynamic"]
    assert planned.not_built == {name: NEEDS_CALIBRATION for name in
                                 ("int8", "int8+rewrites", "int8+fallback", "int8+fallback+layers")}


def test_onnx_to_tflite_plans_only_what_onnx2tf_writes() -> None:
    planned = plan(Quantize.auto, "tflite", "onnx")
    assert [c.name for c in planned.build] == ["float32", "float16", "dynamic", "int8"]
    assert planned.not_built == {name: ONNX2TF_ONLY for name in ("int8+rewrites", "int8+fallback",
                                                                 "int8+fallback+layers")}
    assert names(Quantize.auto, "tflite", source="keras") == [c.name for c in VARIANTS["tflite"]]


def test_an_int8_activation_target_has_no_s8s8_alternative() -> None:
    arm = plan(Quantize.auto, "onnx", "onnx", activation_type="int8")
    assert "int8+s8s8" not in [c.name for c in arm.build]
    assert arm.not_built == {"int8+s8s8": "int8 activations are the target's: this is plain int8"}
    assert "int8+s8s8" in names(Quantize.auto, "onnx", activation_type="uint8")


def test_only_keeps_the_baseline_the_variant_and_what_it_is_built_from() -> None:
    assert names(Quantize.auto, "tflite", only="int8+fallback") == ["float32", "int8", "int8+fallback"]
    assert names(Quantize.auto, "tflite", only="dynamic") == ["float32", "dynamic"]
    assert names(Quantize.auto, "onnx", only="int8") == ["float32", "int8"]
