"""compiler/evaluate/metrics.golden_tolerance: how far a device's outputs may be from the host's golden outputs."""

from __future__ import annotations

import pytest

from edgekiln.compiler.evaluate.metrics import DYNAMIC_SHARE, FLOAT_TOLERANCE, golden_tolerance


def test_int8_outputs_allow_two_steps_of_the_coarsest_output_and_nothing_relative():
    assert golden_tolerance([0.02, 0.008], [0.3], dynamic=False) == (0.02, 0.0)


def test_float_models_get_the_tight_float_bounds_whatever_their_error():
    assert golden_tolerance([], [0.3], dynamic=False) == FLOAT_TOLERANCE
    assert golden_tolerance([], [0.0], dynamic=True) == FLOAT_TOLERANCE  # dynamic, yet exact: nothing to allow


def test_dynamic_int8_allows_a_share_of_its_quantization_error():
    # paraphrase-MiniLM-L3-v2 fused+dynamic: token states off the float model by up to 0.243, the sentence
    # embedding by 0.098, two int64 pass-through outputs exact; an emulated Cortex-A72 differed from this host by
    # up to 0.034 (an activation rounded to the neighbouring step).
    atol, rtol = golden_tolerance([], [0.0, 0.0, 0.243, 0.098], dynamic=True)
    assert atol == pytest.approx(DYNAMIC_SHARE * 0.243) and rtol == FLOAT_TOLERANCE[1]
    assert 0.034 < atol < 0.243  # the ARM difference passes; a device off by the quantization error does not
    assert golden_tolerance([], [1e-6], dynamic=True)[0] == FLOAT_TOLERANCE[0]  # never tighter than float
