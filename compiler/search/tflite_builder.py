"""Every TFLite candidate of a build, and the diagnosis of plain int8.

float32 / float16 / dynamic come straight from the converter. The int8 family shares calibrations:
  int8           the source model, min/max ranges: what the converter gives by default (and what is diagnosed);
  int8+rewrites  the rewritten Keras model (exact rewrites + bias correction), with the calibration method
                 (min/max, percentile, entropy) that is most faithful on the held-back samples;
  int8+adaround  int8+rewrites without bias correction, its integer weights' rounding learned layer by layer
                 (AdaRound): same scales, zero points and graph; built only when plain int8 misses the criterion
                 (variants.adaround_not_needed),
                 guarded against int8+rewrites (never less faithful) and not a step of the fallbacks' chain;
  int8+fallback  int8+rewrites with the int8 ops that leave XNNPACK kept in float;
  int8+fallback+layers  that, and the layers with the worst error kept in float too, more of them until the
                 accuracy criterion holds (built only when int8+fallback does not meet it).
  16x8           the source model, min/max ranges, int16 activations and int8 weights (TFLite's 16x8 mode: one
                 converter run, calibrating again); built only when plain int8 misses the criterion on the
                 tuning samples (variants.sixteen_not_needed): XNNPACK runs none of its ops.
  int8+qat       plain int8 of the model after quantization-aware fine-tuning on --train (--qat); built only when
                 plain int8 misses the criterion, like 16x8 (search/qat_builder.py).
A refinement less faithful on the tuning samples than the candidate it refines is dropped (search/faithful.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler import Progress, rewrite
from edgekiln.compiler.analyze import coverage
from edgekiln.compiler.data import model_feed
from edgekiln.compiler.diagnose import tflite_diagnosis as diagnose
from edgekiln.compiler.emit import adaround, calibrate, tflite_adaround, tflite_convert, tflite_int8
from edgekiln.compiler.errors import first_line
from edgekiln.compiler.evaluate.criterion import Criterion, rank
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.manifest_schema import CandidateDetails, Diagnosis
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import qat_builder
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext, Builds
from edgekiln.compiler.search.faithful import never_less_faithful
from edgekiln.compiler.search.plain_gate import plain_int8_misses, verdict
from edgekiln.compiler.search.variants import (
    Variant,
    adaround_not_needed,
    as_conversion_error,
    failure_note,
    is_16x8,
    sixteen_not_needed,
)
from edgekiln.compiler.tf_env import quiet_fds

if TYPE_CHECKING:
    from edgekiln.compiler.graph.keras_graph import KerasGraph

STATS_SAMPLES = 64                 # calibration samples whose activations feed percentile / entropy ranges
FALLBACK_STEPS = (1, 2, 4, 8)      # how many of the worst layers to keep in float, tried in turn
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")


@dataclass
class Int8Base:
    """A calibrated float model ready to quantize, with what was done to get it."""

    calibrated: bytes
    notes: list[str] = field(default_factory=list)
    details: CandidateDetails = field(default_factory=CandidateDetails)
    quality: Quality | None = None  # on the tuning samples
    rewrites: bool = True           # the Keras rewrites were tried (SavedModel sources have none)


def build(ctx: BuildContext) -> Builds:
    """Keras / SavedModel -> TFLite through TensorFlow's converter: every planned candidate, in order.

    If int8 conversion fails, the int8 candidates are not built (the note says why) unless int8 is all
    that was asked for (`--quantize int8`): then the error stops the build.
    """
    built = {c.name: Candidate(c, tflite_convert.convert(ctx.graph.saved_model_dir, c.quantize, None, ctx.int8_io))
             for c in ctx.candidates if c.quantize is not Quantize.int8}
    int8s = [c for c in ctx.candidates if c.quantize is Quantize.int8 and not is_16x8(c) and not c.qat]
    diagnosis, missing = None, ""
    if int8s and ctx.calib is not None:
        try:
            family, diagnosis = _int8_family(ctx.graph, int8s, ctx.calib, ctx.judge, ctx.criterion, ctx.workdir,
                                             ctx.int8_io, ctx.calibration, ctx.progress, not ctx.fold)
            built.update(family)
        except Exception as exc:  # noqa: BLE001  (int8 that fails, however it fails, drops out with its reason)
            if len(built) == 1:  # only the float32 baseline besides int8: int8 was required
                raise as_conversion_error(exc) from exc
            missing = failure_note(exc)
    for c in (c for c in ctx.candidates if is_16x8(c) and ctx.calib is not None):
        # 16x8 calibrates the same activations as int8: a range that overflowed there overflows here too
        built[c.name] = Candidate(c, None, (missing,)) if "non-finite range" in missing else \
            sixteen_by_eight(c, ctx, built.get("int8"))
    for c in (c for c in ctx.candidates if c.qat and ctx.calib is not None):
        built[c.name] = qat_builder.candidate(c, ctx, built.get("int8"))
    ordered = [built.get(c.name) or Candidate(c, None, (missing,)) for c in ctx.candidates]
    return Builds(tuple(with_coverage(b) for b in ordered), diagnosis)


SIXTEEN_NOTES = ("min/max calibration", "int16 activations, int8 weights: LiteRT's built-in 16x8 kernels "
                 "(XNNPACK runs no 16x8 op)")


def sixteen_by_eight(candidate: Variant, ctx: BuildContext, plain: Candidate | None) -> Candidate:
    """The 16x8 candidate, or not built: where plain int8 meets the criterion on the tuning samples, or the
    conversion fails (its reason)."""
    gate = plain_int8_misses(ctx, plain, "tflite")
    why = sixteen_not_needed(gate.meets, gate.figures)
    if why:
        return Candidate(candidate, None, (why,))
    try:
        model = tflite_convert.convert(ctx.graph.saved_model_dir, Quantize.int8, ctx.calib, ctx.int8_io, "int16")
    except Exception as exc:  # noqa: BLE001  (a 16x8 conversion that fails drops out with its reason)
        return Candidate(candidate, None, (failure_note(exc),))
    return Candidate(candidate, model, SIXTEEN_NOTES,
                     {"calibration": "minmax", "activation_type": "int16", "weight_type": "int8"})


def _int8_family(graph: KerasGraph, int8s: list[Variant], calib: Dataset, judge: Judge, criterion: Criterion,
                 workdir: Path, int8_io: bool, calibration: str,
                 progress: Progress = lambda line: None, diagnosed: bool = True
                 ) -> tuple[dict[str, Candidate], Diagnosis]:
    feeds, names = sample_feeds(calib), layer_names(graph)
    plain, plain_model, diagnosis = plain_int8(graph, calib, feeds, int8_io, judge, criterion, diagnosed)
    built = {"int8": Candidate(int8s[0], plain_model, tuple(plain.notes), plain.details)}
    if len(int8s) > 1:
        methods = calibrate.METHODS if calibration == "auto" else (calibration,)
        try:
            def tuned_with(correct_bias: bool, rewrites: bool, methods: tuple[str, ...] = methods) -> Int8Base:
                return _tuned_base(graph, calib, feeds, judge, criterion, workdir, int8_io, methods, correct_bias,
                                   rewrites)

            tuned = _no_worse_base(tuned_with, judge.once("tflite", plain_model), judge.check.size, criterion) \
                if graph.keras_model is not None else tuned_with(True, False)

            @cache  # layer fallback and AdaRound both build on it
            def exact() -> Int8Base:  # bias correction assumes nearest-rounded int8 weights: float layers and
                # learned rounding must not get it
                return tuned_with(False, tuned.rewrites, (tuned.details["calibration"],))

            built.update({c.name: c for c in _refined(int8s[1:], tuned, plain_model, feeds, names, judge, criterion,
                                                      int8_io, exact, progress)})
            built.update({c.name: c for c in _guarded(int8s, built, judge, criterion)})
        except Exception as exc:  # noqa: BLE001  (a refinement that fails drops out; plain int8 still stands)
            built.update({c.name: Candidate(c, None, (failure_note(exc),)) for c in int8s[1:]})
    return built, diagnosis


# Tried in turn while the tuned base is less faithful than plain int8: bias correction is not exact (it
# assumes the expected rounding error), and an exact rewrite can still move ranges the wrong way for int8.
BASE_RETRIES = ((False, True, "without bias correction"), (False, False, "without rewrites"))


def _no_worse_base(tuned_with: Callable[[bool, bool], Int8Base], plain: Quality, samples: int,
                   criterion: Criterion) -> Int8Base:
    """The rewritten, tuned base; when it is less faithful than plain int8 on the tuning samples, the same
    without bias correction, then without rewrites (the refinements all build on this base)."""
    base, why = tuned_with(True, True), ""
    for correct_bias, rewrites, label in BASE_RETRIES:
        why = never_less_faithful(base.quality or plain, plain, "int8", samples, criterion)
        if not why:
            return base
        base = tuned_with(correct_bias, rewrites)
        base.notes.insert(0, f"{label}: otherwise {why.removeprefix('dropped: ')}")
    return base


def _guarded(int8s: list[Variant], built: dict[str, Candidate], judge: Judge,
             criterion: Criterion) -> tuple[Candidate, ...]:
    """Each built refinement against the nearest int8 candidate before it that stands (plain int8 first), on the
    tuning samples: never less faithful, or dropped (not built) with the reason (search/faithful.py)."""
    standing, guarded = ("int8", judge.once("tflite", built["int8"].model or b"")), []
    for candidate in int8s[1:]:
        refined = built.get(candidate.name)
        if refined is None or refined.model is None:
            continue
        quality = judge("tflite", refined.model)
        why = never_less_faithful(quality, standing[1], standing[0], judge.check.size, criterion)
        if why:
            guarded.append(Candidate(candidate, None, (why, *refined.notes)))
        elif not candidate.adaround:  # the fallbacks refine int8+rewrites' rounding, not AdaRound's
            standing = (candidate.name, quality)
    return tuple(guarded)


def plain_int8(graph: KerasGraph, calib: Dataset, feeds: list[dict[str, np.ndarray]], int8_io: bool, judge: Judge,
               criterion: Criterion, diagnosed: bool = True) -> tuple[Int8Base, bytes, Diagnosis]:
    """The converter's default int8 model (min/max, nothing else) and its diagnosis (not diagnosed: a note)."""
    plain = Int8Base(tflite_int8.calibrate(graph.saved_model_dir, calib), ["min/max calibration"],
                     {"calibration": "minmax"})
    model = tflite_int8.quantize(plain.calibrated, int8_io)
    if not diagnosed:  # a cross-fitting fold's model: judged, never shown
        return plain, model, {"of": None, "note": "not diagnosed (a cross-fitting fold)"}
    stats = calibrate.collect(plain.calibrated, feeds[:STATS_SAMPLES])
    errors, failure = [], ""
    try:
        errors = diagnose.layer_errors(plain.calibrated, feeds, layer_names(graph))
    except Exception as exc:  # noqa: BLE001  (the debugger is experimental TF code: a diagnosis must not stop a build)
        failure = f"the per-layer debugger failed: {first_line(exc, 200)}"
    gate = verdict(judge, criterion, "tflite", model)
    accurate = gate.figures if gate.meets else ""
    diagnosis = diagnose.report(errors, coverage.measure(model), stats, plain.calibrated, graph.keras_model,
                                min(len(feeds), diagnose.DEBUG_SAMPLES), failure, accurate)
    return plain, model, diagnosis


