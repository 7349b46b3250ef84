"""The TFLite entropy calibration's batched search (every clip point a row of one array) chooses the clip point
the previous implementation (one clip point per loop step, kept here as the reference) chooses."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.emit.calibrate import BINS, ENTROPY_STEP, _entropy, smooth


def _reference(hist: np.ndarray, levels: int) -> int:
    """calibrate._entropy before it was batched (commit 00de7ee), verbatim but for names."""
    counts = hist.astype(np.float64)
    best, best_kl = len(counts), np.inf
    for edge in range(levels, len(counts) + 1, ENTROPY_STEP):
        p = counts[:edge].copy()
        p[-1] += counts[edge:].sum()
        q = _reference_quantized(counts[:edge], levels, p > 0)
        if q.sum() == 0:
            continue
        p_n, q_n = smooth(p / p.sum()), np.maximum(smooth(q / q.sum()), 1e-12)
        mask = p_n > 0
        kl = float(np.sum(p_n[mask] * np.log(p_n[mask] / q_n[mask])))
        if kl < best_kl:
            best, best_kl = edge, kl
    return best


def _reference_quantized(counts: np.ndarray, levels: int, occupied: np.ndarray) -> np.ndarray:
    lengths = np.full(levels, len(counts) // levels)
    lengths[: len(counts) % levels] += 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    mass, filled = np.add.reduceat(counts, starts), np.add.reduceat(occupied.astype(np.float64), starts)
    share = np.divide(mass, filled, out=np.zeros_like(mass), where=filled > 0)
    return np.repeat(share, lengths) * occupied


def _magnitudes(kind: str, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(30, 40_000))
    draws = {"heavy tail": lambda: np.abs(rng.standard_t(3, size)),
             "relu, sparse": lambda: np.maximum(rng.normal(0, 1, size), 0) * (rng.random(size) < 0.2),
             "few values": lambda: rng.choice([0.0, 0.5, 3.0, 7.0], size),
             "uniform": lambda: rng.uniform(0, 1, size),
             "outlier": lambda: np.concatenate([np.abs(rng.normal(0, 0.01, size)), [50.0]])}
    return draws[kind]()


@pytest.mark.parametrize("levels", [128, 256])
@pytest.mark.parametrize("kind", ["heavy tail", "relu, sparse", "few values", "uniform", "outlier"])
def test_batched_search_chooses_the_reference_clip_point(kind: str, levels: int) -> None:
    rng = np.random.default_rng([levels, len(kind)])
    for _ in range(2):
        x = _magnitudes(kind, rng)
        hist = np.histogram(x, bins=BINS, range=(0.0, float(x.max())))[0]
        assert _entropy(hist, levels) == _reference(hist, levels), (kind, levels)


def test_an_all_empty_tail_and_a_single_full_bin() -> None:
    """Degenerate histograms: all the mass in bin 0 (every quantized step but the first is empty), and a
    histogram whose quantized form is empty at every clip point but the widest."""
    first = np.zeros(BINS, np.int64)
    first[0] = 100
    last = np.zeros(BINS, np.int64)
    last[-1] = 7
    for hist in (first, last):
        for levels in (128, 256):
            assert _entropy(hist, levels) == _reference(hist, levels)
