"""Per-group sensitivity scans and the choice of per-group ratios under an accuracy budget.

The scan follows Li et al. 2017 (Fig. 2): prune each group alone at a range of ratios, without any
recovery, and measure the score (accuracy with labels, top-1 agreement with the original model
without). The scan ranks groups; it does not predict the drop after recovery, which is far smaller
(a group that loses 70 points alone often recovers fully). So candidates form one family with a
single knob: group g removes alpha * w_g of its channels, where w_g runs from 1 (least sensitive
group) to 0.5 (most sensitive), and a group whose drop at the smallest ratio exceeds SKIP_DROP is
skipped, as Li et al. skipped sensitive layers. MACs removed grow with alpha, so a binary search
over alpha, each probe pruned AND recovered, finds the most aggressive candidate whose drop after
recovery meets the budget within a bounded number of probes (recovery is the expensive part).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

import numpy as np

from edgekiln.compiler import manifest_schema
from edgekiln.compiler.prune.channels import Plan, Ratios, Scores
from edgekiln.compiler.prune.cost import cost
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.importance import plan_for

SCAN_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # prune-scan's default
AUTO_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)                        # --prune auto: half the evaluations
ALPHAS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the auto family's knob (a global scale)
MIN_GAIN = 0.03  # a plan removing under 3 % of the MACs is not worth its accuracy risk: not tried
SKIP_DROP = 20.0  # points lost when only the smallest ratio of a group is removed: too sensitive to touch

Evaluate = Callable[[Plan], float]  # plan -> score in percent (accuracy or agreement), no recovery


@dataclass(frozen=True)
class ScanRow:
    """One group's scan: the score drop (points) and MACs removed at each ratio."""

    group: int
    label: str
    channels: int
    drops: tuple[float, ...]
    macs_removed: tuple[int, ...]


class ScanRowFacts(TypedDict):
    """A ScanRow as the manifest and prune-scan's JSON record it."""

    group: int
    label: str
    channels: int
    drops: tuple[float, ...]
    macs_removed: tuple[int, ...]


class ScanFacts(TypedDict):
    """A Scan as the manifest and prune-scan's JSON record it (every field, rows as ScanRowFacts)."""

    metric: str
    reference: float
    samples: int
    ratios: tuple[float, ...]
    macs: int
    rows: tuple[ScanRowFacts, ...]


@dataclass(frozen=True)
class Scan:
    """A whole sensitivity scan; `metric` is 'accuracy' (labels) or 'agreement' (with the original)."""

    metric: str
    reference: float
    samples: int
    ratios: tuple[float, ...]
    macs: int
    rows: tuple[ScanRow, ...]

    def to_dict(self) -> ScanFacts:
        rows = tuple(ScanRowFacts(group=r.group, label=r.label, channels=r.channels, drops=r.drops,
                                  macs_removed=r.macs_removed) for r in self.rows)
        return ScanFacts(metric=self.metric, reference=self.reference, samples=self.samples, ratios=self.ratios,
                         macs=self.macs, rows=rows)


