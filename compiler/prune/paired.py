"""The accuracy drop of a pruned model, measured paired: both models on the same samples.

Two accuracies measured on the same n samples are not independent: most samples are right (or wrong) for
both, and only the samples whose verdict changed carry information about the drop. With b = right before
and wrong after, c = wrong before and right after, the drop is (b - c) / n and its standard error
sqrt(b + c - (b - c)^2 / n) / n (the paired difference of proportions, McNemar's setting): when pruning
changes 4 predictions in 1,000, the drop is known to about +-0.3 points, where two unpaired accuracies
would each carry a binomial +-0.9.

The interval is Agresti and Min's (2005): half a sample added to each of the four cells before the Wald
interval, which keeps its coverage when b and c are small (as they are for a good plan), where the plain
Wald interval collapses to zero width at b = c = 0.

The budget rule reads the one-sided upper bound: a plan is within budget when the drop is, with 95 %
confidence, at most the budget. A noisy difference that merely happens to fall under the budget does not
qualify; a plan that changes few predictions does, even on a few hundred samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekiln.compiler import manifest_schema

Z_TWO_SIDED = 1.96   # the reported 95 % interval
Z_ONE_SIDED = 1.645  # the budget's test: 95 % confidence that the drop is at most the budget


@dataclass(frozen=True)
class PairedDrop:
    """Drop in percentage points of the pruned model against the reference on the same n samples."""

    n: int
    lost: int     # b: the reference was right, the pruned model is wrong
    gained: int   # c: the reverse
    drop: float   # 100 (b - c) / n
    low: float    # the 95 % interval of the drop
    high: float
    upper: float  # the one-sided 95 % upper bound the budget is held against

    def within(self, budget: float) -> bool:
        return self.upper <= budget

    def to_dict(self) -> manifest_schema.PairedDrop:
        """As the manifest records it: points rounded to 3 decimals, `interval` [low, high]."""
        return {"samples": self.n, "lost": self.lost, "gained": self.gained, "drop": round(self.drop, 3),
                "interval": [round(self.low, 3), round(self.high, 3)], "upper_bound": round(self.upper, 3)}


def paired_drop(reference_right: np.ndarray, pruned_right: np.ndarray) -> PairedDrop:
    """The paired drop from each sample's verdict (True: right) under the reference and the pruned model."""
    before, after = np.asarray(reference_right, bool), np.asarray(pruned_right, bool)
    if before.shape != after.shape or before.ndim != 1 or before.size == 0:
        raise ValueError(f"paired verdicts need two equal 1-d arrays, got {before.shape} and {after.shape}")
    n = int(before.size)
    lost, gained = int(np.sum(before & ~after)), int(np.sum(~before & after))
    centre, half_two, half_one = _agresti_min(n, lost, gained)
    return PairedDrop(n, lost, gained, 100.0 * (lost - gained) / n, 100.0 * (centre - half_two),
                      100.0 * (centre + half_two), 100.0 * (centre + half_one))


def _agresti_min(n: int, lost: int, gained: int) -> tuple[float, float, float]:
    """Centre and half-widths (two-sided, one-sided) of the adjusted paired interval, as proportions."""
    b, c, total = lost + 0.5, gained + 0.5, n + 2.0
    centre = (b - c) / total
    variance = max((b + c) - (b - c) ** 2 / total, 0.0) / total ** 2
    spread = math.sqrt(variance)
    return centre, Z_TWO_SIDED * spread, Z_ONE_SIDED * spread
