"""From executed-instruction counts to milliseconds on a board, and whether that figure may rank candidates.

    ms = stall * sum(cycles[class] * count[class]) / clock / (1 + (threads - 1) * thread_efficiency)

The per-class cycles, the clock and the fitted `stall` are the target file's [emulated] table
(bench/witness_estimate.py writes it, with the leave-one-out errors it measured on the board's published
anchors). Pure arithmetic on the counts: no emulator here, so the rule's tests need none.

The emulated estimate outranks the cost model (choose.evidence_for: device > emulated > estimate > host) only
when `standing` says it earned it: both its cross-validated errors, over the same anchors, are smaller than
the cost model's. Read from the target file, never a constant: re-running the bench can change the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgekiln.targets import Target

LABEL = "executed instructions on an emulated {core}; not a timing"


@dataclass(frozen=True)
class Standing:
    """Whether the target's emulated estimate ranks candidates (`decides`), and why, in one sentence;
    ratio_error: its cross-validated int8 / float32 ratio error (the margin it ranks with), None: not measured."""

    decides: bool
    why: str
    ratio_error: float | None = None


def emulated_ms(target: Target, by_class: Mapping[str, int], threads: int) -> float | None:
    """The target's milliseconds for one invoke's counted instructions (None: the target has no [emulated])."""
    costs = target.emulated
    if costs is None:
        return None
    efficiency = target.estimate.thread_efficiency if target.estimate is not None else 1.0
    cycles = sum(costs.cycles[name] * count for name, count in by_class.items())
    return costs.stall * cycles / (costs.clock_ghz * 1e6) / (1 + (threads - 1) * efficiency)


def standing(target: Target) -> Standing:
    """The emulated estimate decides only where both its leave-one-out errors (mean |error| over the anchors,
    int8 / float32 ratio) are below the cost model's, measured over the same published anchors."""
    costs, model = target.emulated, target.estimate
    if costs is None:
        return Standing(False, f"{target.name} has no per-class cycle costs ([emulated] in its target file)")
    if costs.mean_abs_error is None or costs.ratio_error is None:
        return Standing(False, f"{target.name}'s emulated estimate has no cross-validated error ({costs.stall_basis})")
    cost_abs = model.mean_abs_loo_error if model is not None else None
    cost_ratio = model.ratio_error if model is not None else None
    if cost_abs is None or cost_ratio is None:
        return Standing(True, f"{target.name}'s cost model has no cross-validated error; the emulated one has",
                        costs.ratio_error)
    figures = (f"mean |leave-one-out error| {costs.mean_abs_error:.1%} vs the cost model's {cost_abs:.1%}, "
               f"int8 / float32 ratio error {costs.ratio_error:.1%} vs {cost_ratio:.1%}")
    if costs.mean_abs_error < cost_abs and costs.ratio_error < cost_ratio:
        return Standing(True, f"the emulated estimate decides: {figures}", costs.ratio_error)
    return Standing(False, f"a cross-check, not a decider: {figures}", costs.ratio_error)


def label(target: Target) -> str:
    """What the counts are, in the words the manifest, the summary and the report use."""
    core = target.emulated.core if target.emulated is not None else target.qemu_cpu
    return LABEL.format(core=core)