def scan(analysis: Analysis, scores: Scores, evaluate: Evaluate, ratios: tuple[float, ...] = AUTO_RATIOS,
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


def weights(result: Scan) -> Ratios:
    """Per group, its share of the common ratio (its ratio at alpha 1): 1 for the least sensitive, 0.5 for the
    most, 0 = skipped.

    Sensitivity is the mean drop over the scanned ratios (the area under Li et al.'s curve).
    """
    area = {row.group: float(np.mean(np.maximum(row.drops, 0.0))) for row in result.rows}
    lo, hi = min(area.values(), default=0.0), max(area.values(), default=0.0)
    return {row.group: 0.0 if row.drops[0] > SKIP_DROP else
            1.0 - 0.5 * ((area[row.group] - lo) / (hi - lo) if hi > lo else 0.0) for row in result.rows}


def candidates(result: Scan, analysis: Analysis, scores: Scores, multiple: int = 1) -> list[Ratios]:
    """Ratios per group for alpha in ALPHAS, distinct as plans, fewest MACs removed first."""
    share = weights(result)
    seen, found = set(), []
    for alpha in ALPHAS:
        ratios = {g: round(alpha * w, 4) for g, w in share.items() if w > 0}
        plan = plan_for(analysis, scores, ratios, multiple)
        key = tuple(sorted((g, int(k.sum())) for g, k in plan.items()))
        if plan and key not in seen:
            seen.add(key)
            found.append(ratios)
    return sorted(found, key=lambda r: cost(analysis, plan_for(analysis, scores, r, multiple)).macs, reverse=True)


@dataclass(frozen=True)
class Trial:
    """One probe of the search: the ratios tried, the drop measured after recovery, whether the evidence puts
    it within budget, and that evidence (the paired drop, the recovery's before / after)."""

    ratios: Ratios
    macs: int
    drop: float
    within_budget: bool
    evidence: Mapping[str, object] = field(default_factory=dict)


class TrialResult(Protocol):
    """A probe's drop with its own budget test (prune/paired.PairedDrop)."""

    @property
    def drop(self) -> float: ...

    def within(self, budget: float) -> bool: ...

    def to_dict(self) -> manifest_schema.PairedDrop: ...


def worth_trying(options: list[Ratios], analysis: Analysis, scores: Scores, multiple: int = 1,
                 min_gain: float = MIN_GAIN) -> list[Ratios]:
    """The options that remove at least `min_gain` of the MACs (the search's floor)."""
    base = cost(analysis).macs
    removed = [base - cost(analysis, plan_for(analysis, scores, o, multiple)).macs for o in options]
    return [o for o, r in zip(options, removed, strict=True) if r >= min_gain * base]


def search(options: list[Ratios], trial: Callable[[Ratios], float | TrialResult], budget: float,
           analysis: Analysis, scores: Scores, max_trials: int = 8, multiple: int = 1,
           deadline: float | None = None, progress: Callable[[str], None] = lambda line: None,
           ) -> tuple[Ratios, list[Trial], str]:
    """The most aggressive option (by MACs) within budget, by bisection over the global scale; assumes rough
    monotonicity. A plan that misses halves the scale toward the smallest option worth trying.

    Returns ({} if none qualified, the trials, why the search stopped). Options: fewest MACs removed first.
    trial: the drop after recovery, as a number (within budget when <= budget) or TrialResult (its own test).
    deadline: time.monotonic() after which no new probe starts (--prune-time).
    """
    trials: list[Trial] = []
    lo, hi = -1, len(options)  # invariant: lo is within budget (-1: no pruning), hi is not
    stopped = "searched every scale between the best plan within budget and the first beyond it"
    while hi - lo > 1:
        if len(trials) >= max_trials:
            stopped = f"stopped after {max_trials} probes"
            break
        if deadline is not None and time.monotonic() > deadline:
            stopped = f"stopped by the time cap after {len(trials)} probes"
            break
        mid = (lo + hi) // 2
        measured = trial(options[mid])
        evidence: Mapping[str, object]
        if isinstance(measured, int | float):
            drop, ok, evidence = round(float(measured), 3), round(float(measured), 3) <= budget, {}
        else:
            drop, ok, evidence = round(measured.drop, 3), measured.within(budget), measured.to_dict()
        macs = cost(analysis, plan_for(analysis, scores, options[mid], multiple)).macs
        trials.append(Trial(options[mid], macs, drop, ok, evidence))
        progress(f"Pruning: probe {len(trials)}: {macs:,} MACs, drop {drop:+.2f} points "
                 f"({'within' if ok else 'over'} the budget of {budget:g})")
        lo, hi = (mid, hi) if ok else (lo, mid)
    if not options:
        stopped = f"no plan removes {MIN_GAIN:.0%} of the MACs or more"
    return (options[lo] if lo >= 0 else {}), trials, stopped