def layer_names(graph: KerasGraph) -> list[str]:
    return [layer.name for layer in graph.keras_model.layers] if graph.keras_model is not None else []


def with_coverage(built: Candidate) -> Candidate:
    """Record how XNNPACK partitions each model (the table shows the pieces; slow ops become a note)."""
    if built.model is None:
        return built
    cover = coverage.measure(built.model)
    slow = {op: n for op, n in cover.slow_ops.items() if op not in CONVERSION_OPS}
    note = (f"{', '.join(f'{op} x{n}' for op, n in slow.items())} outside XNNPACK, {cover.pieces} piece(s)",) \
        if slow and built.variant.quantize is Quantize.int8 else ()
    return replace(built, notes=(*note, *built.notes), details={**built.details, "coverage": cover.to_dict()})


def sample_feeds(calib: Dataset) -> list[dict[str, np.ndarray]]:
    return [{name: model_feed(array[i : i + 1]) for name, array in calib.inputs.items()}
            for i in range(calib.size)]


def _tuned_base(graph: KerasGraph, calib: Dataset, feeds: list[dict[str, np.ndarray]], judge: Judge,
                criterion: Criterion, workdir: Path, int8_io: bool, methods: tuple[str, ...],
                correct_bias: bool = True, rewrites: bool = True) -> Int8Base:
    """Rewrite the Keras model (when there is one and `rewrites`), calibrate it, keep the most faithful ranges."""
    source: Path = graph.saved_model_dir
    notes: list[str] = []
    details: CandidateDetails = {}
    if graph.keras_model is None:
        notes.append("no rewrites: a SavedModel source has no Keras layers to rewrite")
    elif rewrites:
        inputs = rewrite.model_inputs(graph.keras_model, calib.inputs)
        try:
            rewritten = rewrite.apply(graph.keras_model, inputs, correct_bias=correct_bias)
        except Exception as exc:  # noqa: BLE001  (a layer Keras cannot rebuild from its config: no rewrites)
            rewritten = rewrite.Rewritten(graph.keras_model, (), 0.0, f"rewrites skipped: {str(exc)[:200]}")
        details["rewrites"] = rewritten.to_dict()
        if rewritten.changed:
            source = workdir / f"rewritten_saved_model{'' if correct_bias else '_exact'}"
            with quiet_fds():
                rewritten.model.export(str(source), verbose=False)
            notes.append(f"{len(rewritten.notes)} rewrite(s)")
    calibrated = tflite_int8.calibrate(source, calib)
    stats = calibrate.collect(calibrated, feeds[:STATS_SAMPLES])
    tried = {}
    for method in methods:
        ranged = calibrate.with_ranges(calibrated, calibrate.ranges(stats, method))
        # once: a model with the same bytes as one judged before (min/max may come out as plain int8) is not re-run
        tried[method] = (ranged, judge.once("tflite", tflite_int8.quantize(ranged, int8_io)))
    best = max(tried, key=lambda m: rank(tried[m][1], criterion))
    details["calibration"] = best
    details["calibration_trials"] = {m: q.to_dict() for m, (_, q) in tried.items()}
    notes.append(f"{best} calibration")
    return Int8Base(tried[best][0], notes, details, tried[best][1], rewrites)


