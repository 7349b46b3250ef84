"""compiler/evaluate/metrics.golden_tolerance: how far a device's outputs may be from the host's golden outputs."""

from __future__ import annotations

import numpy as np
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


def test_a_text_bundle_pools_as_its_runtime_does_so_its_tolerance_is_measured_on_what_validate_compares():
    """text_bundle.Pooler: without a mask input the mask is the ids that are not padding (the tokenizer's mask);
    with one, that input. Its embeddings are runtime/text.py's, so the error sizing a dynamic tolerance is the
    error of what `validate` compares from text."""
    from edgekiln.compiler.text_bundle import Pooler
    from edgekiln.runtime.text import normalized, pool

    states = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    ids = np.array([[2, 7, 9, 0, 0], [2, 4, 5, 6, 3]])
    mask = (ids != 0).astype(np.int64)
    ids_only = Pooler("mean", True, 0, {"input_ids": "ids"})
    assert np.array_equal(ids_only.embeddings([states], {"input_ids": ids}), normalized(pool(states, mask, "mean")))
    with_mask = Pooler("mean", False, 0, {"ids": "ids", "attention_mask": "mask"})
    given = np.ones_like(ids)  # a mask input is taken as given, even over padding ids
    assert np.array_equal(with_mask.embeddings([states], {"ids": ids, "attention_mask": given}), states.mean(axis=1))
    # a change diluted by mean pooling: one token's state off by 0.4 moves its sentence's embedding by 0.4 / 3
    moved = states.copy()
    moved[0, 1, 0] += 0.4
    error = np.abs(ids_only.embeddings([moved], {"input_ids": ids}) - ids_only.embeddings([states], {"input_ids": ids}))
    assert 0 < error.max() < 0.4 and golden_tolerance([], [float(error.max())], dynamic=True)[0] < 0.5 * 0.4
