"""Which artifact formats a build compares (compiler/formats.py): no TensorFlow needed."""

from __future__ import annotations

import pytest

from edgekiln import targets
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search import formats


def _resolve(target: str, **changes) -> formats.Formats:
    recipe = Recipe(source="m.keras", target=target, calib="c.npz", **changes)
    return formats.resolve(recipe, targets.load(target))


def test_auto_quantize_without_a_format_compares_every_format_the_target_runs() -> None:
    chosen = _resolve("rpi4")
    assert chosen.build == ("tflite", "onnx")  # the target's default first
    assert chosen.left_out == {}


@pytest.mark.parametrize("quantize", ["int8", "float16", "dynamic", "none"])
def test_a_forced_mode_without_a_format_keeps_the_targets_default(quantize: str) -> None:
    assert _resolve("rpi4", quantize=quantize).build == ("tflite",)


def test_format_auto_compares_even_a_forced_mode() -> None:
    assert _resolve("x86-64", quantize="int8", format="auto").build == ("tflite", "onnx")


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_an_explicit_format_is_the_only_one(fmt: str) -> None:
    chosen = _resolve("rpi4", format=fmt)
    assert chosen.build == (fmt,) and chosen.left_out == {}


def test_a_format_without_a_wheel_for_the_target_is_left_out_and_says_why() -> None:
    chosen = _resolve("rpi3-armv7l")  # 32-bit Pi OS: tflite-runtime from apt, no onnxruntime wheel for armv7l
    assert chosen.build == ("tflite",)
    assert "onnxruntime==1.32.0 has no wheel for armv7l" in chosen.left_out["onnx"]


def test_a_target_that_runs_no_format_keeps_its_default_for_the_refusal() -> None:
    assert _resolve("jetson-nano").build == ("tflite",)  # Python 3.6: check_wheels refuses it with the hint
