"""Parameters and multiply-accumulates of a channel graph under a plan, and filters per layer.

Counted like compiler/analyze.py counts a compiled model: conv, dense and depthwise MACs at batch 1;
elementwise ops are left out. Parameters are those of the ops that carry per-channel weights
(producers, BatchNormalization, depthwise), so the count before and after a plan is exact for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.groups import COUPLING, Analysis, Role


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def cost(analysis: Analysis, plan: Plan | None = None) -> Cost:
    """Parameters and MACs of the graph with `plan` applied (None: as it is)."""
    plan = plan or {}
    params = macs = 0
    for node in analysis.graph.nodes:
        role = COUPLING.get(node.op)
        out = int(analysis.mask(node.name, plan).sum())
        if role is Role.PRODUCER and len(node.inputs) == 1:
            fan_in = int(analysis.mask(node.inputs[0], plan).sum())
            params += fan_in * out * node.kernel + (out if node.bias else 0)
            macs += node.spatial * fan_in * out * node.kernel
        elif role is Role.PASS:
            params += out * node.per_channel_params
            macs += node.spatial * out * node.kernel
    return Cost(params, macs)


def per_layer(analysis: Analysis, plan: Plan) -> list[dict]:
    """Filters before and after, for every producer (what the manifest's per_layer lists)."""
    rows = []
    for group in analysis.groups:
        for name in group.producers:
            kept = int(analysis.mask(name, plan).sum())
            rows.append({"layer": name, "filters_before": group.channels, "filters_after": kept})
    order = {n.name: k for k, n in enumerate(analysis.graph.nodes)}
    return sorted(rows, key=lambda r: order[r["layer"]])
