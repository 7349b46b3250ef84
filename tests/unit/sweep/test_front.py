"""The sweep's front is the non-dominated set (checked against brute force) and its choice obeys the rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.choose import SIZE_MARGIN, Evidence
from edgekiln.compiler.sweep import front
from edgekiln.compiler.sweep.front import Scored


def _random_points(seed: int, n: int) -> list[Scored]:
    rng = np.random.default_rng(seed)
    # few distinct values, so that ties (equal on one or more axes) occur
    return [Scored(f"p{i}", float(rng.integers(1, 6)), float(rng.integers(90, 95)), int(rng.integers(1, 5)) * 1000,
                   bool(rng.random() < 0.7)) for i in range(n)]


def _brute_front(points: list[Scored]) -> set[str]:
    keep = set()
    for p in points:
        beaten = False
        for q in points:
            no_worse = (q.latency_ms <= p.latency_ms, q.quality >= p.quality, q.bytes <= p.bytes)
            better = (q.latency_ms < p.latency_ms, q.quality > p.quality, q.bytes < p.bytes)
            beaten |= all(no_worse) and any(better)
        if not beaten:
            keep.add(p.name)
    return keep


@pytest.mark.parametrize("seed", range(30))
def test_the_front_is_the_brute_force_non_dominated_set(seed: int) -> None:
    points = _random_points(seed, 12)
    assert front.front(points) == _brute_front(points)
    on = [p for p in points if p.name in front.front(points)]
    assert not any(front.dominates(a, b) for a, b in itertools.permutations(on, 2))


@pytest.mark.parametrize("seed", range(30))
def test_the_chosen_point_is_the_fastest_within_budget_or_a_smaller_one_within_the_noise(seed: int) -> None:
    points = _random_points(seed, 12)
    evidence = Evidence("host")
    chosen = front.choose(points, evidence)
    eligible = [p for p in points if p.within_budget]
    if not eligible:
        assert chosen is None
        return
    assert chosen is not None and chosen.within_budget
    fastest = min(p.latency_ms for p in eligible)
    assert chosen.latency_ms <= fastest * evidence.margin
    close = [p for p in eligible if p.latency_ms <= fastest * evidence.margin]
    assert chosen.bytes <= min(p.bytes for p in close) * SIZE_MARGIN


def test_a_smaller_point_within_the_noise_wins_over_the_fastest() -> None:
    fast_big = Scored("big", 1.00, 95.0, 4000, True)
    near_small = Scored("small", 1.04, 95.0, 1000, True)  # 4 % slower: within the host margin of 5 %
    far_small = Scored("far", 1.20, 95.0, 500, True)
    assert front.choose([fast_big, near_small, far_small], Evidence("host")).name == "small"
    assert front.choose([fast_big, far_small], Evidence("host")).name == "big"
    assert front.choose([Scored("over", 0.5, 80.0, 10, False)], Evidence("host")) is None


def test_quality_and_budget_read_accuracy_when_labelled_else_the_fidelity_floor() -> None:
    labelled = Criterion(max_drop=1.0)
    assert front.within_budget({"accuracy": 97.0, "accuracy_drop": 1.0}, labelled, True)
    assert not front.within_budget({"accuracy": 96.9, "accuracy_drop": 1.1}, labelled, True)
    assert front.quality_of({"accuracy": 97.0}, True) == 97.0
    floor = Criterion()
    assert front.within_budget({"sqnr_db": None, "agreement": 1.0}, floor, False)  # exact: the source itself
    assert not front.within_budget({"sqnr_db": 25.0, "agreement": 1.0}, floor, False)
    assert not front.within_budget({"sqnr_db": 40.0, "agreement": 0.9}, floor, False)
    assert front.quality_of({"sqnr_db": None}, False) == math.inf


def test_under_a_cosine_floor_the_budget_and_the_quality_axis_read_the_cosine() -> None:
    embeddings = Criterion(min_cosine=0.98, min_cosine_p5=0.95)
    good_tail = {"sqnr_db": 25.0, "agreement": 1.0, "cosine_mean": 0.99, "cosine_p5": 0.97}
    poor_tail = {"sqnr_db": 35.0, "agreement": 1.0, "cosine_mean": 0.99, "cosine_p5": 0.93}
    assert front.within_budget(good_tail, embeddings, False) and not front.within_budget(poor_tail, embeddings, False)
    assert not front.within_budget(good_tail, Criterion(), False)  # SQNR 25 dB: below the default floor
    assert front.quality_key(False, embeddings) == "cosine_p5"
    assert front.quality_of(good_tail, False, embeddings) == 0.97
    assert front.quality_key(False, Criterion(min_cosine=0.98)) == "cosine_mean"
    assert front.quality_key(True, embeddings) == "accuracy" and front.quality_key(False, Criterion()) == "sqnr_db"
    labelled = Criterion(max_drop=1.0, min_cosine_p5=0.95)  # with labels: the budget and the floor
    assert not front.within_budget({**poor_tail, "accuracy": 97.0, "accuracy_drop": 0.5}, labelled, True)
    assert front.within_budget({**good_tail, "accuracy": 97.0, "accuracy_drop": 0.5}, labelled, True)