def _refined(candidates: list[Variant], base: Int8Base, plain_model: bytes, feeds: list[dict[str, np.ndarray]],
             names: list[str], judge: Judge, criterion: Criterion, int8_io: bool,
             exact: Callable[[], Int8Base], progress: Progress = lambda line: None) -> tuple[Candidate, ...]:
    """int8+rewrites, int8+adaround and the fallback variants from the tuned base (layer fallback: from `exact()`)."""
    model = tflite_int8.quantize(base.calibrated, int8_io)
    cover = coverage.measure(model)
    float_ops = {op: f"int8 kernel not in XNNPACK ({n} node(s) outside the fast path, {cover.pieces} pieces)"
                 for op, n in cover.slow_ops.items() if op not in CONVERSION_OPS}
    built = []
    for candidate in candidates:
        if candidate.fallback == "layers":
            built.append(_layer_fallback(candidate, base, exact, float_ops, feeds, names, judge, criterion, int8_io))
        elif candidate.adaround:
            built.append(_adaround(candidate, exact, plain_model, feeds, judge, criterion, len(candidates) == 1,
                                   int8_io, progress))
        elif candidate.fallback == "ops" and not float_ops:
            built.append(Candidate(candidate, None, ("every int8 op already runs in XNNPACK",)))
        elif candidate.fallback == "ops":
            kept = tflite_int8.quantize(base.calibrated, int8_io, float_ops=float_ops)
            built.append(Candidate(candidate, kept, (*base.notes, f"float: {', '.join(float_ops)}"),
                                   {**base.details, "fallback": {"float_ops": float_ops, "float_layers": []}}))
        elif model == plain_model:
            built.append(Candidate(candidate, None, ("identical to int8: no rewrite applied, min/max best",)))
        else:
            built.append(Candidate(candidate, model, tuple(base.notes), {**base.details}))
    return tuple(built)


