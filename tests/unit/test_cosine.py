"""Cosine fidelity of vector outputs (embeddings, token states): per vector, the mean and the 5th percentile."""

import numpy as np

from edgekiln.compiler.evaluate.metrics import cosine, fidelity


def test_cosine_of_constructed_vectors():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    out = np.array([[2.0, 0.0], [2.0, 0.0], [-3.0, -4.0], [0.0, 0.0]])  # same, orthogonal, opposite, both zero
    got = cosine(ref, out)
    assert got["cosine_mean"] == 0.25  # (1 + 0 - 1 + 1) / 4
    assert got["cosine_p5"] == round(float(np.percentile([1.0, 0.0, -1.0, 1.0], 5)), 6)


def test_a_zero_vector_against_a_nonzero_one_is_not_similar():
    assert cosine(np.zeros((1, 3)), np.ones((1, 3)))["cosine_mean"] == 0.0


def test_token_states_are_compared_token_by_token_and_the_worst_output_counts():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(4, 8, 16))
    noisy = states + rng.normal(scale=0.05, size=states.shape)
    pooled = states.mean(axis=1)
    flipped = pooled.copy()
    flipped[0] *= -1  # one sentence's embedding points the other way
    f = fidelity([states, pooled], [noisy, flipped])
    per = f["per_output"]
    assert per[0]["cosine_mean"] > 0.99 and per[0]["cosine_p5"] > 0.99  # 32 token vectors, small noise
    assert per[1]["cosine_mean"] == 0.5 and per[1]["cosine_p5"] < -0.5
    assert f["cosine_mean"] == per[1]["cosine_mean"] and f["cosine_p5"] == per[1]["cosine_p5"]
