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
from edgekiln.compiler.search.choose import SIZE_MARGIN, Evidence


@dataclass(frozen=True)
class Scored:
    """One built point as the front sees it. quality: accuracy (labelled), else what the floor reads
    (quality_key: a cosine, or SQNR dB, inf: exact)."""

    name: str
    latency_ms: float
    quality: float
    bytes: int
    within_budget: bool


def dominates(a: Scored, b: Scored) -> bool:
    at_least = a.latency_ms <= b.latency_ms and a.quality >= b.quality and a.bytes <= b.bytes
    better = a.latency_ms < b.latency_ms or a.quality > b.quality or a.bytes < b.bytes
    return at_least and better


def front(points: list[Scored]) -> set[str]:
    """The names of the non-dominated points."""
    return {p.name for p in points if not any(dominates(q, p) for q in points if q is not p)}


def choose(points: list[Scored], evidence: Evidence) -> Scored | None:
    """The fastest point within the budget; among those within the evidence's noise margin of it, the
    smallest (sizes within SIZE_MARGIN are one size: then the fastest). None when no point is within."""
    eligible = [p for p in points if p.within_budget]
    if not eligible:
        return None
    fastest = min(p.latency_ms for p in eligible)
    close = [p for p in eligible if p.latency_ms <= fastest * evidence.margin]
    smallest = min(p.bytes for p in close)
    return min((p for p in close if p.bytes <= smallest * SIZE_MARGIN), key=lambda p: (p.latency_ms, p.bytes))


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
