"""The paired drop: counts, drop and interval computed exactly on constructed verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekiln.compiler.prune.paired import paired_drop


def test_counts_drop_and_interval_of_a_constructed_example() -> None:
    # 1,000 samples: the reference gets 990 right; pruning loses 8 of them and gains 2 it got wrong
    reference = np.array([True] * 990 + [False] * 10)
    pruned = reference.copy()
    pruned[:8] = False
    pruned[990:992] = True
    p = paired_drop(reference, pruned)
    assert (p.n, p.lost, p.gained) == (1000, 8, 2)
    assert p.drop == pytest.approx(0.6, abs=1e-12)  # 98.8 % against 99.0 %
    # Agresti-Min by hand: b = 8.5, c = 2.5, n = 1002; centre 6/1002; variance (11 - 36/1002) / 1002^2
    centre, spread = 6 / 1002, math.sqrt((11 - 36 / 1002) / 1002 ** 2)
    assert (p.low, p.high) == pytest.approx((100 * (centre - 1.96 * spread), 100 * (centre + 1.96 * spread)))
    assert (p.low, p.high) == pytest.approx((-0.0489, 1.2465), abs=1e-4)
    assert p.upper == pytest.approx(1.1424, abs=1e-4)
    assert not p.within(1.0) and p.within(1.2)  # 0.6 points measured, but not shown to be under 1.0


def test_no_changed_prediction_is_a_tight_zero_and_the_budget_holds() -> None:
    same = np.ones(500, bool)
    p = paired_drop(same, same)
    assert (p.lost, p.gained, p.drop) == (0, 0, 0.0)
    assert 0 < p.upper < 0.35 and p.within(0.7)  # few changes: known to a fraction of a point on 500 samples


def test_the_same_accuracies_with_more_changes_are_less_certain() -> None:
    reference = np.array([True] * 900 + [False] * 100)
    churn = reference.copy()
    churn[:60] = False
    churn[900:960] = True  # 60 lost, 60 gained: the same 90 % accuracy, but 120 changed predictions
    p = paired_drop(reference, churn)
    assert p.drop == 0.0 and p.high - p.low > 2.5 and not p.within(0.7)


def test_verdicts_must_pair_up() -> None:
    with pytest.raises(ValueError, match="two equal 1-d arrays"):
        paired_drop(np.ones(3, bool), np.ones(4, bool))
