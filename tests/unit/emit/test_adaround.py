"""AdaRound's numpy core (emit/adaround.py): im2col as a conv computes it, output error read through the Gram
matrix as the conv's own output error, and learned integers one step from nearest at most, with a lower output
error on held-back inputs than nearest rounding (the issue's acceptance). No TensorFlow; a few hundred weights."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.emit import adaround as ar

FAST = ar.Settings(iterations=200)


def _conv(x: np.ndarray, w: np.ndarray, window: ar.Window) -> np.ndarray:
    """A direct conv over the patches (N * OH * OW, O) of NHWC x and [O, kh, kw, C] weights."""
    p = ar.patches(x, window)
    return p.reshape(len(p), -1) @ w.reshape(len(w), -1).T


def _inputs(rng: np.random.Generator, count: int, channels: int, size: int = 10) -> list[np.ndarray]:
    """ReLU-like inputs whose channels differ in scale, as a trained network's do."""
    gain = rng.uniform(0.2, 3.0, channels)
    return [np.maximum(rng.normal(0.3, 1.0, (1, size, size, channels)), 0) * gain for _ in range(count)]


def test_patches_follow_tf_same_padding_strides_and_dilation() -> None:
    x = np.arange(1 * 5 * 5 * 2, dtype=np.float64).reshape(1, 5, 5, 2)
    same = ar.patches(x, ar.Window((3, 3), (2, 2), same=True))
    assert same.shape == (9, 3, 3, 2)  # ceil(5 / 2) = 3 per axis
    assert np.array_equal(same[0, 1:, 1:], x[0, :2, :2]) and not same[0, 0].any()  # one zero pad row/column first
    valid = ar.patches(x, ar.Window((3, 3), dilations=(2, 2), same=False))
    assert valid.shape == (1, 3, 3, 2) and np.array_equal(valid[0], x[0, ::2, ::2])
    for window in (ar.Window((3, 3), (2, 2)), ar.Window((3, 3), dilations=(2, 2), same=False), ar.Window((1, 1))):
        assert ar.positions(x.shape, window) == len(ar.patches(x, window))


@pytest.mark.parametrize("depthwise", [False, True])
def test_the_gram_matrix_gives_the_layers_own_output_error(depthwise: bool) -> None:
    rng = np.random.default_rng(1)
    xs, window = _inputs(rng, 3, 4), ar.Window((3, 3), (2, 2))
    if depthwise:  # [1, kh, kw, C]: channel c reads input channel c
        w = rng.normal(size=(1, 3, 3, 4))
        rows, gram, groups = w[0].reshape(9, 4).T, ar.depthwise_gram(xs, window), np.arange(4)
        wrong = rows + rng.normal(0, 0.01, rows.shape)
        direct = sum((np.einsum("pkc,ck->pc", ar.patches(x, window).reshape(-1, 9, 4), wrong - rows) ** 2).sum(0)
                     for x in xs)
    else:
        w = rng.normal(size=(5, 3, 3, 4))
        rows, gram, groups = w.reshape(5, -1), ar.conv_gram(xs, window), np.zeros(5, int)
        wrong = rows + rng.normal(0, 0.01, rows.shape)
        direct = sum(((_conv(x, wrong, window) - _conv(x, rows, window)) ** 2).sum(0) for x in xs)
    scales = np.abs(rows).max(axis=1) / 127
    problem = ar.Problem(rows, scales, gram, groups)
    assert np.allclose(ar.channel_errors(problem, wrong / scales[:, None]), direct)


@pytest.mark.parametrize("depthwise", [False, True])
def test_learned_rounding_is_one_step_from_nearest_and_lowers_the_held_back_error(depthwise: bool) -> None:
    rng = np.random.default_rng(0)
    channels, window = 8, ar.Window((3, 3))
    fitted, held = _inputs(rng, 16, channels), _inputs(rng, 16, channels)
    if depthwise:
        rows, groups, gram_of = rng.normal(0, 0.3, (channels, 9)), np.arange(channels), ar.depthwise_gram
    else:
        rows, groups, gram_of = rng.normal(0, 0.1, (16, 9 * channels)), np.zeros(16, int), ar.conv_gram
    problem = ar.Problem(rows, np.abs(rows).max(axis=1) / 127, gram_of(fitted, window), groups)
    learned, nearest = ar.learn(problem, FAST), ar.nearest(problem)
    assert np.abs(learned - nearest).max() == 1 and learned.min() >= -127 and learned.max() <= 127
    floor = np.floor(rows / problem.scales[:, None])
    assert np.isin(learned - floor, (0, 1)).all()  # up or down, never further
    back = gram_of(held, window)
    # measured: x0.91 (depthwise, 9 weights a channel) and x0.84 (conv, 72 a channel) of nearest's error
    ratio = ar.channel_errors(problem, learned, back).sum() / ar.channel_errors(problem, nearest, back).sum()
    assert ratio < 0.95
    assert (ar.channel_errors(problem, learned) <= ar.channel_errors(problem, nearest)).all()  # per-channel guard


def test_a_dense_layers_rows_read_every_leading_axis() -> None:
    x = np.arange(12, dtype=np.float64).reshape(1, 2, 2, 3)
    flat = x.reshape(-1, 3)
    assert np.allclose(ar.dense_gram([x], 3)[0], flat.T @ flat)


def test_both_formats_candidates_are_described_by_one_helper() -> None:
    """facts / note (the TFLite and ONNX builders' `details.adaround` and row note): weights moved summed over the
    layers, a kept layer counted among the layers but not the learned ones, the samples split as refine splits."""
    layers = (ar.LayerRounding("conv", "CONV_2D", 288, 30, 0.32, 0.31),
              ar.LayerRounding("dense", "FULLY_CONNECTED", 1280, kept="32 input rows for 128 weights a channel"))
    rounded = ar.Rounded(b"", layers, 9.4)
    assert rounded.moved == 30
    assert ar.note(rounded) == "AdaRound: 30 of 1568 int8 weights rounded the other way in 1 of 2 layers (9 s)"
    facts = ar.facts(rounded, ar.Settings(samples=32), feeds=50)
    assert (facts["samples"], facts["held_back"], facts["iterations"]) == (25, 25, 300)
    assert facts["weights_changed"] == 30 and facts["seconds"] == 9.4
    assert facts["layers"] == [{"tensor": "conv", "op": "CONV_2D", "weights": 288, "changed": 30,
                                "error_ratio": 0.32, "held_back": 0.31},
                               {"tensor": "dense", "op": "FULLY_CONNECTED", "weights": 1280, "changed": 0,
                                "kept": "32 input rows for 128 weights a channel"}]
    assert ar.facts(rounded, ar.Settings(samples=32), feeds=100)["held_back"] == 32  # capped at the setting
