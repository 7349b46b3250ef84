"""Per-group sensitivity scans and the choice of per-group ratios under an accuracy budget.

The scan follows Li et al. 2017 (Fig. 2): prune each group alone at a range of ratios, without any
recovery, and measure the score (accuracy with labels, top-1 agreement with the original model
without). A threshold t on that drop gives one candidate plan: every group takes the largest ratio
whose drop (and every smaller ratio's drop) stays within t, so sensitive groups are skipped first,
as Li et al. skipped them by hand. Candidates are ordered by MACs removed; a binary search over
them, each probe pruned AND recovered, finds the most aggressive one whose drop after recovery
meets the budget, within a bounded number of probes (the recovery is the expensive part).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from .channels import Plan
from .cost import cost
from .groups import Analysis
from .importance import plan_for

SCAN_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # prune-scan's default
AUTO_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)                        # --prune auto: half the evaluations

Evaluate = Callable[[Plan], float]  # plan -> score in percent (accuracy or agreement), no recovery


@dataclass(frozen=True)
class ScanRow:
    """One group's scan: the score drop (points) and MACs removed at each ratio."""

    group: int
    label: str
    channels: int
    drops: tuple[float, ...]
    macs_removed: tuple[int, ...]


@dataclass(frozen=True)
class Scan:
    """A whole sensitivity scan; `metric` is 'accuracy' (labels) or 'agreement' (with the original)."""

    metric: str
    reference: float
    samples: int
    ratios: tuple[float, ...]
    macs: int
    rows: tuple[ScanRow, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def scan(analysis: Analysis, scores: dict, evaluate: Evaluate, ratios: tuple[float, ...] = AUTO_RATIOS,
         metric: str = "accuracy", samples: int = 0) -> Scan:
    """Prune every prunable group alone at every ratio and record the score drop."""
    reference = evaluate({})
    base = cost(analysis).macs
    rows = []
    for group in analysis.prunable:
        drops, removed = [], []
        for ratio in ratios:
            plan = plan_for(analysis, scores, {group.id: ratio})
            drops.append(round(reference - evaluate(plan), 3))
            removed.append(base - cost(analysis, plan).macs)
        rows.append(ScanRow(group.id, group.label, group.channels, tuple(drops), tuple(removed)))
    return Scan(metric, round(reference, 3), samples, tuple(ratios), base, tuple(rows))


def ratios_within(result: Scan, threshold: float) -> dict[int, float]:
    """Per group, the largest scanned ratio whose drop, and every smaller ratio's, is <= threshold."""
    chosen = {}
    for row in result.rows:
        best = 0.0
        for ratio, drop in zip(result.ratios, row.drops, strict=True):
            if drop > threshold:
                break
            best = ratio
        if best:
            chosen[row.group] = best
    return chosen


def candidates(result: Scan, analysis: Analysis, scores: dict) -> list[dict[int, float]]:
    """Distinct threshold plans, ordered by MACs removed (fewest first)."""
    thresholds = sorted({0.0} | {d for row in result.rows for d in row.drops if d >= 0})
    seen, found = set(), []
    for t in thresholds:
        ratios = ratios_within(result, t)
        key = tuple(sorted(ratios.items()))
        if ratios and key not in seen:
            seen.add(key)
            found.append(ratios)
    return sorted(found, key=lambda r: cost(analysis, plan_for(analysis, scores, r)).macs, reverse=True)


@dataclass(frozen=True)
class Trial:
    """One probe of the search: the ratios tried and the drop measured after recovery."""

    ratios: dict[int, float]
    macs: int
    drop: float
    within_budget: bool


def search(options: list[dict[int, float]], trial: Callable[[dict[int, float]], float], budget: float,
           analysis: Analysis, scores: dict, max_trials: int = 4) -> tuple[dict[int, float], list[Trial]]:
    """The most aggressive option (by MACs) whose recovered drop <= budget; assumes rough monotonicity.

    Returns ({} if none qualified, the trials made). Options must be ordered fewest MACs removed first.
    """
    lo, hi, trials = -1, len(options), []  # invariant: lo is within budget (-1: no pruning), hi is not
    while hi - lo > 1 and len(trials) < max_trials:
        mid = (lo + hi) // 2
        drop = trial(options[mid])
        ok = drop <= budget
        macs = cost(analysis, plan_for(analysis, scores, options[mid])).macs
        trials.append(Trial(options[mid], macs, round(drop, 3), ok))
        lo, hi = (mid, hi) if ok else (lo, mid)
    return (options[lo] if lo >= 0 else {}), trials
