"""A student's widths: every prunable channel group of the teacher scaled by one factor, and the `auto` search.

Width scaling is uniform pruning seen from the other side: a group of c channels keeps
kept(c, w) = max(1, c - round(c (1 - w))) of them (the count `--prune 1-w` removes, so a student at width w
and the teacher pruned at ratio 1 - w have the same shapes), and the channels kept are the teacher's most
important ones (prune/importance.py), which is where a student initialised from the teacher starts.
Groups the pruning analysis blocks (the classes of the output layer, channels an Add ties to the input, ...)
keep their width: the student has the teacher's layers in the teacher's order, only narrower.

A conv between two scaled groups costs w^2 of its MACs, the first conv (fixed input channels) and the output
layer (fixed classes) w: a student at width 0.5 has a little over a quarter of the teacher's MACs.

`auto` bisects a ladder of widths (AUTO_WIDTHS, narrowest first) for the narrowest student whose accuracy
drop, after distillation, is within the budget, as the pruning search bisects its plans: the invariant is that
the widest untried width above `hi` misses no budget, and each probe halves the interval between the
narrowest known to pass and the widest known to fail. It assumes rough monotonicity (a wider student is no
worse), which distillation makes likely, not certain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgekiln.compiler.prune.channels import Plan, Ratios, Scores
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.importance import plan_for

AUTO_WIDTHS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875)  # narrowest first; 1.0 (the teacher) is the fallback
MAX_PROBES = 4  # distilled students the auto search trains (log2 of the ladder, rounded up, plus one)


def kept(channels: int, width: float) -> int:
    """Channels a group of `channels` keeps at `width` (0 < width <= 1): the count uniform pruning at
    1 - width keeps, never none."""
    if not 0 < width <= 1:
        raise ValueError(f"a width lies in (0, 1], got {width}")
    return max(1, channels - int(round(channels * (1 - width))))


def ratios(analysis: Analysis, width: float) -> Ratios:
    """The same removal ratio for every prunable group: what makes each keep `kept(c, width)`."""
    kept(1, width)  # checks the width
    return {g.id: 1 - width for g in analysis.prunable}


def plan(analysis: Analysis, scores: Scores, width: float) -> Plan:
    """The keep masks of a student at `width`: each prunable group's most important channels."""
    return plan_for(analysis, scores, ratios(analysis, width))


@dataclass(frozen=True)
class Probe:
    """One student the auto search trained: its width, whether its drop is within the budget, and the drop."""

    width: float
    within: bool
    drop: float


def bisect(widths: tuple[float, ...], within: Callable[[float], tuple[bool, float]],
           max_probes: int = MAX_PROBES) -> tuple[float | None, list[Probe]]:
    """The narrowest width of the ladder (narrowest first) within budget, by bisection; None when none probed
    was. within(width) -> (within the budget?, the drop). Stops after max_probes students."""
    probes: list[Probe] = []
    lo, hi = -1, len(widths)  # invariant: widths[hi] passed (len: none has yet), widths[lo] failed (-1: none yet)
    while hi - lo > 1 and len(probes) < max_probes:
        mid = (lo + hi) // 2
        ok, drop = within(widths[mid])
        probes.append(Probe(widths[mid], ok, drop))
        lo, hi = (lo, mid) if ok else (mid, hi)
    return (widths[hi] if hi < len(widths) else None), probes
