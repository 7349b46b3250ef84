"""The sweep's front and its choice.

Every point is compared on three axes at once: latency (lower), quality (higher) and model bytes (lower).
A point is on the front when no other point is at least as good on all three and better on one. Latency is
the best evidence every point has about the target (search/choose.evidence_for): host p50s timed side by
side on the driver when host and target share an arch, else the target's cost-model estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import SIZE_MARGIN, Evidence


@dataclass(frozen=True)
class Axes:
    """How the front reads a point (a sweep point's row read back as a Candidate): its latency by the evidence,
    its quality (accuracy when labelled, else what the fidelity floor reads: quality_key; SQNR None is exact),
    its bytes, and whether it meets the build's rule."""

    criterion: Criterion
    labelled: bool
    evidence: Evidence

    def latency(self, point: Candidate) -> float:
        value = self.evidence.latency(point)
        return math.inf if value is None else value

    def quality(self, point: Candidate) -> float:
        return quality_of(point.judged.to_dict(), self.labelled, self.criterion)

    def within_budget(self, point: Candidate) -> bool:
        return within_budget(point.judged.to_dict(), self.criterion, self.labelled)


def dominates(a: Candidate, b: Candidate, axes: Axes) -> bool:
    la, lb, qa, qb = axes.latency(a), axes.latency(b), axes.quality(a), axes.quality(b)
    at_least = la <= lb and qa >= qb and a.bytes <= b.bytes
    better = la < lb or qa > qb or a.bytes < b.bytes
    return at_least and better


def front(points: list[Candidate], axes: Axes) -> set[str]:
    """The names of the non-dominated points."""
    return {p.name for p in points if not any(dominates(q, p, axes) for q in points if q is not p)}


def choose(points: list[Candidate], axes: Axes) -> Candidate | None:
    """The fastest point within the budget; among those within the evidence's noise margin of it, the
    smallest (sizes within SIZE_MARGIN are one size: then the fastest). None when no point is within."""
    eligible = [p for p in points if axes.within_budget(p)]
    if not eligible:
        return None
    fastest = min(axes.latency(p) for p in eligible)
    close = [p for p in eligible if axes.latency(p) <= fastest * axes.evidence.margin]
    smallest = min(p.bytes for p in close)
    return min((p for p in close if p.bytes <= smallest * SIZE_MARGIN), key=lambda p: (axes.latency(p), p.bytes))


def quality_key(labelled: bool, criterion: Criterion) -> str:
    """The row key of the quality axis: accuracy with labels, else the figure the fidelity floor reads (a
    cosine floor's 5th percentile, or its mean when only that is given; else SQNR)."""
    if labelled:
        return "accuracy"
    if criterion.by_cosine:
        return "cosine_p5" if criterion.min_cosine_p5 is not None else "cosine_mean"
    return "sqnr_db"


def quality_of(row: dict, labelled: bool, criterion: Criterion | None = None) -> float:
    key = quality_key(labelled, criterion or Criterion())
    if key == "sqnr_db":
        return math.inf if row.get("sqnr_db") is None else float(row["sqnr_db"])  # None: reproduces the source
    return float(row[key]) if row.get(key) is not None else -math.inf


def within_budget(row: dict, criterion: Criterion, labelled: bool) -> bool:
    """The build's rule (Criterion.meets) on a sweep row: the accuracy budget only when labelled."""
    rule = replace(criterion, max_drop=(criterion.max_drop or 0.0) if labelled else None)
    return rule.meets(Quality.from_dict(row))
