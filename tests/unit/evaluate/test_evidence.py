"""The intervals the choice reads (evaluate/evidence.py), checked against values computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekiln.compiler.evaluate import evidence


def test_no_flip_bounds_are_the_closed_form():
    """With k = 0 the exact upper bound solves (1 - p)^n = alpha: p = 1 - alpha^(1/n)."""
    for n in (13, 100, 2000):
        assert evidence.flip_rate_high(0, n) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-6)
        assert evidence.flip_rate_low(0, n) == 0.0


def test_one_flip_lower_bound_is_the_closed_form():
    """With k = 1 the exact lower bound solves 1 - (1 - p)^n = alpha: p = 1 - (1 - alpha)^(1/n)."""
    assert evidence.flip_rate_low(1, 13) == pytest.approx(1 - 0.95 ** (1 / 13), abs=1e-6)


def test_bounds_hold_their_coverage_by_the_binomial_tail():
    """At the bounds, the binomial tail equals alpha (computed here with math.comb, not the module's sum)."""
    k, n = 40, 2000
    low, high = evidence.flip_rate_low(k, n), evidence.flip_rate_high(k, n)

    def at_least(j: int, p: float) -> float:
        return 1 - sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(j))  # few terms, no overflow

    assert at_least(k, low) == pytest.approx(0.05, abs=1e-4)
    assert 1 - at_least(k + 1, high) == pytest.approx(0.05, abs=1e-4)
    assert low < k / n < high


def test_samples_to_tell_is_the_smallest_clean_run_within_the_floor():
    n = evidence.samples_to_tell(0.01)
    assert evidence.flip_rate_high(0, n) <= 0.01 < evidence.flip_rate_high(0, n - 1)
    assert n == math.ceil(math.log(0.05) / math.log(0.99))  # 299


def test_bootstrap_interval_covers_the_statistic_and_narrows_with_samples():
    rng = np.random.default_rng(3)
    small, large = rng.normal(0.99, 0.01, 20), rng.normal(0.99, 0.01, 2000)
    lo_s, hi_s = evidence.bootstrap(small, lambda v: float(np.mean(v)))
    lo_l, hi_l = evidence.bootstrap(large, lambda v: float(np.mean(v)))
    assert lo_s <= float(np.mean(small)) <= hi_s and lo_l <= float(np.mean(large)) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4  # ~ 1 / sqrt(100) as wide
    assert evidence.bootstrap(small, lambda v: float(np.mean(v))) == (lo_s, hi_s)  # seeded: reproducible
