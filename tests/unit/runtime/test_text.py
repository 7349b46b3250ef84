"""The bundle's text path without an interpreter (runtime/text.py): pooling and normalization."""

from __future__ import annotations

import numpy as np

from edgekiln.runtime.text import normalized, pool


def test_mean_pooling_is_sentence_transformers_mean_over_the_attention_mask():
    states = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    # sentence-transformers' Pooling (mean): sum(states * mask) / clamp(sum(mask), min=1e-9), per sentence
    expected = np.stack([states[0, :2].mean(0), states[1].mean(0)])
    assert np.allclose(pool(states, mask, "mean"), expected)
    assert not np.allclose(pool(states, mask, "mean")[0], states[0].mean(0))  # padding is left out


def test_cls_pooling_takes_the_first_token_and_sentence_vectors_pass_through():
    states = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.ones((3, 5), np.int64)
    assert np.array_equal(pool(states, mask, "cls"), states[:, 0])
    assert np.array_equal(pool(states[:, 0], mask, "mean"), states[:, 0])  # already one vector per sentence


def test_normalized_rows_have_length_one_and_a_zero_row_stays_zero():
    rows = normalized(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