def _layer_fallback(candidate: Variant, tuned: Int8Base, exact: Callable[[], Int8Base], float_ops: dict[str, str],
                    feeds: list[dict[str, np.ndarray]], names: list[str], judge: Judge, criterion: Criterion,
                    int8_io: bool) -> Candidate:
    """The ops outside the fast path in float, then the layers with the worst error, until the criterion holds.

    Candidate from the rewritten model without bias correction: a corrected bias is wrong for a layer whose
    weights stay float.
    """
    quality = judge("tflite", tflite_int8.quantize(tuned.calibrated, int8_io, float_ops=float_ops))
    if criterion.meets(quality):
        return Candidate(candidate, None, ("not needed: the int8 model meets the criterion without float layers",))
    base = exact()
    errors = [e for e in diagnose.layer_errors(base.calibrated, feeds, names) if e.op not in float_ops]
    steps = []
    for count in FALLBACK_STEPS:
        worst = errors[:count]
        model = tflite_int8.quantize(base.calibrated, int8_io, float_ops, [t for e in worst for t in e.tensors])
        quality = judge("tflite", model)
        steps.append({"float_layers": count, **quality.to_dict()})
        if criterion.meets(quality) or count >= len(errors):
            break
    details: CandidateDetails = {**base.details, "fallback": {
        "float_ops": float_ops,
        "float_layers": [{"layer": e.layer, "op": e.op, "tensors": list(e.tensors),
                          "reason": f"{e.share:.0%} of the int8 error"} for e in worst],
        "steps": steps, "meets_criterion": criterion.meets(quality)}}
    kept = [*float_ops, *(e.layer for e in worst)]
    return Candidate(candidate, model, (*base.notes, f"float: {', '.join(kept)}"), details)


