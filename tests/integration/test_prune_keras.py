"""Structured pruning of real Keras models, one tiny model per topology.

For each: ratio 0 is bit-identical; ratio 0.5 removes exactly the parameters counted by hand,
keeps output shapes, and equals the zero-masked model the sensitivity scan uses; an op without a
coupling rule is reported and its channels are left alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.graph import keras_prune, keras_recover
from edgekiln.compiler.prune import cost, groups, importance

pytestmark = pytest.mark.integration


def _build(name: str):
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(11)
    L = keras.layers  # noqa: N806
    if name == "sequential":
        return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, padding="same"), L.BatchNormalization(),
                                 L.ReLU(), L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                                 L.GlobalAveragePooling2D(), L.Dense(4, activation="softmax")])
    x = inp = keras.Input((8, 8, 3))
    if name == "chain":
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        out = L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(x))
    elif name == "residual":
        r = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(r))
        x = L.Conv2D(6, 3, padding="same")(L.ReLU()(L.Add()([y, r])))
        out = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    elif name == "concat":
        x = L.Concatenate()([L.Conv2D(4, 3, padding="same")(x), L.Conv2D(6, 3, padding="same")(x)])
        out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(5, 3, padding="same")(x)))
    elif name == "depthwise":
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 1)(x)))
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(16, 1)(x)))
    elif name == "flatten":
        x = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(4, 3, padding="same")(x)))
        out = L.Dense(3)(L.Dense(10, activation="relu")(x))
    elif name == "blocked":
        x = L.LayerNormalization()(L.Conv2D(8, 3, padding="same")(x))
        out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(8, 3, padding="same")(x)))
    return keras.Model(inp, out)


# Parameters before and after halving every prunable group, counted by hand (kernel + bias per layer;
# BatchNormalization 4 per channel; depthwise 3x3 + bias per channel; LayerNormalization 2 per channel).
HAND_COUNT = {
    "chain": ((27 * 8 + 8) + 4 * 8 + (72 * 16 + 16) + (16 * 4 + 4),
              (27 * 4 + 4) + 4 * 4 + (36 * 8 + 8) + (8 * 4 + 4)),
    "sequential": ((27 * 8 + 8) + 4 * 8 + (72 * 16 + 16) + (16 * 4 + 4),
                   (27 * 4 + 4) + 4 * 4 + (36 * 8 + 8) + (8 * 4 + 4)),
    "residual": ((27 * 8 + 8) + 32 + (72 * 8 + 8) + 32 + (72 * 6 + 6) + (6 * 3 + 3),
                 (27 * 4 + 4) + 16 + (36 * 4 + 4) + 16 + (36 * 3 + 3) + (3 * 3 + 3)),
    "concat": ((27 * 4 + 4) + (27 * 6 + 6) + (90 * 5 + 5) + (5 * 2 + 2),     # c: 5 * 0.5 = 2.5 rounds to 2
               (27 * 2 + 2) + (27 * 3 + 3) + (45 * 3 + 3) + (3 * 2 + 2)),  # removed, so c keeps 3
    "depthwise": ((3 * 8 + 8) + 32 + (9 * 8 + 8) + 32 + (8 * 16 + 16) + (16 * 2 + 2),
                  (3 * 4 + 4) + 16 + (9 * 4 + 4) + 16 + (4 * 8 + 8) + (8 * 2 + 2)),
    "flatten": ((27 * 4 + 4) + (64 * 10 + 10) + (10 * 3 + 3),   # flatten: 4x4 positions x 4 channels
                (27 * 2 + 2) + (32 * 5 + 5) + (5 * 3 + 3)),
    "blocked": ((27 * 8 + 8) + 16 + (72 * 8 + 8) + (8 * 2 + 2),
                (27 * 8 + 8) + 16 + (72 * 4 + 4) + (4 * 2 + 2)),
}
X = np.random.default_rng(5).random((16, 8, 8, 3), dtype=np.float32)


@pytest.fixture(scope="module", params=sorted(HAND_COUNT))
def case(request):
    model = _build(request.param)
    analysis = groups.analyze(keras_prune.channel_graph(model))
    return request.param, model, analysis


def test_ratio_zero_is_bit_identical(case):
    _, model, analysis = case
    plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.0))
    assert plan == {}
    copy = keras_prune.apply(model, analysis, plan)
    assert np.array_equal(copy.predict(X, verbose=0), model.predict(X, verbose=0))


def test_half_removes_exactly_the_hand_counted_parameters(case):
    name, model, analysis = case
    before, after = HAND_COUNT[name]
    plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))
    pruned = keras_prune.apply(model, analysis, plan)
    assert (model.count_params(), pruned.count_params()) == (before, after)
    # the neutral count agrees on what is removed (it does not see the parameters of unknown ops)
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == before - after
    y, y_ref = pruned.predict(X, verbose=0), model.predict(X, verbose=0)
    assert y.shape == y_ref.shape and np.all(np.isfinite(y))
    with keras_prune.masked(model, analysis, plan):  # the scan's zero masks give the removed model's outputs
        assert np.allclose(model.predict(X, verbose=0), y, atol=1e-5)
    assert np.array_equal(model.predict(X, verbose=0), y_ref)  # and the mask is undone


def test_a_layer_without_coupling_rule_is_reported_not_pruned(case):
    name, model, analysis = case
    blocked = {g.label: g.blocked for g in analysis.blocked}
    if name == "blocked":
        conv = model.layers[1].name
        assert blocked[conv] == (f"LayerNormalization {model.layers[2].name} has no coupling rule",)
        plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))
        assert keras_prune.apply(model, analysis, plan).get_layer(conv).filters == 8
    else:  # only the model's output layer is blocked
        assert len(blocked) == 1 and any(r.startswith("model output") for r in next(iter(blocked.values())))


def test_reconstruct_and_distill_bring_a_pruned_model_back_towards_the_original():
    model = _build("residual")
    analysis = groups.analyze(keras_prune.channel_graph(model))
    plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))
    x = np.random.default_rng(6).random((64, 8, 8, 3), dtype=np.float32)
    reference = model.predict(x, verbose=0)
    pruned = keras_prune.apply(model, analysis, plan)
    error = [float(np.mean((pruned.predict(x, verbose=0) - reference) ** 2))]
    facts = keras_recover.reconstruct(pruned, model, analysis, plan, x)
    error.append(float(np.mean((pruned.predict(x, verbose=0) - reference) ** 2)))
    keras_recover.distill(pruned, model, x, epochs=3)
    error.append(float(np.mean((pruned.predict(x, verbose=0) - reference) ** 2)))
    assert facts["layers"] == 3 and error[1] < 0.5 * error[0], error
    assert np.array_equal(model.predict(x, verbose=0), reference)  # the teacher is not touched
    assert np.isfinite(error[2])


def test_finetune_trains_the_pruned_model_on_labels():
    model = _build("chain")
    analysis = groups.analyze(keras_prune.channel_graph(model))
    plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))
    x = np.random.default_rng(7).random((96, 8, 8, 3), dtype=np.float32)
    y = model.predict(x, verbose=0).argmax(1)  # the original's decisions as labels
    pruned = keras_prune.apply(model, analysis, plan)
    before = float(np.mean(pruned.predict(x, verbose=0).argmax(1) == y))
    facts = keras_recover.finetune(pruned, model, x, y, epochs=15)
    after = float(np.mean(pruned.predict(x, verbose=0).argmax(1) == y))
    assert facts["method"] == "finetune" and facts["loss"].startswith("SparseCategoricalCrossentropy + 0.5 x ")
    assert facts["early_stopping"].startswith("off"), facts  # 96 samples: too few to hold any back
    assert after > before, (before, after)


def test_finetune_on_enough_data_holds_some_back_stops_early_and_keeps_the_best_epoch():
    model = _build("chain")
    analysis = groups.analyze(keras_prune.channel_graph(model))
    plan = importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))
    x = np.random.default_rng(8).random((1000, 8, 8, 3), dtype=np.float32)
    y = model.predict(x, verbose=0).argmax(1)
    pruned = keras_prune.apply(model, analysis, plan)
    facts = keras_recover.finetune(pruned, model, x, y, epochs=12, seed=0)
    held = np.random.default_rng(0).permutation(len(x))[:100]  # finetune's first draw: the held-back split
    score = float(np.mean(pruned.predict(x[held], verbose=0).argmax(1) == y[held]) * 100)
    scores = facts["held_back_scores"]
    assert facts["held_back"] == 100 and facts["samples"] == 900
    assert facts["epochs_run"] == len(scores) <= 12
    assert facts["best_epoch"] == int(np.argmax(scores)) + 1
    assert len(scores) == 12 or len(scores) - facts["best_epoch"] == keras_recover.PATIENCE  # stopped by patience
    assert score == round(max(scores), 4), (score, scores)  # the best epoch's weights, not the last
