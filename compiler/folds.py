"""K-fold cross-fitting of the calibration samples (pure numpy): which fold judges which sample, and each
fold's outputs pooled back into sample order.

Unlabelled fidelity needs no labels, so no calibration sample need be wasted on judging alone: each
calibrated candidate is built K times more, once per fold from the samples of the other K - 1 folds, and
judged on the fold it never saw; the K judged folds together are every sample, judged exactly once. The
shipped model is the same procedure run on all of them. Folds interleave (sample i is in fold i mod K), so
data stored in class order gives every fold each class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two folds: each fold's model is calibrated (and tuned) on half the samples. Measured with
# bench/bench_crossfit.py (CPU seconds of a default rpi4 build, before / after): three folds cost 1.74x, 2.15x and
# 2.18x (mnist_cnn 100 and 300 samples, mnist_resnet 100), over the 2x budget a build may grow by; two stay within.
# An ONNX source (mnist_dwsep_nchw, 100 / 300 samples): 2.18x / 2.19x while each fold ran onnx2tf again, 1.61x /
# 1.60x with the folds' int8 TFLite from the build's SavedModel (emit/tflite_requantize.py).
FOLDS = 2


@dataclass(frozen=True)
class Folds:
    """`size` samples in `k` interleaved folds."""

    size: int
    k: int = FOLDS

    def judged(self, fold: int) -> np.ndarray:
        """The samples fold `fold` judges (held out of its calibration), in sample order."""
        return np.arange(fold, self.size, self.k)

    def fitted(self, fold: int) -> np.ndarray:
        """The samples fold `fold`'s models are calibrated (and tuned) on: every other fold's."""
        return np.array([i for i in range(self.size) if i % self.k != fold], dtype=np.int64)

    def pool(self, per_fold: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Each output of the K folds' models, on their judged samples, back in sample order: per_fold[f][o]
        is output o of fold f's model on judged(f)."""
        if len(per_fold) != self.k:
            raise ValueError(f"{len(per_fold)} folds of outputs for {self.k} folds")
        pooled = []
        for o, first in enumerate(per_fold[0]):
            array = np.empty((self.size, *first.shape[1:]), dtype=first.dtype)
            for fold, outputs in enumerate(per_fold):
                array[self.judged(fold)] = outputs[o]
            pooled.append(array)
        return pooled


def split(size: int, min_fit: int, k: int = FOLDS) -> Folds | None:
    """The folds of `size` samples, or None when a fold's calibration would have fewer than `min_fit`."""
    if k < 2 or size < k or size - -(-size // k) < min_fit:  # the largest fold leaves the fewest to fit
        return None
    return Folds(size, k)
