"""Importance of each channel of a group, and the plan that removes the least important ones.

l1: sum of |w| over a filter (Li et al. 2017); l2: its Euclidean norm; bn: |gamma| of the
BatchNormalization on the channel (Liu et al. 2017, "network slimming"). A group's score sums over
its coupled members, each member first divided by its mean score: a residual group couples a stem
conv (fan-in 9) with a block conv (fan-in 288) whose raw L1 norms differ by ~30x, and a raw sum
would let the bigger fan-in decide alone.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.prune.channels import Node, Plan, Ratios, Scores
from edgekiln.compiler.prune.groups import Analysis, Group
from edgekiln.compiler.recipe import PruneCriterion


def group_scores(analysis: Analysis, criterion: PruneCriterion | str = PruneCriterion.l1) -> Scores:
    """Per prunable group: one importance score per channel (higher = keep)."""
    criterion = PruneCriterion(str(criterion))
    return {g.id: _score(analysis, g, criterion) for g in analysis.prunable}


def _score(analysis: Analysis, group: Group, criterion: PruneCriterion) -> np.ndarray:
    members = _bn_members(analysis, group) if criterion is PruneCriterion.bn else []
    if not members:  # l1/l2, or bn on a group without BatchNormalization: fall back to filter norms
        members = [_filter_norm(analysis.graph.node(p), criterion) for p in group.producers]
    total = np.zeros(group.channels)
    for scores in members:
        total += scores / max(float(np.mean(scores)), 1e-12)
    return total


def _filter_norm(node: Node, criterion: PruneCriterion) -> np.ndarray:
    if node.weight is None:
        raise ValueError(f"producer {node.name} carries no weight for importance")
    w = np.abs(node.weight.reshape(node.channels, -1).astype(np.float64))
    return np.sqrt((w * w).sum(axis=1)) if criterion is PruneCriterion.l2 else w.sum(axis=1)


def _bn_members(analysis: Analysis, group: Group) -> list[np.ndarray]:
    """|gamma| of every BatchNormalization whose channels are exactly this group's, in group order."""
    found = []
    for node in analysis.graph.nodes:
        cmap = analysis.maps[node.name]
        if (node.scale is not None and len(cmap.group) == group.channels and np.all(cmap.group == group.id)
                and np.array_equal(cmap.index, np.arange(group.channels))):
            found.append(np.abs(node.scale.astype(np.float64)))
    return found


def removed_count(channels: int, ratio: float, multiple: int = 1) -> int:
    """Channels a ratio removes: rounded, never all of them; with multiple > 1, the count KEPT is
    rounded to the nearest multiple (at least one) when the group has more than `multiple` channels."""
    removed = min(channels - 1, max(0, int(round(channels * ratio))))
    if multiple > 1 and channels > multiple:
        kept = max(multiple, int(round((channels - removed) / multiple)) * multiple)
        removed = max(0, channels - min(kept, channels))
    return removed


def plan_for(analysis: Analysis, scores: Scores, ratios: Ratios, multiple: int = 1) -> Plan:
    """Keep masks that drop each group's lowest-scoring channels at its ratio (stable on ties)."""
    plan: Plan = {}
    for gid, ratio in ratios.items():
        if gid not in scores:
            raise ValueError(f"group {gid} is not prunable")
        n = removed_count(len(scores[gid]), ratio, multiple) if ratio > 0 else 0
        if n:
            keep = np.ones(len(scores[gid]), dtype=bool)
            keep[np.argsort(scores[gid], kind="stable")[:n]] = False
            plan[gid] = keep
    return plan


def uniform(analysis: Analysis, ratio: float) -> Ratios:
    """The same ratio for every prunable group (`--prune R`)."""
    return {g.id: ratio for g in analysis.prunable}