ADAROUND = adaround.Settings()  # 300 Adam steps a layer, 32 samples optimised and 32 held back, 120 s a model


def _adaround(candidate: Variant, exact: Callable[[], Int8Base], plain_model: bytes,
              feeds: list[dict[str, np.ndarray]], judge: Judge, criterion: Criterion, refined_alone: bool,
              int8_io: bool, progress: Progress) -> Candidate:
    """int8+rewrites' model without bias correction (`exact()`: the correction assumes nearest rounding's
    error, which learned rounding replaces) with AdaRound's integer weights, or not built: plain int8 meets the
    criterion (adaround_not_needed), or no weight moved."""
    gate = verdict(judge, criterion, "tflite", plain_model)
    why = adaround_not_needed(bool(gate.meets), refined_alone, gate.figures)
    if why:
        return Candidate(candidate, None, (why,))
    base = exact()
    model = tflite_int8.quantize(base.calibrated, int8_io)
    rounded = tflite_adaround.refine(base.calibrated, model, feeds, ADAROUND, progress)
    progress("Converting: the candidates after int8+adaround")  # the display times each step until the next
    if not rounded.moved:
        return Candidate(candidate, None, ("no weight moved: identical to int8+rewrites",))
    same = judge.same_outputs("tflite", rounded.model, model)
    return Candidate(candidate, rounded.model, (*base.notes, adaround.note(rounded, judge.check.size if same else 0)),
                     {**base.details, "adaround": adaround.facts(rounded, ADAROUND, len(feeds))})
