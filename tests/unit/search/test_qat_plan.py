"""--qat as data: the recipe refuses it where it cannot run, and the plan builds int8+qat only when asked."""

from __future__ import annotations

import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.search.variants import QAT_NEEDS_KERAS, plan


@pytest.mark.parametrize(("changes", "words"), [
    ({}, "pass --train DATA"),
    ({"train": "t.npz", "quantize": "float16"}, "makes an int8 TFLite candidate"),
    ({"train": "t.npz", "format": "onnx"}, "makes an int8 TFLite candidate"),
])
def test_qat_is_refused_in_one_line_where_it_cannot_run(changes, words):
    with pytest.raises(RecipeError) as caught:
        Recipe(**{"source": "m.keras", "qat": True, **changes})
    assert words in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_the_plan_has_int8_qat_only_with_qat():
    for quantize in (Quantize.auto, Quantize.int8):
        without = [v.name for v in plan(quantize, "tflite").build]
        with_qat = [v.name for v in plan(quantize, "tflite", qat=True).build]
        assert "int8+qat" not in without and "int8+qat" not in plan(quantize, "tflite").not_built
        assert with_qat == [*without, "int8+qat"]
    assert plan(Quantize.auto, "tflite", "onnx", qat=True).not_built["int8+qat"] == QAT_NEEDS_KERAS
    assert "int8+qat" not in [v.name for v in plan(Quantize.auto, "onnx", qat=True).build]


def test_a_pinned_int8_qat_builds_plain_int8_beside_it():
    assert [v.name for v in plan(Quantize.int8, "tflite", only="int8+qat", qat=True).build] == \
        ["float32", "int8", "int8+qat"]
