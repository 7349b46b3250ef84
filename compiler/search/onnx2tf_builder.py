"""The TFLite candidates of an ONNX source: one onnx2tf run writes float32, float16, dynamic, int8 and 16x8.

onnx2tf converts once and writes every number format from that conversion (with -oiqt), so these
candidates cost one run. It calibrates with min/max and offers no hook for the Keras path's int8
refinements (rewrites, tuned ranges, float fallback): those candidates are not built, and the table
says why. Every model keeps the layout change onnx2tf made (NCHW -> NHWC), which the runtime undoes.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.emit import tflite_from_onnx as onnx2tf
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.manifest_schema import CandidateDetails
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext, Builds
from edgekiln.compiler.search.plain_gate import plain_int8_misses
from edgekiln.compiler.search.tflite_builder import SIXTEEN_NOTES, with_coverage
from edgekiln.compiler.search.variants import is_16x8, sixteen_not_needed


def build(ctx: BuildContext) -> Builds:
    """ONNX -> TFLite through onnx2tf: every planned candidate, in order; no diagnosis (the per-layer
    debugger needs the Keras path). The refinements onnx2tf cannot make are never planned
    (candidates.ONNX2TF_ONLY).

    A ConversionError (onnx2tf failed, or wrote ops LiteRT cannot run) propagates: the caller decides
    whether the format is dropped from the comparison or the build stops.
    """
    wanted = ctx.calib is not None and any(c.quantize is Quantize.int8 for c in ctx.candidates)
    integer = [s.name for s in ctx.graph.inputs if np.dtype(s.dtype).kind in "iu"]
    int8 = wanted and not integer  # onnx2tf's -cind calibration data is float32: token ids cannot be fed
    check_calibration(ctx.calibration, int8)
    mode = Quantize.int8 if int8 else Quantize.dynamic if any(
        c.quantize is Quantize.dynamic for c in ctx.candidates) else Quantize.none
    converted = onnx2tf.convert(ctx.graph, ctx.calib, mode, ctx.workdir)  # calib: real samples to probe layouts
    details: CandidateDetails = {"converter": f"onnx2tf {onnx2tf.version()}"}
    built = []
    for c in ctx.candidates:
        io = ctx.int8_io
        suffix = onnx2tf.SIXTEEN_ARTIFACT[io] if is_16x8(c) else onnx2tf.ARTIFACT.get((c.quantize, io))
        if c.quantize is Quantize.int8 and integer:
            built.append(Candidate(c, None, (f"onnx2tf calibrates int8 with float data only; the model takes integer "
                                         f"input(s) {', '.join(integer)} (use --format onnx for static int8)",)))
            continue
        if suffix is None or suffix not in converted.files:
            built.append(Candidate(c, None, (f"onnx2tf wrote no {suffix} model",)))
            continue
        extra: CandidateDetails = {"calibration": "minmax"} if c.quantize is Quantize.int8 else {}
        notes = ("min/max calibration (onnx2tf)",) if extra else ()
        if is_16x8(c):
            notes, extra = (*notes, *SIXTEEN_NOTES[1:]), {**extra, "activation_type": "int16", "weight_type": "int8"}
        built.append(with_coverage(Candidate(c, converted.model(suffix), notes, {**details, **extra},
                                         layouts=converted.layouts)))
    return Builds(tuple(_gated(b, built, ctx) for b in built))


def _gated(built: Candidate, every: list[Candidate], ctx: BuildContext) -> Candidate:
    """A 16x8 candidate stays only where plain int8 misses the criterion (variants.sixteen_not_needed): onnx2tf
    wrote both in one run, but a 16x8 row that cannot be chosen would still be judged and timed."""
    plain = next((b for b in every if b.name == "int8" and b.model is not None), None)
    if not is_16x8(built.variant) or built.model is None or plain is None:
        return built
    gate = plain_int8_misses(ctx, plain, "tflite")
    why = sixteen_not_needed(gate.meets, gate.figures)
    return Candidate(built.variant, None, (why,)) if why else built


def check_calibration(calibration: str, int8: bool) -> None:
    """onnx2tf calibrates with min/max only: a method the user named is refused rather than ignored.

    (Keras -> TFLite sets percentile and entropy ranges itself: emit/calibrate.py.)
    """
    if int8 and calibration not in ("auto", "minmax"):
        raise RecipeError(f"calibration method {calibration} is not available for ONNX -> TFLite "
                          "(onnx2tf calibrates with min/max)", "use --calibration minmax, or --format onnx")
