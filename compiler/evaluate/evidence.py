"""How sure a fidelity figure is: intervals from the judged samples, so that a decision never reads a
difference smaller than its own uncertainty.

- Top-1 agreement is a count: of n judged samples, k changed their class (flips). Its bounds are the exact
  (Clopper-Pearson) binomial bounds of the flip rate, found by bisection on the binomial tail: they hold at
  k = 0 and k = 1 on a dozen samples, where the normal and even the Wilson approximations mislead (Wilson puts
  the lower bound of 1 flip in 13 at 1.7 %, the exact one is 0.39 %).
- Cosine (mean, 5th percentile) and SQNR are statistics of per-sample values: their intervals are percentile
  bootstrap intervals over the judged samples (resampling whole samples, since the vectors of one sample, its
  tokens, are not independent), with a fixed seed so that a build is reproducible.

The rule that reads them (evaluate/criterion.py): a model fails a floor only when the evidence shows it worse
than the floor (the one-sided 95 % bound is past it); where the interval is wider than the floor's own slack,
the evidence is weak, and the build says how many samples would tell.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

ALPHA = 0.05        # one-sided 95 % bounds decide; two-sided 95 % intervals are reported
RESAMPLES = 400      # bootstrap resamples: enough for a 95 % percentile interval to 2 digits at this n
SEED = 0


@functools.lru_cache(maxsize=64)
def _log_factorials(n: int) -> np.ndarray:
    """log(i!) for i = 0..n."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def _tail_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (vectorised: a bound of a few hundred judged
    samples bisects it 60 times, for every candidate)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_fact, i = _log_factorials(n), np.arange(k, n + 1)
    logs = log_fact[n] - log_fact[i] - log_fact[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(np.max(logs))
    return min(1.0, math.exp(top) * float(np.sum(np.exp(logs - top))))


def _solve(increasing: Callable[[float], float], target: float) -> float:
    """The p in [0, 1] where an increasing function of p reaches target (bisection to 1e-7)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if increasing(mid) < target else (low, mid)
    return (low + high) / 2


@functools.lru_cache(maxsize=1024)
def flip_rate_low(flips: int, n: int, alpha: float = ALPHA) -> float:
    """The exact one-sided (1 - alpha) lower bound of the flip rate: above a floor, the evidence shows the model
    worse than it."""
    return 0.0 if flips == 0 else _solve(lambda p: _tail_at_least(flips, n, p), alpha)


@functools.lru_cache(maxsize=1024)
def flip_rate_high(flips: int, n: int, alpha: float = ALPHA) -> float:
    """The exact one-sided (1 - alpha) upper bound of the flip rate: what the samples cannot rule out."""
    return 1.0 if flips >= n else _solve(lambda p: _tail_at_least(flips + 1, n, p), 1 - alpha)


def flip_interval(flips: int, n: int) -> tuple[float, float]:
    """The two-sided 95 % exact interval of the flip rate."""
    return flip_rate_low(flips, n, ALPHA / 2), flip_rate_high(flips, n, ALPHA / 2)


@functools.lru_cache(maxsize=64)
def samples_to_tell(max_rate: float) -> int:
    """How many samples, none flipping, put the one-sided 95 % upper bound of the flip rate at `max_rate`:
    the n where a clean run shows the model within a floor of at most max_rate flips."""
    n = 1
    while flip_rate_high(0, n) > max_rate:
        n = math.ceil(n * 1.25) if n > 8 else n + 1
    low, high = max(1, int(n / 1.25)), n
    while low < high:  # the smallest n within the last step
        mid = (low + high) // 2
        low, high = (mid + 1, high) if flip_rate_high(0, mid) > max_rate else (low, mid)
    return high


def bootstrap(per_sample: np.ndarray, statistic: Callable[[np.ndarray], float],
              seed: int = SEED) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of statistic(per_sample[rows]), resampling the first axis."""
    n = per_sample.shape[0]
    if n < 2:
        value = statistic(per_sample)
        return value, value
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(RESAMPLES, n))
    values = np.array([statistic(per_sample[rows]) for rows in draws])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
