"""Rewrites of a Keras model before int8 quantization.

The exact passes (float outputs unchanged, checked on the calibration samples) run in the order of
EXACT_PASSES; each edits a WorkingModel in place and returns a note per change. Bias correction comes
last: it deliberately moves the float outputs by the expected int8 weight rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.manifest_schema import RewriteFacts
from edgekiln.compiler.rewrite import bias_correction, bn_act, equalize, fold_bn, shift_forward
from edgekiln.compiler.rewrite.work import PredictInputs, WorkingModel

if TYPE_CHECKING:
    from edgekiln.compiler.keras_types import KerasModel

EXACT_PASSES = {
    "fold_bn": fold_bn.run,                   # conv -> BN
    "bn_through_activation": bn_act.run,      # conv -> ReLU/PReLU (-> MaxPool/Dropout) -> BN: the scale
    "shift_forward": shift_forward.run,       # BN left as a shift -> MaxPool/Dropout/Flatten -> conv/dense bias
    "equalize": equalize.run,                 # conv -> ... -> conv with channel ranges orders of magnitude apart
}
EXACT_TOLERANCE = 1e-5  # max |rewritten - source| relative to max |source| over the check samples
CHECK_SAMPLES = 32      # samples the exactness check and bias correction's channel means use


@dataclass(frozen=True)
class Rewritten:
    """The rewritten model, what changed, and how far its float outputs moved before bias correction."""

    model: KerasModel
    notes: tuple[str, ...]
    exact_max_diff: float
    dropped: str = ""
    not_applied: tuple[str, ...] = ()  # what a pass found but left, and why

    @property
    def changed(self) -> bool:
        return bool(self.notes)

    def to_dict(self) -> RewriteFacts:
        facts = RewriteFacts(applied=list(self.notes), not_applied=list(self.not_applied),
                             exact_passes_max_rel_diff=float(f"{self.exact_max_diff:.3g}"))
        if self.dropped:
            facts["dropped"] = self.dropped
        return facts


def apply(model: KerasModel, inputs: PredictInputs, correct_bias: bool = True) -> Rewritten:
    """Run every exact pass, check the float outputs did not move, then bias correction (optional)."""
    work = WorkingModel(model)
    if work.shared:  # a layer called twice has one set of weights for two roles
        return Rewritten(model, (), 0.0, not_applied=("all: a layer is called more than once in the model",))
    notes, skipped = [], []
    for name, run in EXACT_PASSES.items():
        before = len(work.skipped)
        notes += [f"{name}: {note}" for note in run(work)]
        skipped += [f"{name}: {why}" for why in work.skipped[before:]]
    rewritten = work.to_keras() if notes else model
    inputs = _head(inputs, CHECK_SAMPLES)
    diff = relative_diff(model, rewritten, inputs)
    if not diff <= EXACT_TOLERANCE:  # a bug in a pass must not ship (NaN included): keep the source model
        return Rewritten(model, (), diff, f"rewrites dropped: they moved the float outputs by {diff:.2g}",
                         tuple(skipped))
    if correct_bias:
        corrected, more = bias_correction.run(rewritten, inputs)
        if all_finite(corrected):  # else the exact rewrites stand alone
            rewritten, notes = corrected, notes + [f"bias_correction: {note}" for note in more]
    return Rewritten(rewritten, tuple(notes), diff, not_applied=tuple(skipped))


def all_finite(model: KerasModel) -> bool:
    """No inf or NaN in any weight: a non-finite weight gives non-finite activation ranges."""
    return all(bool(np.all(np.isfinite(w))) for w in model.get_weights())


def relative_diff(a: KerasModel, b: KerasModel, inputs: PredictInputs) -> float:
    """max |a(x) - b(x)| / max |a(x)| over all outputs."""
    ya, yb = a.predict(inputs, verbose=0, batch_size=64), b.predict(inputs, verbose=0, batch_size=64)
    ya, yb = (ya, yb) if isinstance(ya, list) else ([ya], [yb])
    scale = max(float(np.max(np.abs(y))) for y in ya) or 1.0
    if not all(np.all(np.isfinite(y)) for y in yb):
        return float("inf")  # the rewritten model overflowed: never "exact", whatever NaN compares as
    return max(float(np.max(np.abs(p - q))) for p, q in zip(ya, yb, strict=True)) / scale


def model_inputs(model: KerasModel, feed: dict[str, np.ndarray]) -> PredictInputs:
    """What model.predict takes for signature-named arrays: the array itself for one input, else a list
    in model.inputs order (the serving signature names its inputs after the Input layers)."""
    if len(model.inputs) == 1:
        return next(iter(feed.values()))
    names = [t._keras_history.operation.name for t in model.inputs]  # noqa: SLF001
    return [feed[name] for name in names]


def _head(inputs: PredictInputs, count: int) -> PredictInputs:
    return [x[:count] for x in inputs] if isinstance(inputs, list) else inputs[:count]
