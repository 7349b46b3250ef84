"""The sweep's front is the non-dominated set (checked against brute force) and its choice obeys the rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import SIZE_MARGIN, SLOWER_MARGIN, Evidence
from edgekiln.compiler.sweep import front
from tests.choice_rule import candidate_row

# Points with labels: quality is the accuracy, the budget is a 1-point drop, latency the host p50.
AXES = front.Axes(Criterion(max_drop=1.0), True, Evidence("host"))


def point(name: str, latency: float, accuracy: float, size: int, within: bool) -> Candidate:
    return candidate_row(name, "tflite", "int8", size, latency, accuracy=accuracy,
                         accuracy_drop=0.5 if within else 2.0)


def _random_points(seed: int, n: int) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    # few distinct values, so that ties (equal on one or more axes) occur
    return [point(f"p{i}", float(rng.integers(1, 6)), float(rng.integers(90, 95)), int(rng.integers(1, 5)) * 1000,
                  bool(rng.random() < 0.7)) for i in range(n)]


def _brute_front(points: list[Candidate]) -> set[str]:
    keep = set()
    for p in points:
        beaten = False
        for q in points:
            lp, lq, ap, aq = p.timings.host_p50_ms, q.timings.host_p50_ms, p.judged.accuracy, q.judged.accuracy
            no_worse = (lq <= lp, aq >= ap, q.bytes <= p.bytes)
            better = (lq < lp, aq > ap, q.bytes < p.bytes)
            beaten |= all(no_worse) and any(better)
        if not beaten:
            keep.add(p.name)
    return keep


@pytest.mark.parametrize("seed", range(30))
def test_the_front_is_the_brute_force_non_dominated_set(seed: int) -> None:
    points = _random_points(seed, 12)
    assert front.front(points, AXES) == _brute_front(points)
    on = [p for p in points if p.name in front.front(points, AXES)]
    assert not any(front.dominates(a, b, AXES) for a, b in itertools.permutations(on, 2))


@pytest.mark.parametrize("seed", range(30))
def test_the_chosen_point_is_the_fastest_within_budget_or_a_smaller_one_within_the_noise(seed: int) -> None:
    points = _random_points(seed, 12)
    evidence = AXES.evidence
    chosen = front.choose(points, AXES)
    eligible = [p for p in points if p.judged.accuracy_drop == 0.5]
    if not eligible:
        assert chosen is None
        return
    assert chosen is not None and chosen in eligible
    fastest = min(p.timings.host_p50_ms for p in eligible)
    assert chosen.timings.host_p50_ms <= fastest * evidence.margin
    close = [p for p in eligible if p.timings.host_p50_ms <= fastest * evidence.margin]
    assert chosen.bytes <= min(p.bytes for p in close) * SIZE_MARGIN


def test_a_smaller_point_within_the_noise_wins_over_the_fastest() -> None:
    fast_big = point("big", 1.00, 95.0, 4000, True)
    near_small = point("small", 1 + (SLOWER_MARGIN - 1) / 2, 95.0, 1000, True)  # within the host's noise margin
    far_small = point("far", SLOWER_MARGIN * 1.2, 95.0, 500, True)
    assert front.choose([fast_big, near_small, far_small], AXES).name == "small"
    assert front.choose([fast_big, far_small], AXES).name == "big"
    assert front.choose([point("over", 0.5, 80.0, 10, False)], AXES) is None


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
