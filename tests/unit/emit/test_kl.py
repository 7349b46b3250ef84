"""The batched entropy search returns the window the per-window search (one window per loop step, the
previous implementation, kept here as the reference) returns."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.emit.calibrate import smooth
from edgekiln.compiler.emit.kl import kl_threshold


def _reference(hist: np.ndarray, edges: np.ndarray, quantized_bins: int) -> tuple[float, float]:
    zero, best, best_kl = hist.size // 2, hist.size // 2, np.inf
    for i in range(quantized_bins // 2, zero + 1):
        start, end = zero - i, min(zero + i + 1, hist.size)
        window = hist[start:end].astype(np.int64)
        p = window.copy()
        p[0], p[-1] = p[0] + hist[:start].sum(), p[-1] + hist[end:].sum()
        merged = window.size // quantized_bins
        body = merged * quantized_bins
        levels = window[:body].reshape(quantized_bins, merged).sum(axis=1)
        levels[-1] += window[body:].sum()
        occupied = (p[:body] != 0).reshape(quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, np.int64)
        q[:body] = np.repeat(np.where(occupied > 0, levels // np.maximum(occupied, 1), 0), merged)
        kl = _kl(_smoothed(p), _smoothed(q))
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[zero - best]), float(edges[min(zero + best + 1, hist.size)])


def _smoothed(counts):
    return None if not counts.any() else smooth(counts.astype(np.float32), 1e-4)


def _kl(p, q) -> float:
    if p is None or q is None:
        return np.inf
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def _histogram(data: np.ndarray, bins: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    top = np.float32(np.abs(data).max())
    hist, edges = np.histogram(data, bins, range=(-top, top))
    return hist, edges.astype(np.float32)


RNG = np.random.default_rng(5)
CASES = {
    "heavy tail": np.concatenate([RNG.standard_t(3, 50_000), [40.0, -35.0]]),
    "relu (one-sided, sparse)": np.maximum(RNG.normal(0, 1, 30_000), 0) * (RNG.random(30_000) < 0.2),
    "few values": RNG.choice([-1.0, 0.0, 0.5, 3.0], 2_000),
    "uniform": RNG.uniform(-1, 1, 20_000),
    "tiny sample": RNG.normal(0, 1, 40),
}


@pytest.mark.parametrize("name", CASES)
def test_batched_search_matches_the_per_window_search(name: str) -> None:
    hist, edges = _histogram(CASES[name].astype(np.float32))
    assert kl_threshold(hist, edges, 256) == _reference(hist, edges, 256)


def test_an_odd_grid_and_a_small_histogram() -> None:
    hist, edges = _histogram(CASES["heavy tail"].astype(np.float32), bins=1001)
    assert kl_threshold(hist, edges, 128) == _reference(hist, edges, 128)
