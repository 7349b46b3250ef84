"""Per-layer mixed precision (int8+mixed), the rule as pure logic over tables: which Concat keeps its inputs
apart, which layers to promote to 16-bit activations, and when to stop (no converter here; the ONNX builder
that measures each step is search/onnx_mixed.py).

1. Structure first. A Concat whose inputs' calibrated ranges differ by more than CONCAT_SPREAD (a detector's
   output joining box coordinates in pixels with scores in [0, 1]) gets one int8 scale for both: a step of
   320 / 255 = 1.25 erases every score. Its inputs keep their own scales (their producers' Q/DQ) and its output
   is quantized to int16 (a step of 320 / 65535), so that whatever reads it (the graph's output, a decoder) still
   sees the scores; a Concat only copies, so the wider tensor costs bytes, never a wider kernel. (Keeping the
   Concat in float alone would not do: the next quantized node quantizes its input again, with the same scale.)
2. Then layers. Each layer the int8 diagnosis blames (and each producing a graph output) is promoted alone, and
   the SQNR that gains is measured (a layer's own error is not always what promoting it removes: an outlier
   channel inflates the scale of a tensor whose own SQNR looks fine, and it is the next layer that shows it).
   The layers that gained are ranked by that gain, and the best 1, 2, 4, 8 of them (STEPS) are promoted
   together in turn until the criterion holds, each step measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from edgekiln.compiler.manifest_schema import PromotedLayer

STEPS = (1, 2, 4, 8)  # how many of the most helpful layers to promote together, tried in turn
PROBES = 6            # layers each promoted alone to measure what it gains
CONCAT_SPREAD = 16.0  # a Concat's inputs whose largest magnitudes differ by more share no useful int8 scale

Q = TypeVar("Q")


class Node(Protocol):
    """What the Concat rule reads of a graph node (onnx.NodeProto has these)."""

    @property
    def name(self) -> str: ...
    @property
    def op_type(self) -> str: ...
    @property
    def input(self) -> Sequence[str]: ...
    @property
    def output(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Apart:
    """A Concat whose inputs keep their own scales, its outputs widened to int16, and why."""

    node: str
    op: str
    reason: str
    outputs: tuple[str, ...]

    def to_dict(self) -> dict[str, str]:
        return {"node": self.node, "op": self.op, "reason": self.reason}


@dataclass(frozen=True)
class Probe:
    """One layer promoted alone: what the diagnosis said of it, and the SQNR it gained (dB, measured)."""

    layer: str
    op: str
    reason: str
    gain_db: float

    def to_dict(self) -> PromotedLayer:
        return {"layer": self.layer, "op": self.op, "reason": self.reason, "gain_db": round(float(self.gain_db), 2)}


def concats_apart(nodes: Iterable[Node], ranges: dict[str, tuple[float, float]],
                  spread: float = CONCAT_SPREAD) -> list[Apart]:
    """The Concat nodes whose inputs' calibrated (min, max) magnitudes differ by more than `spread`."""
    apart = []
    for node in nodes:
        if node.op_type != "Concat":
            continue
        sizes = [_magnitude(ranges[i]) for i in node.input if i in ranges]
        sizes = [s for s in sizes if s > 0]
        if len(sizes) < 2 or max(sizes) <= spread * min(sizes):
            continue
        ratio = max(sizes) / min(sizes)
        why = (f"joins inputs of magnitude {min(sizes):.3g} and {max(sizes):.3g} ({ratio:.0f}x > {spread:g}x): one "
               "int8 scale erases the small one")
        apart.append(Apart(node.name, node.op_type, why, tuple(node.output)))
    return apart


def ranked(probes: Iterable[Probe]) -> list[Probe]:
    """The probed layers that gained, most first (ties keep the diagnosis's order)."""
    return sorted((p for p in probes if p.gain_db > 0), key=lambda p: -p.gain_db)


def stepped(helpful: Sequence[Probe], measure: Callable[[tuple[str, ...]], Q],
            meets: Callable[[Q], bool]) -> list[tuple[tuple[str, ...], Q]]:
    """Promote the best 1, 2, 4, 8 layers in turn, each set measured, until one meets the criterion or every
    helpful layer is promoted: the steps tried, the last is the candidate."""
    steps: list[tuple[tuple[str, ...], Q]] = []
    for step in STEPS:
        promoted = tuple(p.layer for p in helpful[:step])
        quality = measure(promoted)
        steps.append((promoted, quality))
        if meets(quality) or step >= len(helpful):
            break
    return steps


def _magnitude(bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(max(abs(lo), abs(hi))) if np.isfinite(lo) and np.isfinite(hi) else float("inf")
