"""Variant planning: which candidates each mode x format x source builds, which are not built and why.

Pure logic (no TensorFlow): every build is the candidate search, and this is the whole of what --quantize,
--format, calibration data and the target's activation type decide about it.
"""

from __future__ import annotations

import pytest

from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.variants import (
    BASELINE,
    NEEDS_CALIBRATION,
    ONNX2TF_ONLY,
    PLANS,
    VARIANTS,
    adaround_not_needed,
    is_16x8,
    plan,
    sixteen_not_needed,
)


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
                                 ("int8", "int8+rewrites", "int8+adaround", "int8+fallback", "int8+fallback+layers",
                                  "16x8")}


def test_onnx_to_tflite_plans_only_what_onnx2tf_writes() -> None:
    planned = plan(Quantize.auto, "tflite", "onnx")
    # one onnx2tf run, and a second for int8+fastpath where plain int8 breaks into pieces
    assert [c.name for c in planned.build] == ["float32", "float16", "dynamic", "int8", "int8+fastpath", "16x8"]
    assert planned.not_built == {name: ONNX2TF_ONLY for name in ("int8+rewrites", "int8+adaround", "int8+fallback",
                                                                 "int8+fallback+layers")}
    # int8+qat is planned only with --qat (tests/unit/search/test_qat_plan.py), int8+fastpath from ONNX only
    assert names(Quantize.auto, "tflite", source="keras") == [c.name for c in VARIANTS["tflite"]
                                                              if not c.qat and not c.fast_path]


def test_fastpath_is_a_full_integer_candidate_of_onnx_to_tflite_only() -> None:
    """Respelling hard-swish changes no number format: a forced int8 build makes it too; a Keras source never
    plans it (nor lists it as not built), an ONNX-format build has no such variant."""
    assert names(Quantize.int8, "tflite", source="onnx") == ["float32", "int8", "int8+fastpath"]
    assert "int8+fastpath" not in plan(Quantize.auto, "tflite", "keras").not_built
    assert "int8+fastpath" not in names(Quantize.auto, "onnx", source="onnx")
    assert names(Quantize.auto, "tflite", source="onnx", only="int8+fastpath") == ["float32", "int8", "int8+fastpath"]


def test_an_int8_activation_target_has_no_s8s8_alternative() -> None:
    arm = plan(Quantize.auto, "onnx", "onnx", activation_type="int8")
    assert "int8+s8s8" not in [c.name for c in arm.build]
    assert arm.not_built == {"int8+s8s8": "int8 activations are the target's: this is plain int8"}
    assert "int8+s8s8" in names(Quantize.auto, "onnx", activation_type="uint8")


def test_only_keeps_the_baseline_the_variant_and_what_it_is_built_from() -> None:
    assert names(Quantize.auto, "tflite", only="int8+fallback") == ["float32", "int8", "int8+fallback"]
    assert names(Quantize.auto, "tflite", only="dynamic") == ["float32", "dynamic"]
    assert names(Quantize.auto, "onnx", only="int8") == ["float32", "int8"]


@pytest.mark.parametrize("model_format", ["tflite", "onnx"])
def test_16x8_is_an_auto_candidate_of_both_formats_and_never_a_forced_int8_one(model_format: str) -> None:
    sixteen = [c for c in VARIANTS[model_format] if c.name == "16x8"]
    assert len(sixteen) == 1 and is_16x8(sixteen[0]) and sixteen[0].quantize is Quantize.int8
    assert "16x8" in names(Quantize.auto, model_format)
    assert "16x8" not in names(Quantize.int8, model_format)  # --quantize int8 means int8 activations


def test_only_16x8_builds_it_without_plain_int8_so_nothing_gates_it() -> None:
    # The unpruned reference of a build that shipped 16x8 must be 16x8 whatever plain int8 scores there.
    assert names(Quantize.auto, "tflite", only="16x8") == ["float32", "16x8"]
    assert names(Quantize.auto, "onnx", only="16x8") == ["float32", "16x8"]
    assert sixteen_not_needed(None) == ""


def test_16x8_is_built_only_where_plain_int8_misses_the_criterion() -> None:
    assert sixteen_not_needed(False, "SQNR 3.1 dB") == ""
    assert sixteen_not_needed(True, "SQNR 31.0 dB") == "not needed: plain int8 meets the criterion (SQNR 31.0 dB)"
    assert sixteen_not_needed(True) == "not needed: plain int8 meets the criterion"


def test_adaround_is_an_auto_refinement_of_tflite_from_keras_and_of_onnx() -> None:
    found = [c for c in VARIANTS["tflite"] if c.name == "int8+adaround"]
    assert len(found) == 1 and found[0].adaround and found[0].rewrites  # it learns int8+rewrites' rounding
    onnx = [c for c in VARIANTS["onnx"] if c.name == "int8+adaround"]
    assert len(onnx) == 1 and onnx[0].adaround and not onnx[0].rewrites  # it learns plain QDQ int8's rounding
    assert "int8+adaround" in names(Quantize.auto, "tflite") and "int8+adaround" in names(Quantize.auto, "onnx")
    assert "int8+adaround" not in names(Quantize.int8, "tflite") + names(Quantize.int8, "onnx")
    assert "int8+adaround" not in names(Quantize.auto, "tflite", source="onnx")  # onnx2tf: no refinements
    for model_format in ("tflite", "onnx"):
        assert names(Quantize.auto, model_format, only="int8+adaround") == ["float32", "int8", "int8+adaround"]


def test_adaround_is_built_where_plain_int8_misses_or_where_it_alone_is_asked_for() -> None:
    assert adaround_not_needed(False, False, "SQNR 3.1 dB") == ""
    assert adaround_not_needed(True, False, "SQNR 31.0 dB") == \
        "not needed: plain int8 meets the criterion (SQNR 31.0 dB)"
    assert adaround_not_needed(True, True) == ""  # the unpruned reference of a build that shipped it
