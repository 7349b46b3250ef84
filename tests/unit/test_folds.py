"""The cross-fitting split (compiler/folds.py) and which samples a build's Datasets judge on: every calibration
sample judged exactly once, by a fold whose calibration never held it; and the manifest's words for the samples
when nothing can be held back. Pure numpy, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.data import (
    CROSS_FITTED,
    EVALUATION,
    MIN_CALIBRATION_SAMPLES,
    NOT_HELD_BACK,
    TUNING_SAMPLES,
    Datasets,
)
from edgekiln.compiler.folds import FOLDS, Folds, split
from edgekiln.compiler.model_inputs import Dataset


@pytest.mark.parametrize(("size", "k"), [(100, 3), (101, 3), (15, 3), (64, 4), (7, 7)])
def test_every_sample_is_judged_exactly_once_and_never_by_a_fold_fitted_on_it(size, k):
    folds = Folds(size, k)
    judged = np.concatenate([folds.judged(f) for f in range(k)])
    assert np.array_equal(np.sort(judged), np.arange(size))  # each index once: no repeat, none missing
    for f in range(k):
        fitted, held = folds.fitted(f), folds.judged(f)
        assert not set(fitted) & set(held)
        assert np.array_equal(np.sort(np.concatenate([fitted, held])), np.arange(size))


def test_folds_interleave_so_data_stored_in_class_order_gives_each_fold_every_class():
    classes = np.repeat(np.arange(5), 20)  # 100 samples stored class by class
    folds = Folds(100, 3)
    assert all(set(classes[folds.judged(f)]) == set(range(5)) for f in range(3))
    assert [len(folds.judged(f)) for f in range(3)] == [34, 33, 33]
    assert Folds(100).k == FOLDS


def test_pool_puts_each_folds_outputs_back_in_sample_order():
    folds = Folds(10, 3)
    truth = [np.arange(10 * 4, dtype=np.float32).reshape(10, 4), np.arange(10, dtype=np.int64)[:, None]]
    per_fold = [[out[folds.judged(f)] for out in truth] for f in range(3)]
    pooled = folds.pool(per_fold)
    assert all(np.array_equal(p, t) and p.dtype == t.dtype for p, t in zip(pooled, truth, strict=True))
    with pytest.raises(ValueError, match="2 folds of outputs for 3 folds"):
        folds.pool(per_fold[:2])


def test_split_refuses_folds_whose_calibration_would_be_too_small():
    assert split(15, 10, k=3) == Folds(15, 3)  # folds of 5: each calibrates on 10
    assert split(14, 10, k=3) is None  # the largest fold (5) leaves 9
    assert split(20, 10, k=2) == Folds(20, 2) and split(19, 10, k=2) is None
    assert split(2, 1, k=3) is None and split(100, 10, k=1) is None  # fewer samples than folds; one fold


def _data(n: int, folds: Folds | None, evaluation: int = 0, cap: int = 256) -> Datasets:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    held = Dataset({"x": np.ones((evaluation, 2), np.float32)}, None, "eval") if evaluation else None
    return Datasets(Dataset({"x": x}, None, "calib"), held, folds, cap)


def test_cross_fitted_data_judge_every_sample_and_the_shipped_quantizer_takes_them_all():
    data = _data(30, split(30, MIN_CALIBRATION_SAMPLES, k=3), evaluation=8)
    assert data.judged_by == CROSS_FITTED and data.fidelity_set.size == 30  # not the evaluation data
    assert data.calib is not None and np.array_equal(data.calib.inputs["x"], data.fidelity_set.inputs["x"])
    # the shipped model's decisions: on its own calibration samples (the first TUNING_SAMPLES), as each fold's
    assert np.array_equal(data.tuning_set.inputs["x"], data.calib.inputs["x"][:TUNING_SAMPLES])
    for fold in range(3):
        fitted, judged = data.fold_calib(fold).inputs["x"][:, 0], data.fold_judged(fold).inputs["x"][:, 0]
        assert len(fitted) == 20 and len(judged) == 10 and not set(fitted) & set(judged)
    # pruning fits on the first two folds and judges on the last, disjoint too
    assert data.holdout is not None and data.without_holdout is not None
    assert not set(data.holdout.inputs["x"][:, 0]) & set(data.without_holdout.inputs["x"][:, 0])


def test_calib_samples_caps_each_quantizer_but_every_sample_is_judged():
    data = _data(300, split(300, MIN_CALIBRATION_SAMPLES, k=3), cap=256)
    assert data.calib is not None and data.calib.size == 256 and data.fidelity_set.size == 300
    assert data.fold_calib(0).size == 200


def test_without_folds_the_data_say_which_samples_judged():
    with_eval, alone = _data(12, None, evaluation=8), _data(12, None)
    assert with_eval.judged_by == EVALUATION and with_eval.fidelity_set is with_eval.evaluation
    assert alone.judged_by == NOT_HELD_BACK and alone.fidelity_set is alone.samples
    assert alone.holdout is None and alone.without_holdout is alone.calib


@pytest.mark.parametrize(("samples", "holdout", "judged_by"), [(30, 64, CROSS_FITTED), (30, 0, NOT_HELD_BACK),
                                                               (12, 64, NOT_HELD_BACK)])
def test_load_datasets_cross_fits_unless_told_not_to_or_too_few(tmp_path, samples, holdout, judged_by):
    from edgekiln.compiler.data import load_datasets
    from edgekiln.compiler.model_inputs import InputSpec
    from edgekiln.compiler.recipe import Recipe

    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).normal(size=(samples, 4)).astype(np.float32))
    recipe = Recipe(source="m.onnx", calib=str(tmp_path / "c.npz"), quantize="int8", holdout_samples=holdout)
    data = load_datasets(recipe, [InputSpec("x", (-1, 4))])
    assert data.judged_by == judged_by and data.fidelity_set.size == samples
    assert data.calib is not None and data.calib.size == samples  # the shipped model calibrates on all of them
