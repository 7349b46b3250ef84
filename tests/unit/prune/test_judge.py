"""The pruning judge on a subject made of numpy matrices: its scores, verdicts and paired drops are the ones
computed by hand from the outputs, and each model (each zero-masked plan) runs once per sample count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from edgekiln.compiler.prune.driver import PruningJudge
from edgekiln.compiler.prune.paired import paired_drop


class MatrixSubject:
    """A linear 'model' (a weight matrix): outputs x @ w; a plan zeroes input rows of the original's weights."""

    def __init__(self, w: np.ndarray) -> None:
        self.model, self.runs = w, []

    def predict(self, model: np.ndarray, x: np.ndarray) -> np.ndarray:
        self.runs.append(len(x))
        return x @ model

    @contextlib.contextmanager
    def masked(self, plan: dict[int, np.ndarray]) -> Iterator[np.ndarray]:
        kept = self.model.copy()  # zeroed in place and restored, as the Keras subject does
        self.model[~plan[0]] = 0.0
        try:
            yield self.model
        finally:
            self.model[...] = kept


def _data(classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 6)), rng.standard_normal((6, classes))


@pytest.mark.parametrize("labelled", [True, False])
def test_scores_and_verdicts_are_the_outputs_top1_and_each_model_runs_once(labelled: bool) -> None:
    x, w = _data()
    labels = (x @ w).argmax(1) if labelled else None
    if labels is not None:
        labels[:5] = (labels[:5] + 1) % 4  # the original is wrong on 5 of 50: accuracy 90 %
    subject = MatrixSubject(w)
    judge = PruningJudge(subject, x, labels)
    pruned = w + np.random.default_rng(1).standard_normal(w.shape)
    truth = labels if labels is not None else (x @ w).argmax(1)
    runs_before = len(subject.runs)
    for _ in range(3):  # asked again and again, as the auto search does
        assert judge.score(w) == pytest.approx(90.0 if labelled else 100.0)
        assert judge.score(pruned) == np.mean((x @ pruned).argmax(1) == truth) * 100
        assert judge.score(pruned, 20) == np.mean((x[:20] @ pruned).argmax(1) == truth[:20]) * 100
        expected = paired_drop((x @ w).argmax(1) == truth, (x @ pruned).argmax(1) == truth)
        assert judge.paired(pruned) == expected
    assert judge.metric == ("accuracy" if labelled else "agreement")
    assert sorted(subject.runs[runs_before:]) == [20, 50, 50]  # original once, pruned on 50 and on 20 once each


def test_a_masked_plan_is_judged_on_the_masked_outputs_once_and_the_original_is_restored() -> None:
    x, w = _data()
    original = w.copy()
    subject = MatrixSubject(w)
    judge = PruningJudge(subject, x, None)
    plan = {0: np.array([True, False, True, False, True, True])}
    masked = np.where(plan[0][:, None], original, 0.0)
    expected = np.mean((x @ masked).argmax(1) == (x @ original).argmax(1)) * 100
    runs_before = len(subject.runs)
    assert [judge.masked_score(plan) for _ in range(3)] == [expected] * 3
    assert judge.score(subject.model) == 100.0  # not mistaken for the masked model, whose weights it shares
    assert subject.runs[runs_before:] == [50, 50] and np.array_equal(subject.model, original)


def test_a_single_valued_output_is_scored_by_relative_error_and_has_no_verdicts() -> None:
    x, w = _data(classes=1)
    judge = PruningJudge(MatrixSubject(w), x, None)
    off = w * 1.1  # every output 10 % larger: fidelity 90 %
    assert judge.metric == "fidelity" and judge.score(off) == pytest.approx(90.0)
    assert judge.verdicts(off) is None and judge.paired(off) is None
